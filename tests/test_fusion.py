"""Attribute fusion (docs/METHODS.md#attribute-fusion): the fused distance, its exact split, the
weight fitting, KISSME, the fusion file and its refusals."""

import numpy as np
import pytest
from typer.testing import CliRunner

from xreid.cli import app
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.fusion import Fusion, attribute_distance, attribute_terms, fused_distance, fused_parts
from xreid.workflows.explain import explain_vectors
from xreid.training.fusion import (fit_attribute_weights, hard_triplets, kissme, metric_distance, model_margins,
                                   triplet_weight_loss)

runner = CliRunner()
NAMES = ["personalMale", "hairLong"]


def _head(dim=4, names=NAMES):
    rng = np.random.default_rng(0)
    return AttributeHead(list(names), rng.normal(size=(dim, len(names))), np.full(len(names), 0.4), {})


def _fusion(weights=(2.0, 1.0), mixing=0.5, fingerprint="aaaa", names=NAMES):
    return Fusion(np.array(weights), mixing, _head(names=names), {"name": "modelA", "fingerprint": fingerprint},
                  {"spec": "default", "name": "default", "fingerprint": None})


def test_attribute_distance_by_hand():
    p_q = np.array([[1.0, 0.0]])
    p_g = np.array([[0.0, 0.0], [0.5, 1.0]])
    # 2 * 1^2 + 1 * 0 = 2;  2 * 0.5^2 + 1 * 1^2 = 1.5
    assert np.allclose(attribute_distance(p_q, p_g, np.array([2.0, 1.0])), [[2.0, 1.5]])
    assert np.allclose(attribute_terms(p_q[0], p_g[1]), [0.25, 1.0])
    assert np.allclose(fused_distance(np.array([[0.3, 0.1]]), [[2.0, 1.5]], 0.5), [[1.3, 0.85]])


def test_fused_parts_add_up_to_the_fused_distance():
    model, parts = fused_parts(0.1, np.array([0.5, 1.0]), np.array([0.0, 0.0]), np.array([2.0, 1.0]), 0.5)
    assert model == 0.1 and np.allclose(parts, [0.25, 0.5])  # 0.5 * 2 * 0.25, 0.5 * 1 * 1
    fusion = _fusion()
    d = fusion.distances(np.array([[0.1]]), np.array([[0.5, 1.0]]), np.array([[0.0, 0.0]]))
    assert d[0, 0] == pytest.approx(model + parts.sum())  # 0.85


def test_triplet_weight_loss_by_hand():
    # t_ap - t_an = [[-1, 1], [1, 0]] -> w . = [0, 1]; z = 0.1 + [0.2, -0.5] + [0, 1] = [0.3, 0.6]
    # -> hinge mean 0.45, + 0.01 * (1 + 1) = 0.47
    loss = triplet_weight_loss(np.array([1.0, 1.0]), np.array([[0.0, 1.0], [1.0, 0.0]]),
                               np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0.2, -0.5]), 0.1, 0.01)
    assert loss == pytest.approx(0.47)


def test_weights_favour_the_attribute_that_separates_people():
    rng = np.random.default_rng(0)
    n = 400
    t_ap = np.stack([np.zeros(n), rng.uniform(0, 1, n)], 1)  # attribute 0: same for the same person
    t_an = np.stack([np.ones(n), rng.uniform(0, 1, n)], 1)  # attribute 0: differs for another person
    w = fit_attribute_weights(t_ap, t_an, base=0.0, margin=0.2, decay=1e-3)
    assert w[0] > 0.1 and w[1] < 0.05 * w[0] and (w >= 0).all()


def test_uninformative_probabilities_give_zero_weights_without_nan():
    p = np.full((50, 3), 0.5)  # every probability exactly 0.5: no attribute says anything
    t = attribute_terms(p[:25], p[25:])
    w = fit_attribute_weights(t, t, base=np.full(25, -0.1), margin=0.05)
    assert np.all(np.isfinite(w)) and np.all(w == 0)
    noisy = 0.5 + np.random.default_rng(0).normal(0, 1e-3, (50, 3))  # near 0.5: terms ~1e-6
    w = fit_attribute_weights(attribute_terms(noisy[:25], noisy[25:]), attribute_terms(noisy[25:], noisy[:25]),
                              margin=0.05, decay=1e-3)
    assert np.all(np.isfinite(w)) and (w >= 0).all()
    d = attribute_distance(noisy[:5], noisy[5:10], w)
    assert np.all(d < 1e-4)  # the attribute part of the distance is nothing


