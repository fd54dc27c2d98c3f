"""Scoring an interpreter on test sets (xreid.evaluation.interpreter_eval), on a 4-image case small
enough that every figure is worked out by hand below."""

from types import SimpleNamespace

import numpy as np
import pytest

from xreid.evaluation import interpreter_eval as ie  # (its ``test_pairs`` must not be collected as a test)

# one test set: queries = images 0 (person a) and 1 (person b), gallery = images 2 (a) and 3 (b)
TARGETS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # target cosine distances: 0 same, 1 other
# components (A = 2 attributes, k = 1): d_hat per pair is the sum of squared component differences
#   q0-g2: (0-1)^2 + 0 = 1      q0-g3: 0 + (0-0.5)^2 = 0.25
#   q1-g2: 0 + 0.5^2 = 0.25     q1-g3: (1-0)^2 + 0 = 1      -> the reconstruction ranks both queries wrongly
Z = np.array([[[0.0], [0.0]], [[1.0], [0.5]], [[1.0], [0.0]], [[0.0], [0.5]]])
LABELS = np.array([[False, False], [True, False], [False, False], [False, True]])
SETS = [ie.TestPairs("S", np.array([0, 1]), np.array([2, 3]), ["a", "b"], ["a", "b"], ["1", "1"], ["2", "2"])]


def test_top_impostors_are_other_identities_within_the_top_k():
    dist = np.array([[0.1, 0.3, 0.2], [0.5, 0.4, 0.6]])
    # q0 ranks g0, g2, g1; q1 ranks g1, g0, g2. pids: q0 = x, q1 = y; gallery x, y, z
    assert ie.top_impostors(dist, ["x", "y"], ["x", "y", "z"], k=2) == [(0, 2), (1, 0)]
    assert ie.top_impostors(dist, ["x", "y"], ["x", "y", "z"], k=3) == [(0, 2), (0, 1), (1, 0), (1, 2)]
    assert ie.top_impostors(dist, ["x", "y"], ["x", "y", "z"], k=1) == []


def test_test_pairs_index_rows_of_the_test_images():
    rec = lambda path, pid, cam: SimpleNamespace(path=path, pid=pid, cam=cam)  # noqa: E731
    q = [rec("q1", "p1", "c1"), rec("q2", "p2", "c1")]
    g = [rec("g1", "p1", "c2"), rec("g2", "p3", "c2"), rec("q2", "p2", "c1")]
    protocol = SimpleNamespace(test_images=lambda: [rec("g1", 0, 0), rec("q1", 0, 0), rec("g2", 0, 0), rec("q2", 0, 0)],
                               test_sets=[SimpleNamespace(name="T", query=q, gallery=g)])
    keys, sets = ie.test_pairs(protocol)
    assert keys == ["g1", "q1", "g2", "q2"]
    (ts,) = sets
    assert ts.name == "T" and ts.query_rows.tolist() == [1, 3] and ts.gallery_rows.tolist() == [0, 2, 3]
    assert (ts.q_pids, ts.g_pids, ts.q_cams, ts.g_cams) == (["p1", "p2"], ["p1", "p3", "p2"], ["c1", "c1"],
                                                            ["c2", "c2", "c1"])


def test_evaluate_interpretation_hand_computed():
    flat = lambda q, g: np.ones((len(q), len(g), 2))  # noqa: E731  (a baseline scoring every attribute alike)
    out = ie.evaluate_interpretation(Z, TARGETS, LABELS, np.ones(4, bool), SETS, baselines={"flat": flat})
    s = out["per_set"]["S"]
    # fidelity: reconstructed (1, .25, .25, 1) against target (0, 1, 1, 0): perfectly anti-correlated;
    # relative error over the pairs with d > 0: |0.25 - 1| / 1 twice
    assert s["fidelity"]["pearson"] == pytest.approx(-1) and s["fidelity"]["spearman"] == pytest.approx(-1)
    assert s["fidelity"]["relative_error_mean"] == pytest.approx(0.75) and s["fidelity"]["pairs"] == 4
    assert out["fidelity"] == s["fidelity"]  # one set: the overall figure is that set's
    # mAP: the target ranks both right (100), the reconstruction both wrong (AP 1/2 each: 50). Mixes use
    # (1 - w) d + w s d_hat with s = mean d / mean d_hat = 0.5 / 0.625 = 0.8:
    #   w 0.5 : q0 -> g2 0.4, g3 0.6 (right);  w 0.75: q0 -> g2 0.6, g3 0.25 + 0.15 = 0.4 (wrong)
    assert s["mAP_target"] == pytest.approx(100) and s["mAP_reconstructed"] == pytest.approx(50)
    assert s["mAP_mix"] == pytest.approx({"mix_0": 100, "mix_0.25": 100, "mix_0.5": 100, "mix_0.75": 50, "mix_1": 50})
    assert out["mAP_mix_0.5"] == pytest.approx(100) and out["mAP_mix_1"] == pytest.approx(50)
    # explanation, over the pairs of two identities: q0-g3 (labels differ in attribute 1, components
    # (0, .25) -> contributions (0, 1)) and q1-g2 (differ in attribute 0, contributions (0, 1)).
    #   Ex_Precision_d: top attribute 1 is right for q0-g3, wrong for q1-g2 -> 50; Ex_mAP_d: (1 + 1/2) / 2 = 75
    #   top-1 precision over each query's impostors by the target (q0: g3, q1: g2): the same 1 of 2 -> 50
    e = out["explanation"]["interpreter"]
    assert (e["ex_precision_d"], e["ex_precision_s"], e["ex_map_d"], e["ex_map_s"]) == pytest.approx((50, 50, 75, 75))
    assert (e["pairs"], e["pairs_with_differences"], e["attributes"]) == (2, 2, 2)
    assert e["top1_precision"] == pytest.approx(50) and e["top1_pairs"] == 2
    # the flat baseline's ties go to attribute 0: right for q1-g2, wrong for q0-g3
    b = out["explanation"]["flat"]
    assert (b["ex_precision_d"], b["ex_map_d"], b["top1_precision"]) == pytest.approx((50, 75, 50))


def test_keep_and_unlabelled_images():
    # scoring attribute 0 only: the interpreter's pick is attribute 0 for both impostor pairs
    # (q0-g3: labels agree on attribute 0 -> wrong; q1-g2: differ -> right)
    out = ie.evaluate_interpretation(Z, TARGETS, LABELS, np.ones(4, bool), SETS, keep=np.array([True, False]))
    e = out["explanation"]["interpreter"]
    assert e["attributes"] == 1 and e["top1_precision"] == pytest.approx(50)
    # one query unlabelled: only q1-g2 remains, and the interpreter (top attribute 1) is wrong on it
    labelled = np.array([False, True, True, True])
    out = ie.evaluate_interpretation(Z, TARGETS, LABELS, labelled, SETS, mixes=(0.0,))
    e = out["explanation"]["interpreter"]
    assert e["pairs"] == 1 and e["top1_pairs"] == 1 and e["top1_precision"] == 0.0 and e["ex_precision_d"] == 0.0
    assert set(out) == {"fidelity", "per_set", "mAP_mix_0", "explanation"}
    # no labelled pair at all: no top-1 figure rather than a division by zero
    out = ie.evaluate_interpretation(Z, TARGETS, LABELS, np.zeros(4, bool), SETS, mixes=(0.0,))
    assert out["explanation"]["interpreter"]["top1_precision"] is None
