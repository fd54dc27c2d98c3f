"""Several models as one (``--model a,b``, docs/METHODS.md#several-models-as-one): the concatenation
formula, the embedder, its identity, the commands that take it, and the files of another model
set-up it refuses."""

import json
import shutil

import numpy as np
import pytest
from conftest import write_image
from typer.testing import CliRunner

from xreid.cli import app
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.fusion import Fusion
from xreid.models.concat import ConcatEmbedder, concatenate_embeddings
from xreid.models.loading import load_embedder
from xreid.workflows.embedding_cache import CachedEmbedder, cached_embeddings

runner = CliRunner()


@pytest.fixture()
def two_models(tiny_model, tmp_path):
    """Two copies of the tiny model (same weights, two files)."""
    copy = tmp_path / "copy" / "tiny2.pt"
    copy.parent.mkdir()
    shutil.copy(tiny_model, copy)
    return tiny_model, copy


def test_concatenate_embeddings_by_hand():
    out = concatenate_embeddings([np.array([[3.0, 4.0], [0.0, 0.0]]), np.array([[0.0, 2.0], [5.0, 0.0]])])
    assert np.allclose(out, [[0.6, 0.8, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]])  # a zero vector stays zero
    with pytest.raises(ValueError, match="2, 1"):
        concatenate_embeddings([np.ones((2, 2)), np.ones((1, 2))])


def test_the_concatenation_is_its_parts_normalised_side_by_side(two_models):
    a, b = two_models
    both = load_embedder(f"{a}, {b}", backend="torch")
    assert isinstance(both, ConcatEmbedder) and both.name == "tiny+tiny2"
    crops = np.random.default_rng(0).integers(0, 256, (3, 64, 32, 3), dtype=np.uint8)
    single = load_embedder(a, backend="torch").embed_arrays(crops)
    single /= np.linalg.norm(single, axis=1, keepdims=True)
    assert np.allclose(both.embed_arrays(crops), np.concatenate([single, single], 1), atol=1e-5)
    # a crop of another size is resized for each part
    assert both.embed_arrays(crops[:, :32, :16]).shape == (3, 2 * single.shape[1])


def test_identity_lists_the_parts_and_tells_set_ups_apart(two_models):
    a, b = two_models
    both = load_embedder(f"{a},{b}", backend="torch")
    ident = both.identity()
    assert [p["model"] for p in ident["parts"]] == ["tiny", "tiny2"]
    assert ident["parts"][0] == load_embedder(a, backend="torch").identity()
    assert ident["fingerprint"] != load_embedder(a, backend="torch").fingerprint
    flipped = load_embedder(f"{a},{b}", backend="torch", flip_average=True)
    assert flipped.flip_average and all(p.flip_average for p in flipped.parts)
    assert flipped.identity()["flip"] and flipped.identity() != ident
    three = load_embedder(f"{a},{b},{a}", backend="torch")
    assert three.fingerprint != both.fingerprint
    with pytest.raises(ValueError, match="empty name"):
        load_embedder(f"{a},", backend="torch")
    with pytest.raises(FileNotFoundError, match="nope.xml"):
        load_embedder(f"{a},nope.xml")
    with pytest.raises(TypeError, match="no single input tensor"):
        both.run(np.zeros((1, 3, 64, 32), np.float32))


def test_cache_of_a_concatenation_is_read_from_its_parts(two_models, tmp_path):
    a, b = two_models
    root = tmp_path / "imgs"
    for i in range(3):
        write_image(root / f"{i}.jpg", seed=i)
    (root / "bad.jpg").write_bytes(b"")
    keys = ["0.jpg", "bad.jpg", "1.jpg", "2.jpg"]
    both = load_embedder(f"{a},{b}", backend="torch")
    feats, kept, skipped = cached_embeddings(both, root, keys, tmp_path / "cache", progress=False)
    assert kept == ["0.jpg", "1.jpg", "2.jpg"] and len(skipped) == 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # one file per part
    direct = both.embed_paths([root / k for k in kept])
    assert np.allclose(feats, direct.features, atol=1e-5)
    cached = CachedEmbedder(both, root, tmp_path / "cache", progress=False).embed_paths([root / k for k in keys])
    assert cached.kept == [0, 2, 3] and np.allclose(cached.features, feats) and "bad.jpg" in str(cached.skipped[0])