def test_hard_triplets_pick_the_nearest_other_person():
    feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    a, p, n = hard_triplets(["x", "x", "y", "z", "z"], feats, negatives=1, positives=1)
    triplets = set(zip(a.tolist(), p.tolist(), n.tolist()))
    assert (0, 1, 2) in triplets and (1, 0, 2) in triplets  # y is x's nearest impostor
    assert (3, 4, 2) in triplets  # z's nearest other person is y
    assert all(anchor != 2 for anchor in a)  # y has no second image: no triplet


def test_model_margins_by_hand_in_chunks():
    feats = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])  # cos(0, 1) = 1/sqrt(2), cos(0, 2) = 0
    a, p, n = np.array([0, 0, 0]), np.array([1, 1, 2]), np.array([2, 1, 1])
    np.testing.assert_allclose(model_margins(feats, a, p, n, chunk=2), [-1 / np.sqrt(2), 0.0, 1 / np.sqrt(2)])


def test_kissme_by_hand_and_metric_distance():
    pos = np.array([[1.0], [-1.0]])  # variance 1
    neg = np.array([[2.0], [-2.0]])  # variance 4
    m = kissme(pos, neg, ridge=0.0)
    assert m[0, 0] == pytest.approx(1 - 1 / 4)
    x, y = np.array([[0.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 3.0]])
    assert np.allclose(metric_distance(x, y, np.eye(2)), [[1.0, 4.0]])
    # covariances whose difference is indefinite: the metric is made positive semi-definite
    m = kissme(np.array([[1.0, 0], [0, 3.0]]), np.array([[2.0, 0], [0, 1.0]]), ridge=0.0)
    assert np.linalg.eigvalsh(m).min() >= -1e-12


def test_fusion_file_round_trip_and_refusals(tmp_path):
    fusion = _fusion()
    fusion.save(tmp_path / "f.npz")
    back = Fusion.load(tmp_path / "f.npz")
    assert back.names == NAMES and back.mixing == 0.5 and np.allclose(back.weights, [2.0, 1.0])
    assert back.model == {"name": "modelA", "fingerprint": "aaaa"}

    class Other:
        name, fingerprint = "modelB", "bbbb"

    with pytest.raises(ValueError, match="modelA.*aaaa.*modelB.*bbbb"):
        back.check_model(Other())
    with pytest.raises(ValueError, match="missing hairLong"):
        back.check_vocabulary(["personalMale", "carryingBackpack"])
    with pytest.raises(ValueError, match="non-negative"):
        _fusion(weights=(-1.0, 1.0))
    (tmp_path / "bad.npz").write_bytes(b"not a fusion")
    with pytest.raises(ValueError, match="bad.npz: not an xreid fusion file"):
        Fusion.load(tmp_path / "bad.npz")


def test_explain_ranking_with_a_fusion_reorders_and_splits_exactly():
    head = _head()
    q = np.array([1.0, 0.0, 0.0, 0.0])
    gallery = np.array([[1.0, 0.1, 0.0, 0.0], [1.0, 0.2, 0.0, 0.0]])
    fusion = _fusion(weights=(1.0, 0.0), mixing=1.0)
    probs_q, probs_g = np.array([1.0, 0.5]), np.array([[0.0, 0.5], [1.0, 0.5]])  # item 0 differs in attribute 0
    e = explain_vectors(q, gallery, ["g0", "g1"], head, top_k=2, fusion=fusion, fusion_probabilities=(probs_q, probs_g))
    assert [r.key for r in e.results] == ["g1", "g0"]  # the attribute difference pushes g0 down
    assert e.results[1].original_rank == 2
    for r in e.results:
        assert r.distance == pytest.approx(r.fused.model + sum(r.fused.attributes.values()))
    assert e.results[1].fused.attributes == {"personalMale": pytest.approx(1.0)}
    assert e.distance.startswith("fused")


def test_cli_refuses_a_fusion_of_another_model(tmp_path, tiny_model):
    _fusion(fingerprint="0123456789abcdef").save(tmp_path / "f.npz")
    res = runner.invoke(app, ["eval", "--model", str(tiny_model), "--fusion", str(tmp_path / "f.npz"),
                              "--data-root", str(tmp_path)])
    assert res.exit_code == 2
    assert "modelA" in res.output and "0123456789abcdef" in res.output and "tiny" in res.output


