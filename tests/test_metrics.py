import numpy as np
import pytest

from xreid.evaluation.metrics import (attribute_mean_accuracy, average_precision, evaluate_distances,
                                      evaluate_ranking, inverse_negative_penalty)


def test_average_precision_hand_computed():
    # hits at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    assert average_precision(np.array([1, 0, 1, 0], bool)) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0, 0, 0], bool)) == 0.0


def test_inp_hand_computed():
    # 2 true matches, hardest at rank 4: INP = 2 / 4
    assert inverse_negative_penalty(np.array([1, 0, 0, 1, 0], bool)) == pytest.approx(0.5)
    assert inverse_negative_penalty(np.array([1, 1], bool)) == pytest.approx(1.0)


def test_same_camera_and_junk_rules():
    # one query (pid 1, cam A); gallery sorted by distance:
    #   g0 pid 1 cam A -> ignored (same shot), g1 junk -> ignored, g2 pid 2 -> miss, g3 pid 1 cam B -> hit
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    m = evaluate_distances(dist, ["1"], ["1", "9", "2", "1"], ["A"], ["A", "B", "B", "B"],
                           g_junk=np.array([False, True, False, False]))
    # after removal the list is [miss, hit]: rank-1 0, rank-2 1, AP = 1/2, INP = 1/2
    assert m.rank(1) == 0.0 and m.rank(2) == 1.0
    assert m.mAP == pytest.approx(0.5) and m.mINP == pytest.approx(0.5)
    assert m.num_queries == 1 and m.num_skipped == 0


def test_query_without_match_is_skipped():
    dist = np.array([[0.1, 0.2], [0.3, 0.1]])
    m = evaluate_distances(dist, ["1", "5"], ["1", "2"], ["A", "A"], ["B", "B"])
    assert m.num_queries == 1 and m.num_skipped == 1 and m.mAP == 1.0


def test_two_queries_mean_and_cmc():
    # q0 finds its match at rank 1; q1 at rank 3 (2 distractors first): mAP = (1 + 1/3) / 2
    dist = np.array([[0.0, 0.5, 0.6, 0.7], [0.9, 0.1, 0.2, 0.3]])
    m = evaluate_distances(dist, ["a", "b"], ["a", "x", "y", "b"], ["1", "1"], ["2", "2", "2", "2"])
    assert m.mAP == pytest.approx((1 + 1 / 3) / 2)
    assert list(m.cmc[:3]) == [0.5, 0.5, 1.0]
    assert m.summary()["R1"] == pytest.approx(50.0)


def test_chunked_equals_unchunked():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(37, 8)), rng.normal(size=(120, 8))
    qp, gp = rng.integers(0, 10, 37).astype(str), rng.integers(0, 10, 120).astype(str)
    qc, gc = rng.integers(0, 3, 37).astype(str), rng.integers(0, 3, 120).astype(str)
    a = evaluate_ranking(q, g, qp, gp, qc, gc, chunk=5)
    b = evaluate_ranking(q, g, qp, gp, qc, gc, chunk=1000)
    assert a.mAP == pytest.approx(b.mAP) and a.mINP == pytest.approx(b.mINP)
    np.testing.assert_allclose(a.cmc, b.cmc)


def test_attribute_mean_accuracy_hand_computed():
    truth = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], bool)
    pred = np.array([[1, 0], [0, 1], [0, 1], [0, 1]], bool)
    ma, tpr, tnr = attribute_mean_accuracy(pred, truth)
    # attr 0: TPR 1/2, TNR 2/2 -> 0.75; attr 1: TPR 2/2, TNR 1/2 -> 0.75
    np.testing.assert_allclose(tpr, [0.5, 1.0])
    np.testing.assert_allclose(tnr, [1.0, 0.5])
    assert ma == pytest.approx(0.75)
