import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_image
from xreid.cli import app
from xreid.explain.attribute_head import AttributeHead, fit_attribute_head
from xreid.index.filters import parse_filter
from xreid.workflows.explain import explain_vectors

runner = CliRunner()
NAMES = ["personalMale", "hairLong", "carryingBackpack"]


def _head(dim=8, names=NAMES, seed=0):
    rng = np.random.default_rng(seed)
    return AttributeHead(list(names), rng.normal(size=(dim, len(names))), np.full(len(names), 0.3), {})


def test_fit_recovers_a_linear_attribute():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 16))
    labels = np.stack([feats[:, 0] > 0, feats[:, 1] + feats[:, 2] < 0], axis=1)  # bias-free: through the origin
    head = fit_attribute_head(feats, labels, ["a", "b"], epochs=200)
    acc = ((head.predict(feats) >= 0.5) == labels).mean(0)
    assert (acc > 0.85).all()
    assert head.weights.shape == (16, 2)


def test_head_save_load_and_size_check(tmp_path):
    head = _head()
    head.save(tmp_path / "h.npz")
    back = AttributeHead.load(tmp_path / "h.npz")
    assert back.names == NAMES and np.allclose(back.weights, head.weights)
    with pytest.raises(ValueError, match="expects 8-d embeddings, got 5-d"):
        back.predict(np.ones((1, 5)))


def test_head_reads_a_float32_gallery_as_it_reads_float64():
    head = _head()
    feats = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)
    feats[7] = 0.0  # a zero row gets logits 0, not NaN
    np.testing.assert_allclose(head.logits(feats), head.logits(feats.astype(np.float64)), atol=1e-5)
    assert np.all(head.logits(feats)[7] == 0.0)


def test_explain_ranking_numbers_are_consistent():
    rng = np.random.default_rng(1)
    head = _head(dim=8)
    gallery = rng.normal(size=(30, 8))
    q = gallery[3] + 0.01 * rng.normal(size=8)
    e = explain_vectors(q, gallery, [f"g{i}" for i in range(30)], head, top_k=5,
                        gallery_pids=["p" if i == 3 else f"x{i}" for i in range(30)], query_pid="p", threshold=0.0)
    assert e.results[0].key == "g3" and e.results[0].is_match is True
    assert [r.rank for r in e.results] == [1, 2, 3, 4, 5]
    for r in e.results:
        # the ranking distance is float32: 1 - cos resolves 2^-23 = 1.2e-7 near cos = 1 (g3 is a near-duplicate)
        assert abs(sum(r.exact_parts) + r.exact_residual - r.distance) <= 1e-5 * max(r.distance, 1e-9) + 2.5e-7
        assert all(0 <= s <= 1 for s in r.matching_scores.values())
    assert json.dumps(e.to_dict(), allow_nan=False)  # serialisable, and no NaN or infinity anywhere


def test_edge_cases_one_image_identical_and_no_confident_attribute():
    head = AttributeHead(NAMES, np.zeros((4, 3)), np.zeros(3), {})  # every probability is exactly 0.5
    f = np.array([1.0, 0.0, 0.0, 0.0])
    e = explain_vectors(f, f[None], ["same"], head, top_k=10)
    r = e.results[0]
    assert len(e.results) == 1 and r.distance == pytest.approx(0.0, abs=1e-6) and r.explained_share == 0.0
    assert e.confident == [] and not e.reliable and "not sure of any reliable attribute" in e.reliability
    assert not any(np.isnan(v) for v in r.exact_parts + [r.exact_residual])
    with pytest.raises(ValueError, match="gallery is empty"):
        explain_vectors(f, np.zeros((0, 4)), [], head)


