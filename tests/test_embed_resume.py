"""Resumable embedding: periodic and Ctrl-C saves, exact resume, and never two models in one file."""

import numpy as np
import pytest

from conftest import write_image
from xreid.binding import MODEL_FIELDS, IdentityMismatch, check_binding
from xreid.index.features import (
    IDENTITY_KEY,
    embed_to_file,
    load_features_with_identity,
    partial_path,
    save_partial,
)
from xreid.models.embedders import Embedder, Preprocess


class MeanColour(Embedder):
    """A stand-in model (embedding = mean colour per channel) that can fail after ``fail_after``
    images, like a run killed part-way, and records how many embeddings were on disk then."""

    name, preprocess, fingerprint = "mean-colour", Preprocess(height=8, width=4, scale=1.0), "0123456789abcdef"

    def __init__(self, fail_after=None, error=KeyboardInterrupt, partial=None):
        self.seen, self.fail_after, self.error, self.partial = 0, fail_after, error, partial
        self.saved_when_failing = None

    def run(self, inputs):
        if self.fail_after is not None and self.seen + len(inputs) > self.fail_after:
            if self.partial is not None:
                self.saved_when_failing = len(load_features_with_identity(self.partial)[0]) if self.partial.is_file() else 0
            raise self.error()
        self.seen += len(inputs)
        return inputs.mean(axis=(2, 3))


@pytest.fixture()
def gallery(tmp_path):
    def make(n):
        root = tmp_path / "root"
        for i in range(n):
            write_image(root / f"{i:03d}.png", seed=i, size=(4, 8))
        return root, [f"{i:03d}.png" for i in range(n)]
    return make


def test_interrupted_run_resumes_to_the_uninterrupted_result(gallery, tmp_path):
    root, keys = gallery(100)
    straight = embed_to_file(MeanColour(), root, keys, tmp_path / "straight.npz", progress=False, batch_size=16)
    out = tmp_path / "resumed.npz"
    with pytest.raises(KeyboardInterrupt) as info:
        embed_to_file(MeanColour(fail_after=40), root, keys, out, progress=False, batch_size=16)
    part = partial_path(out)
    assert str(info.value) == (f"interrupted: 32 of 100 embeddings saved to {part}; "
                               f"run the same command again to resume")
    assert not out.exists() and len(load_features_with_identity(part)[0]) == 32
    report = embed_to_file(MeanColour(), root, keys, out, progress=False, batch_size=16)
    assert (report.reused, report.embedded) == (32, 68) and not part.exists()
    a, b = load_features_with_identity(straight.out)[0], load_features_with_identity(out)[0]
    assert list(a) == list(b) == keys
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k])


def test_partial_is_saved_every_256_images_before_any_failure(gallery, tmp_path):
    root, keys = gallery(300)
    out = tmp_path / "f.npz"
    embedder = MeanColour(fail_after=260, error=RuntimeError, partial=partial_path(out))
    with pytest.raises(RuntimeError):
        embed_to_file(embedder, root, keys, out, progress=False, batch_size=100)  # batches cut at 256
    assert embedder.saved_when_failing >= 256  # on disk before the failure, not written by the handler
    assert len(load_features_with_identity(partial_path(out))[0]) == 256


def test_partial_is_saved_when_the_time_is_up(gallery, tmp_path):
    root, keys = gallery(20)
    out = tmp_path / "f.npz"
    embedder = MeanColour(fail_after=10, error=RuntimeError, partial=partial_path(out))
    with pytest.raises(RuntimeError):
        embed_to_file(embedder, root, keys, out, progress=False, batch_size=5, save_seconds=0.0)
    assert embedder.saved_when_failing == 10


@pytest.mark.parametrize("change", ["flip", "fingerprint", "precision", "preprocess"])
def test_resume_with_another_identity_is_refused(gallery, tmp_path, change):
    root, keys = gallery(20)
    out = tmp_path / "f.npz"
    with pytest.raises(KeyboardInterrupt):
        embed_to_file(MeanColour(fail_after=10), root, keys, out, progress=False, batch_size=5)
    other = MeanColour()
    if change == "flip":
        other.flip_average = True
    elif change == "fingerprint":
        other.fingerprint = "fedcba9876543210"
    elif change == "precision":
        other.precision = "bf16"
    else:
        other.preprocess = Preprocess(height=8, width=4, scale=1.0, channel_order="bgr")
    part = partial_path(out)
    with pytest.raises(IdentityMismatch) as info:
        embed_to_file(other, root, keys, out, progress=False)
    message = str(info.value)
    assert str(part) in message and f"({change} differ)" in message and "--no-resume" in message
    assert '"fingerprint": "0123456789abcdef"' in message and '"model": "mean-colour"' in message
    assert len(load_features_with_identity(part)[0]) == 10  # the partial file is left as it was
    report = embed_to_file(other, root, keys, out, progress=False, resume=False)
    assert (report.reused, report.embedded) == (0, 20)


def test_partial_without_identity_is_refused(gallery, tmp_path):
    root, keys = gallery(3)
    out = tmp_path / "f.npz"
    np.savez(partial_path(out), **{keys[0]: np.ones(3, np.float32)})  # as older xreid wrote them
    with pytest.raises(IdentityMismatch, match="records no model identity"):
        embed_to_file(MeanColour(), root, keys, out, progress=False)


def test_final_file_records_identity_and_old_files_still_load(gallery, tmp_path):
    root, keys = gallery(3)
    embedder = MeanColour()
    embed_to_file(embedder, root, keys, tmp_path / "f.npz", progress=False)
    feats, identity = load_features_with_identity(tmp_path / "f.npz")
    assert identity == embedder.identity() and sorted(feats) == keys
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:  # plain arrays, one per image
        assert sorted(data.files) == sorted(keys + [IDENTITY_KEY]) and data[keys[0]].shape == (3,)
    np.savez(tmp_path / "old.npz", a=np.ones(2))
    assert load_features_with_identity(tmp_path / "old.npz") == ({"a": pytest.approx(np.ones(2))}, None)
    save_partial(tmp_path / "p.npz", {"x": np.zeros(2)}, None)
    assert list(load_features_with_identity(tmp_path / "p.npz")[0]) == ["x"]


def test_gallery_check_ignores_backend_but_not_model():
    stored = MeanColour().identity()
    other_backend = dict(stored, backend="onnx", precision="f32")
    check_binding("g.npz", stored, other_backend, fields=MODEL_FIELDS)
    with pytest.raises(IdentityMismatch, match=r"g\.npz: made by another model set-up \(fingerprint differ\)"):
        check_binding("g.npz", stored, dict(stored, fingerprint="x"), fields=MODEL_FIELDS, remedy="re-embed")