def test_fuse_fit_needs_a_protocol_with_a_validation_twin(tmp_path, tiny_model):
    res = runner.invoke(app, ["fuse", "fit", "--model", str(tiny_model), "--out", str(tmp_path / "f.npz"),
                              "--protocol", "market", "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "no validation twin" in res.output


def test_cli_eval_with_a_fusion_ranks_by_the_fused_distance(tmp_path, tiny_model, mini_peta):
    """End to end on the tiny fixtures: an attribute that says each query looks like the other
    person's gallery image, weighted heavily, moves both true matches to rank 2 (mAP 50); with
    mixing 0 the fusion ranks exactly as the model alone."""
    import json

    from xreid.data.protocol import load_protocol
    from xreid.distance import l2_normalise
    from xreid.models.loading import load_embedder

    emb = load_embedder(tiny_model, backend="torch")
    proto = load_protocol("peta-reid", mini_peta)
    (ts,) = proto.test_sets
    recs = ts.query + ts.gallery  # persons 4 and 5: query 4, query 5, gallery 4, gallery 5
    assert [r.pid[-1] for r in recs] == ["4", "5", "4", "5"]
    f = l2_normalise(emb.embed_paths([proto.image_root / r.path for r in recs]).features.astype(np.float64))
    v = np.linalg.pinv(f) @ np.array([1.0, -1.0, -1.0, 1.0])  # attribute on for query 4 and gallery 5
    head = AttributeHead(NAMES, np.stack([20 * v, np.zeros_like(v)], 1), np.full(2, 0.4),
                         {"model_fingerprint": emb.fingerprint})
    assert np.allclose(head.predict(f)[:, 0].round(), [1, 0, 0, 1])
    identity = {"name": "tiny", "fingerprint": emb.fingerprint}
    attrs = {"spec": str(tiny_model), "name": "tiny", "fingerprint": emb.fingerprint}
    results = {}
    for mixing in (0.0, 10.0):
        Fusion(np.array([1.0, 0.0]), mixing, head, identity, attrs).save(tmp_path / f"f{mixing:g}.npz")
        out = tmp_path / f"e{mixing:g}.json"
        res = runner.invoke(app, ["eval", "--model", str(tiny_model), "--backend", "torch", "--data-root",
                                  str(mini_peta), "--fusion", str(tmp_path / f"f{mixing:g}.npz"), "--json", str(out)])
        assert res.exit_code == 0, res.output
        results[mixing] = json.loads(out.read_text())
    res = runner.invoke(app, ["eval", "--model", str(tiny_model), "--backend", "torch", "--data-root", str(mini_peta),
                              "--json", str(tmp_path / "plain.json")])
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert plain["mean"]["mAP"] > 50.0  # the model alone ranks at least one true match first
    assert results[0.0]["mean"]["mAP"] == pytest.approx(plain["mean"]["mAP"])
    assert results[10.0]["mean"]["mAP"] == pytest.approx(50.0) and results[10.0]["mean"]["R1"] == 0.0
    assert results[10.0]["options"]["fusion"]["mixing"] == 10.0


def _with_validation_twin(data_root):
    """mini_peta plus a PETA-ReID-val twin: train on VIPeR persons 0-1, validate on persons 2-3."""
    import json

    from xreid.data.peta import PROTOCOL_FILES

    peta = data_root / "peta"
    full = json.loads((peta / PROTOCOL_FILES["peta-reid"]).read_text())
    train = [e for e in full["train"] if e["pid"] in ("VIPeR/000", "VIPeR/001")]
    val = [e for e in full["train"] if e not in train]
    sets = {"VIPeR-val": {"query": [e for e in val if e["cam"].endswith("1")],
                          "gallery": [e for e in val if e["cam"].endswith("2")]}}
    (peta / PROTOCOL_FILES["peta-reid-val"]).write_text(json.dumps({**full, "name": "mini-val", "train": train,
                                                                     "test": sets}))
    return data_root


@pytest.mark.parametrize("objective", ["complementary", "attributes"])
def test_fit_fusion_chooses_on_validation(tmp_path, tiny_model, mini_peta, objective):
    """Both objectives end with a fused candidate; 'attributes' chooses its weights by the attributes' own
    validation mAP (one row per margin x L2, mixing None) and only then the mixing by the fused one."""
    from xreid.models.loading import load_embedder
    from xreid.workflows.attributes import fit_head
    from xreid.workflows.fuse import fit_fusion

    root = _with_validation_twin(mini_peta)
    emb = load_embedder(tiny_model)
    head = fit_head(emb, root, "peta-reid", epochs=20)
    fusion, meta = fit_fusion(emb, emb, head, root, tmp_path / "cache", objective=objective, margins=(0.0, 0.05),
                              decays=(1e-3,), mixings=(0.0, 1.0), progress=False)
    assert np.all(fusion.weights >= 0) and np.isfinite(fusion.weights).all()
    assert meta["chosen"]["mixing"] in (0.0, 1.0) and fusion.mixing == meta["chosen"]["mixing"]
    alone = [c for c in meta["candidates"] if c["mixing"] is None]
    if objective == "complementary":
        assert not alone and len(meta["candidates"]) == 4
    else:
        assert len(alone) == 2 and len(meta["candidates"]) == 4
        best_alone = max(c["val_mAP"] for c in alone)
        assert meta["chosen"]["attributes_alone_val_mAP"] == best_alone