def test_filter_parsing_and_reranking():
    assert parse_filter("personalMale=yes, carryingBackpack=no", NAMES).attributes == {"personalMale": True, "carryingBackpack": False}
    with pytest.raises(ValueError, match="did you mean personalMale"):
        parse_filter("personalmale=yes", NAMES)
    with pytest.raises(ValueError, match="yes or no"):
        parse_filter("personalMale=maybe", NAMES)
    # 1-d head: attribute 0 is positive iff feature 0 > 0
    head = AttributeHead(["a"], np.array([[10.0], [0.0]]), np.array([0.5]), {})
    gallery = np.array([[-0.1, 1.0], [1.0, 0.5], [-1.0, 0.3]])
    query = np.array([0.0, 1.0])
    plain = explain_vectors(query, gallery, ["n0", "y1", "n2"], head, top_k=3)
    assert [r.key for r in plain.results] == ["n0", "y1", "n2"]
    rer = explain_vectors(query, gallery, ["n0", "y1", "n2"], head, top_k=3, filter_spec={"a": True})
    assert rer.results[0].key == "y1" and rer.results[0].original_rank == 2
    kept = explain_vectors(query, gallery, ["n0", "y1", "n2"], head, top_k=3, filter_spec={"a": True}, filter_mode="keep")
    assert [r.key for r in kept.results] == ["y1"]


def test_cli_fit_eval_explain_end_to_end(tiny_model, mini_peta, tmp_path):
    head = tmp_path / "head.npz"
    res = runner.invoke(app, ["attributes", "fit", "--model", str(tiny_model), "--data-root", str(mini_peta),
                              "--out", str(head), "--epochs", "50"])
    assert res.exit_code == 0, res.output
    assert AttributeHead.load(head).embedding_dim == 1280
    res = runner.invoke(app, ["attributes", "eval", "--model", str(tiny_model), "--head", str(head),
                              "--data-root", str(mini_peta), "--json", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    assert "mA over 3 attributes" in res.output
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--head", str(head), "--data-root", str(mini_peta),
                              "--protocol", "peta-reid", "--test-set", "VIPeR", "--query-index", "1",
                              "--out", str(out), "--json", str(js), "--filter", "personalMale=yes"])
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    assert data["query_pid"] == "VIPeR/005" and len(data["results"]) == 2
    assert any(r["is_match"] for r in data["results"])
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "data:image/jpeg;base64," in page and "<svg" in page
    assert "http://" not in page and "https://" not in page  # opens offline
    # folder mode, with a corrupt gallery image skipped and reported
    gal = mini_peta / "mygallery"
    for i in range(3):
        write_image(gal / "p1" / f"{i}.jpg", seed=i)
    (gal / "p1" / "bad.jpg").write_bytes(b"nope")
    query = mini_peta / "peta" / "PETA dataset" / "VIPeR" / "archive" / "004_45_1.jpg"
    res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--head", str(head), "--data-root", str(mini_peta),
                              "--query", str(query), "--gallery", str(gal), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "skipped" in res.output and "bad.jpg" in res.output


def test_cli_explain_errors(tiny_model, mini_peta, tmp_path):
    res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--data-root", str(mini_peta), "--out", "x.html"])
    assert res.exit_code == 2 and "--head" in res.output
    head = tmp_path / "small.npz"
    _head(dim=8).save(head)
    res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--head", str(head), "--data-root", str(mini_peta),
                              "--protocol", "peta-reid", "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and "expects 8-d embeddings, got 1280-d" in res.output


def test_cli_analyze(tiny_model, mini_peta, tmp_path):
    head = tmp_path / "h.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.array([0.5, 0.2, 0.1]), {}).save(head)
    res = runner.invoke(app, ["analyze", "--model", str(tiny_model), "--head", str(head), "--data-root", str(mini_peta),
                              "--out", str(tmp_path / "an"), "--dims", "0,7"])
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "an" / "dims_per_attribute.csv").read_text().splitlines()
    assert rows[0].startswith("attribute") and sum(int(r.split(",")[1]) for r in rows[1:]) == 1280
    assert (tmp_path / "an" / "dim_7.png").stat().st_size > 1000 and (tmp_path / "an" / "index.html").is_file()
    res = runner.invoke(app, ["analyze", "--model", str(tiny_model), "--head", str(head), "--data-root", str(mini_peta),
                              "--out", str(tmp_path / "an2"), "--dims", "5000"])
    assert res.exit_code == 2 and "out of range" in res.output