def test_cli_eval_with_two_models(two_models, mini_peta, tmp_path):
    a, b = two_models
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--model", f"{a},{b}", "--backend", "torch", "--data-root", str(mini_peta),
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["model"] == "tiny+tiny2" and [p["model"] for p in data["options"]["identity"]["parts"]] == \
        ["tiny", "tiny2"]
    single = tmp_path / "single.json"
    runner.invoke(app, ["eval", "--model", str(a), "--backend", "torch", "--data-root", str(mini_peta),
                        "--json", str(single)])
    # two copies of one model rank exactly as the model alone
    assert data["mean"]["mAP"] == pytest.approx(json.loads(single.read_text())["mean"]["mAP"], abs=1e-6)


def test_files_of_another_model_set_up_are_refused(two_models, mini_peta, tmp_path):
    a, b = two_models
    model = ["--model", f"{a},{b}", "--backend", "torch"]
    # a fusion fitted for one part
    names = ["personalMale", "hairLong"]
    head = AttributeHead(names, np.zeros((1280, 2)), np.full(2, 0.4), {})
    Fusion(np.ones(2), 0.5, head, {"name": "tiny", "fingerprint": load_embedder(a).fingerprint},
           {"spec": str(a), "name": "tiny", "fingerprint": None}).save(tmp_path / "f.npz")
    res = runner.invoke(app, ["eval", *model, "--fusion", str(tmp_path / "f.npz"), "--data-root", str(mini_peta)])
    assert res.exit_code == 2 and "fitted for model tiny" in res.output and "tiny+tiny2" in res.output
    # embeddings of one part used as a gallery
    images = mini_peta / "peta" / "PETA dataset" / "VIPeR" / "archive"
    res = runner.invoke(app, ["embed", "--model", str(a), "--backend", "torch", "--data-root", str(mini_peta),
                              "--images", str(images), "--out", str(tmp_path / "g.npz")])
    assert res.exit_code == 0, res.output
    head_path = tmp_path / "head.npz"
    AttributeHead(names, np.zeros((2560, 2)), np.full(2, 0.4), {}).save(head_path)
    res = runner.invoke(app, ["explain", *model, "--head", str(head_path), "--query",
                              str(next(images.glob("*.jpg"))), "--gallery", str(tmp_path / "g.npz"),
                              "--out", str(tmp_path / "r.html"), "--data-root", str(mini_peta)])
    assert res.exit_code == 2 and "made by another model set-up" in res.output and "fingerprint" in res.output
    # an index built with one part
    AttributeHead(names, np.zeros((1280, 2)), np.full(2, 0.4), {}).save(tmp_path / "h1.npz")
    res = runner.invoke(app, ["index", "build", "--model", str(a), "--backend", "torch", "--head",
                              str(tmp_path / "h1.npz"), "--images", str(images), "--out", str(tmp_path / "case"),
                              "--data-root", str(mini_peta)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["index", "add", str(tmp_path / "case"), *model, "--head", str(head_path),
                              "--images", str(images), "--data-root", str(mini_peta)])
    assert res.exit_code == 2 and "another model" in res.output, res.output


def test_combined_head_mixes_the_parts_calibrated_logits_by_hand():
    from xreid.explain.attribute_head import combine_heads

    one = AttributeHead(["a"], np.array([[2.0]]), np.array([0.3]), calibration=np.array([[0.5, 1.0]]))
    two = AttributeHead(["a"], np.array([[1.0], [0.0]]), np.array([0.5]))  # uncalibrated: slope 1
    head = combine_heads([one, two], np.array([[0.5], [0.5]]))
    f1, f2 = np.array([[1.0]]), np.array([[0.6, 0.8]])  # z1 = 2, z2 = 0.6
    # 0.5 * 0.5 * 2 + 0.5 * 1 * 0.6 = 0.8, whatever scale the parts had before normalising
    assert head.logits(concatenate_embeddings([3 * f1, f2]))[0, 0] == pytest.approx(0.8)
    assert head.positive_ratio[0] == pytest.approx(0.4) and head.calibration is None
    with pytest.raises(ValueError, match="shares of shape"):
        combine_heads([one, two], np.ones((1, 1)))


def test_head_shares_by_hand():
    from xreid.evaluation.attributes import head_shares

    y = np.array([[1, 1], [0, 1], [1, 1], [0, 1]], bool)  # attribute b: all positive, AP not measurable
    z0 = np.array([[3, 0], [2, 0], [1, 0], [0, 0]], float)  # a ranked 1,0,1,0: AP (1 + 2/3) / 2
    z1 = np.array([[3, 0], [0, 0], [2, 0], [1, 0]], float)  # a ranked 1,1,0,0: AP 1
    assert head_shares([z0, z1], y, "best").tolist() == [[0, 1], [1, 0]]
    assert head_shares([z0, z1], y, "mean").tolist() == [[0.5, 0.5], [0.5, 0.5]]
    with pytest.raises(ValueError, match="expected one of"):
        head_shares([z0, z1], y, "max")


def test_two_copies_of_one_model_combine_into_that_models_layer():
    """fit_combined on two identical parts: the mean of one calibrated logit with itself is that logit,
    so the combined layer's calibrated probabilities are the part's (up to the calibration's small pull)."""
    from xreid.workflows.attributes import fit_calibrated, fit_combined

    rng = np.random.default_rng(0)
    f = rng.standard_normal((400, 6))
    labels = np.stack([f[:, 0] + rng.standard_normal(400) > 0, f[:, 1] - f[:, 2] + rng.standard_normal(400) > 0.3], 1)
    is_fit = np.arange(400) < 300
    names = ["a", "b"]
    one = fit_calibrated(f, labels, is_fit, names, 30, {})
    for rule in ("mean", "best"):
        both = fit_combined([f, f], labels, is_fit, names, rule, 30, {"model": "x"})
        assert both.embedding_dim == 12 and both.meta["combined"] == rule and both.meta["train_images"] == 300
        np.testing.assert_allclose(both.calibrated(concatenate_embeddings([f, f])), one.calibrated(f), atol=0.02)
        np.testing.assert_allclose(both.reliability, one.reliability)


def test_cli_attributes_fit_with_two_models_and_a_cache(two_models, mini_peta, tmp_path):
    """`xreid attributes fit --model a,b --cache DIR`: one head on the concatenation; the cache keeps each
    part's embeddings, and a second fit reads them and fits the same layer."""
    a, b = two_models
    cache, heads = tmp_path / "cache", []
    for run in range(2):
        out = tmp_path / f"head{run}.npz"
        res = runner.invoke(app, ["attributes", "fit", "--model", f"{a},{b}", "--backend", "torch", "--data-root",
                                  str(mini_peta), "--out", str(out), "--epochs", "20", "--cache", str(cache)])
        assert res.exit_code == 0, res.output
        heads.append(AttributeHead.load(out))
        if run == 0:
            files = sorted(cache.glob("*.npz"))
            assert files and all("+" not in f.name for f in files)  # per part, never the concatenation
            stamps = [f.stat().st_mtime_ns for f in files]
    assert heads[0].embedding_dim == 2560 and heads[0].meta["model"] == f"{a},{b}"
    np.testing.assert_array_equal(heads[0].weights, heads[1].weights)
    assert [f.stat().st_mtime_ns for f in sorted(cache.glob("*.npz"))] == stamps  # read, not embedded again
