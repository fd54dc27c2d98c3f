import numpy as np
import pytest

from xreid.distance import cosine_distance
from xreid.evaluation.metrics import evaluate_distances
from xreid.evaluation.rerank import average_query_expansion, k_reciprocal_rerank


def _unit(angles_deg):
    a = np.deg2rad(np.asarray(angles_deg, float))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_lambda_one_keeps_original_order():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(3, 4)), rng.normal(size=(10, 4))
    d = k_reciprocal_rerank(q, g, k1=3, k2=1, lambda_value=1.0)
    np.testing.assert_array_equal(np.argsort(d, axis=1), np.argsort(cosine_distance(q, g), axis=1))


def _direction(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    return np.array([np.cos(y) * np.cos(p), np.sin(y) * np.cos(p), np.sin(p)], np.float32)


def test_rerank_fixes_a_known_case():
    # Query along x. Its true match T sits 6 deg away, alone. Another identity D has six tight views
    # about 5 deg away on the other side: one of them is the query's raw nearest neighbour, but D's
    # views are each other's nearest, so the query is not a k-reciprocal neighbour of D while it is
    # one of T. With k1 = 4 (and no neighbour averaging, k2 = 1) T must move to rank 1.
    q = _direction(0, 0)[None]
    views_d = [_direction(dy, -5 - dz) for dy, dz in [(0, 0), (0.5, 0.5), (-0.5, 0.5), (0, 1), (0.5, 1.2), (-0.5, 1.2)]]
    g = np.stack([_direction(6, 0)] + views_d + [_direction(90, 0), _direction(180, 0), _direction(0, 90)])
    g_pids = ["p"] + ["d"] * 6 + ["a", "b", "c"]
    cams = ["2"] * len(g_pids)
    before = evaluate_distances(cosine_distance(q, g), ["p"], g_pids, ["1"], cams)
    after = evaluate_distances(k_reciprocal_rerank(q, g, k1=4, k2=1, lambda_value=0.3), ["p"], g_pids, ["1"], cams)
    assert before.rank(1) == 0.0
    assert after.rank(1) == 1.0 and after.mAP == 1.0


def test_rerank_rejects_huge_inputs(monkeypatch):
    import xreid.evaluation.rerank as rr

    monkeypatch.setattr(rr, "MAX_RERANK_IMAGES", 5)
    with pytest.raises(ValueError, match="limit"):
        rr.k_reciprocal_rerank(np.ones((3, 2)), np.ones((3, 2)))


def test_query_expansion_hand_computed():
    q = _unit([0.0])
    g = _unit([10.0, 20.0, 200.0])
    q2, g2 = average_query_expansion(q, g, k_query=1, k_gallery=1)
    # query averaged with its nearest gallery item (10 deg): direction 5 deg
    np.testing.assert_allclose(q2, _unit([5.0]), atol=1e-6)
    # gallery 10 deg with itself and its nearest other item (20 deg): 15 deg
    np.testing.assert_allclose(g2[0], _unit([15.0])[0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(g2, axis=1), 1.0, atol=1e-6)
