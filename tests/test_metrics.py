import numpy as np
import pytest

from xreid.evaluation.metrics import (MetricAccumulator, attribute_mean_accuracy, average_precision, evaluate_distances,
                                      truncated_average_precision,
                                      evaluate_ranking, inverse_negative_penalty)


def test_truncated_average_precision_hand_computed():
    # 3 true matches in the gallery, the top 4 holds two of them at ranks 1 and 3: (1/1 + 2/3) / 3
    assert truncated_average_precision(np.array([1, 0, 1, 0], bool), 3) == pytest.approx((1 + 2 / 3) / 3)
    # every true match in the list: plain AP
    assert truncated_average_precision(np.array([0, 1, 1], bool), 2) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert truncated_average_precision(np.array([0, 0], bool), 1) == 0.0


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


def _oracle(q, g, qp, gp, qc, gc, junk, max_rank):
    """A second, deliberately naive implementation of the Market-1501 rule: one query at a time, cosine
    by explicit dot products and norms, the list filtered element by element, AP as the mean precision at
    each hit. Shares no code with xreid.evaluation.metrics."""
    aps, inps, cmc, skipped = [], [], [0] * max_rank, 0
    for i in range(len(q)):
        dist = []
        for j in range(len(g)):
            cos = sum(a * b for a, b in zip(q[i], g[j])) / (sum(a * a for a in q[i]) ** 0.5 * sum(b * b for b in g[j]) ** 0.5)
            dist.append((1.0 - cos, j))
        ranked = [j for _, j in sorted(dist)]  # ties broken by gallery index, as a stable sort would
        kept = [gp[j] == qp[i] for j in ranked if not junk[j] and not (gp[j] == qp[i] and gc[j] == qc[i])]
        if not any(kept):
            skipped += 1
            continue
        hits = [r for r, ok in enumerate(kept) if ok]
        aps.append(sum((n + 1) / (r + 1) for n, r in enumerate(hits)) / len(hits))
        inps.append(len(hits) / (hits[-1] + 1))
        for k in range(hits[0], max_rank):
            cmc[k] += 1
    n = len(aps)
    return sum(aps) / n, sum(inps) / n, [c / n for c in cmc], n, skipped


def test_evaluate_ranking_matches_an_independent_oracle_on_galleries_of_unequal_norms():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(23, 6)), rng.normal(size=(70, 6))
    # norms spread over four orders of magnitude: ranking by a dot product or by Euclidean distance
    # instead of the cosine (e.g. an un-normalised gallery) gives another order
    g *= 10.0 ** rng.uniform(-2, 2, size=(70, 1))
    q *= 10.0 ** rng.uniform(-2, 2, size=(23, 1))
    qp, gp = rng.integers(0, 8, 23).astype(str), rng.integers(0, 8, 70).astype(str)
    qp[0] = "nobody"  # a query without a match is skipped
    qc, gc = rng.integers(0, 3, 23).astype(str), rng.integers(0, 3, 70).astype(str)
    junk = rng.random(70) < 0.1
    mAP, mINP, cmc, n, skipped = _oracle(q.tolist(), g.tolist(), qp, gp, qc, gc, junk, 20)
    assert skipped >= 1 and n + skipped == 23
    for chunk in (1, 5, 1000):
        m = evaluate_ranking(q, g, qp, gp, qc, gc, g_junk=junk, chunk=chunk, max_rank=20)
        assert m.mAP == pytest.approx(mAP, abs=1e-12) and m.mINP == pytest.approx(mINP, abs=1e-12)
        np.testing.assert_allclose(m.cmc, cmc, atol=1e-12)
        assert (m.num_queries, m.num_skipped) == (n, skipped)
    # the same gallery at unit norm ranks identically (only directions count)
    unit = evaluate_ranking(q, g / np.linalg.norm(g, axis=1, keepdims=True), qp, gp, qc, gc, g_junk=junk, max_rank=20)
    assert unit.mAP == pytest.approx(mAP, abs=1e-12)
    # and a plain dot product would have ranked otherwise, so the test can tell the two apart
    dot = evaluate_distances(-(q @ g.T), qp, gp, qc, gc, g_junk=junk, max_rank=20)
    assert abs(dot.mAP - mAP) > 0.01


def test_attribute_mean_accuracy_hand_computed():
    truth = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], bool)
    pred = np.array([[1, 0], [0, 1], [0, 1], [0, 1]], bool)
    ma, tpr, tnr = attribute_mean_accuracy(pred, truth)
    # attr 0: TPR 1/2, TNR 2/2 -> 0.75; attr 1: TPR 2/2, TNR 1/2 -> 0.75
    np.testing.assert_allclose(tpr, [0.5, 1.0])
    np.testing.assert_allclose(tnr, [1.0, 0.5])
    assert ma == pytest.approx(0.75)


