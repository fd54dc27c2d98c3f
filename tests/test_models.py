import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_image
from xreid.cli import app
from xreid.distance import l2_normalise
from xreid.index.features import load_features_with_identity, partial_path, save_partial
from xreid.models.embedders import OMZ_PREPROCESS, Embedder, Preprocess, sidecar_path
from xreid.models.loading import load_embedder
from xreid.workflows.export import export_model

runner = CliRunner()


def test_preprocess_bgr_raw():
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[..., 0] = 10  # red
    x = OMZ_PREPROCESS.apply(img)
    assert x.shape == (1, 3, 2, 2) and x[0, 2, 0, 0] == 10 and x[0, 0, 0, 0] == 0  # BGR: red is channel 2
    y = Preprocess(height=2, width=2).apply(img)
    assert y[0, 0, 0, 0] == pytest.approx(10 / 255)


class FirstRowEmbedder(Embedder):
    """A stand-in model whose embedding is the first pixel row of channel 0, so flips are visible."""

    name, preprocess = "first-row", Preprocess(height=1, width=4, scale=1.0)

    def run(self, inputs):
        return inputs[:, 0, 0, :]


def test_flip_average_on_hand_computed_case():
    img = np.zeros((1, 1, 4, 3), np.uint8)
    img[0, 0, :, 0] = [0, 50, 100, 250]
    embedder = FirstRowEmbedder()
    assert embedder.embed_arrays(img).tolist() == [[0, 50, 100, 250]]
    embedder.flip_average = True  # mean of [0, 50, 100, 250] and its mirror [250, 100, 50, 0]
    assert embedder.embed_arrays(img).tolist() == [[125, 75, 75, 125]]


def test_flip_average_makes_a_crop_and_its_mirror_agree(tiny_model):
    imgs = np.random.default_rng(2).integers(0, 256, (3, 64, 32, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(imgs[:, :, ::-1])
    plain = load_embedder(tiny_model)
    assert not np.allclose(plain.embed_arrays(imgs), plain.embed_arrays(mirrored), atol=1e-4)
    flip = load_embedder(tiny_model, flip_average=True)
    np.testing.assert_allclose(flip.embed_arrays(imgs), flip.embed_arrays(mirrored), atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_gives_same_embeddings(tiny_model, tmp_path, fmt):
    report = export_model(str(tiny_model), fmt, tmp_path / "out" / "tiny")
    assert report["min_cosine"] > 0.999
    exported = load_embedder(report["path"])
    side = json.loads(sidecar_path(exported_path := tmp_path / "out" / report["path"].split("/")[-1]).read_text())
    assert side["preprocess"]["height"] == 64 and exported.preprocess.channel_order == "rgb"
    imgs = np.random.default_rng(1).integers(0, 256, (5, 64, 32, 3), dtype=np.uint8)
    a, b = load_embedder(tiny_model, backend="torch").embed_arrays(imgs), exported.embed_arrays(imgs)
    cos = (l2_normalise(a) * l2_normalise(b)).sum(1)
    assert cos.min() > 0.999 and exported_path.exists()
    assert exported.identity()["precision"] == ("f32" if fmt == "openvino" else None)


def test_load_embedder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_embedder(tmp_path / "none.onnx")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable xreid model"):
        load_embedder(bad)
    (tmp_path / "m.h5").write_text("x")
    with pytest.raises(ValueError, match="unknown model format"):
        load_embedder(tmp_path / "m.h5")


def test_cli_embed_skips_bad_images_and_resumes(tiny_model, tmp_path):
    root = tmp_path / "root"
    for i in range(5):
        write_image(root / "gallery" / f"p{i % 2}" / f"{i}.jpg", seed=i)
    (root / "gallery" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "gallery" / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "feats.npz"
    res = runner.invoke(app, ["embed", "--model", str(tiny_model), "--data-root", str(root),
                              "--images", "gallery", "--out", str(out), "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 image" in res.output and "broken.jpg" in res.output
    feats, identity = load_features_with_identity(out)
    assert sorted(feats) == sorted(f"gallery/p{i % 2}/{i}.jpg" for i in range(5))
    assert feats["gallery/p0/0.jpg"].dtype == np.float32 and feats["gallery/p0/0.jpg"].shape == (1280,)
    assert identity == load_embedder(tiny_model).identity()
    # an interrupted run's partial file (same model) is reused, not recomputed
    keep = {"gallery/p0/0.jpg": np.ones(1280, np.float32)}
    save_partial(partial_path(tmp_path / "feats2.npz"), keep, identity)
    res = runner.invoke(app, ["embed", "--model", str(tiny_model), "--data-root", str(root),
                              "--images", "gallery", "--out", str(tmp_path / "feats2.npz")])
    assert "1 reused" in res.output
    feats2, _ = load_features_with_identity(tmp_path / "feats2.npz")
    assert np.all(feats2["gallery/p0/0.jpg"] == 1) and len(feats2) == 5
    assert not (tmp_path / "feats2.partial.npz").exists()


def test_cli_embed_nothing_usable_exits_nonzero(tiny_model, tmp_path):
    root = tmp_path / "root"
    (root / "g").mkdir(parents=True)
    (root / "g" / "a.jpg").write_bytes(b"")
    res = runner.invoke(app, ["embed", "--model", str(tiny_model), "--data-root", str(root), "--images", "g",
                              "--out", str(tmp_path / "f.npz")])
    assert res.exit_code == 1 and "empty file" in res.output


def test_cli_eval_on_fixture(tiny_model, mini_peta, tmp_path):
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--model", str(tiny_model), "--data-root", str(mini_peta), "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data["per_set"]) == {"VIPeR"} and 0 <= data["mean"]["mAP"] <= 100
    assert data["per_set"]["VIPeR"]["queries"] == 2
    res = runner.invoke(app, ["eval", "--model", str(tiny_model), "--data-root", str(mini_peta), "--rerank",
                              "--query-expansion", "--flip", "--json", str(out)])
    assert res.exit_code == 0, res.output
    options = json.loads(out.read_text())["options"]
    assert options == {"rerank": True, "query_expansion": True, "flip": True, "query_cameras": True,
                       "identity": load_embedder(tiny_model, flip_average=True).identity()}


def test_cli_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    for cmd in ("data", "train", "eval", "embed", "export"):
        assert cmd in res.output