def test_summary_reports_percentages_and_counts():
    dist = np.array([[0.0, 0.5, 0.6, 0.7], [0.9, 0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    # q0 hit at rank 1; q1 at rank 3 (AP 1/3, INP 1/3); q2 and q3 have no match (skipped)
    m = evaluate_distances(dist, ["a", "b", "z", "y"], ["a", "x", "w", "b"], ["1"] * 4, ["2"] * 4)
    s = m.summary(ranks=(1, 3))
    assert s == {"R1": pytest.approx(50.0), "R3": pytest.approx(100.0), "mAP": pytest.approx(100 * (1 + 1 / 3) / 2),
                 "mINP": pytest.approx(100 * (1 + 1 / 3) / 2), "queries": 2, "skipped_queries": 2}
    assert len(m.cmc) == 50 and m.rankings is None  # the defaults: CMC to rank 50, no rankings kept


def test_rankings_are_kept_on_request_and_ties_keep_gallery_order():
    # 40 gallery items at one distance: a stable sort keeps gallery order, so the match at index 30 is rank 31
    dist = np.zeros((1, 40))
    g_pids = ["x"] * 40
    g_pids[30] = "q"
    m = evaluate_distances(dist, ["q"], g_pids, ["1"], ["2"] * 40)
    assert m.mAP == pytest.approx(1 / 31) and m.rank(30) == 0.0 and m.rank(31) == 1.0
    # two interleaved groups of 20 ties (an unstable sort reorders these): the match at index 5 is the
    # third of the nearer group (1, 3, 5, ...)
    g_pids = ["x"] * 40
    g_pids[5] = "q"
    m = evaluate_distances(np.array([[1.0, 0.0] * 20]), ["q"], g_pids, ["1"], ["2"] * 40)
    assert m.mAP == pytest.approx(1 / 3)
    q, g = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [1.0, 0.1], [1.0, 0.0]])
    r = evaluate_ranking(q, g, ["a", "b"], ["b", "c", "a"], ["1", "1"], ["2", "2", "2"], max_rank=2,
                         keep_rankings=True)
    assert [x.tolist() for x in r.rankings] == [[2, 1], [0, 1]] and len(r.cmc) == 2
    default = evaluate_ranking(q, g, ["a", "b"], ["b", "c", "a"], ["1", "1"], ["2", "2", "2"])
    assert default.rankings is None and default.cmc.shape == (50,)
    acc = MetricAccumulator()
    assert acc.max_rank == 50 and acc.rankings is None and acc.result().cmc.shape == (50,)


def test_a_distance_of_ones_own_sees_the_features_as_given():
    # Euclidean distance on features of unequal length ranks otherwise than the cosine: evaluate_ranking
    # must not normalise features for a distance other than its own
    q = np.array([[1.0, 0.0]])
    g = np.array([[10.0, 0.0], [0.0, 1.0]])  # same direction but far; orthogonal but near
    euclid = lambda a, b: np.linalg.norm(a[:, None] - b[None], axis=-1)  # noqa: E731
    m = evaluate_ranking(q, g, ["a"], ["a", "b"], ["1"], ["2", "2"], distance=euclid, keep_rankings=True)
    assert m.rankings[0].tolist() == [1, 0] and m.mAP == pytest.approx(0.5)
    assert evaluate_ranking(q, g, ["a"], ["a", "b"], ["1"], ["2", "2"]).mAP == 1.0  # the cosine: first


def test_skipped_queries_are_counted_and_inp_of_no_match_is_zero():
    dist = np.zeros((3, 2))
    m = evaluate_distances(dist, ["a", "b", "c"], ["a", "x"], ["1", "1", "1"], ["2", "2"])
    assert m.num_queries == 1 and m.num_skipped == 2
    assert inverse_negative_penalty(np.array([False, False])) == 0.0


def test_attribute_mean_accuracy_edge_cases_without_warnings():
    import warnings

    # one positive sample is enough for a TPR; 0/1 integers read as booleans
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ma, tpr, tnr = attribute_mean_accuracy(np.array([[1, 0], [0, 0]]), np.array([[1, 0], [0, 0]]))
        assert tpr[0] == 1.0 and tnr[0] == 1.0 and ma == 1.0  # attribute 1 has no positive: NaN TPR, left out
        assert np.isnan(tpr[1]) and tnr[1] == 1.0
        ma, tpr, tnr = attribute_mean_accuracy(np.zeros((3, 1), bool), np.zeros((3, 1), bool))
        assert np.isnan(ma) and np.isnan(tpr[0]) and tnr[0] == 1.0
