"""Re-id ranking metrics: CMC, mAP and mINP under the Market-1501 rule, computed in query chunks.

Rule: for each query, gallery items with the same person id *and* camera are ignored (they are
the same shot, not a re-identification), as are gallery items flagged junk. A query with no
remaining true match is left out of every average (and counted in ``num_skipped``).

Memory stays bounded on large galleries: distances are made ``chunk`` queries at a time
(chunk x gallery floats), never the full query x gallery match matrix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xreid.distance import cosine_distance, l2_normalise


def average_precision(matches: np.ndarray) -> float:
    """AP of one ranked list of booleans (True = correct match), over all its true matches."""
    hits = np.flatnonzero(matches)
    if hits.size == 0:
        return 0.0
    return float(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))


def truncated_average_precision(matches: np.ndarray, positives: int) -> float:
    """AP of a top-k list of booleans when the gallery holds ``positives`` true matches: true matches
    missing from the list count as never found (precision 0), so a list holding every true match
    gives ``average_precision``. For comparing searches that return only their top k."""
    hits = np.flatnonzero(matches)
    if positives <= 0:
        return 0.0
    return float(np.sum(np.arange(1, hits.size + 1) / (hits + 1)) / positives)


def inverse_negative_penalty(matches: np.ndarray) -> float:
    """INP of one ranked list (Ye et al.): number of true matches / rank of the hardest (last) one."""
    hits = np.flatnonzero(matches)
    if hits.size == 0:
        return 0.0
    return float(hits.size / (hits[-1] + 1))


@dataclass
class RankingMetrics:
    cmc: np.ndarray  # cmc[k-1] = fraction of queries with a true match within the top k
    mAP: float
    mINP: float
    num_queries: int
    num_skipped: int
    rankings: list[np.ndarray] | None = None  # per query, gallery indices nearest first (top max_rank)

    def rank(self, k: int) -> float:
        return float(self.cmc[min(k, len(self.cmc)) - 1])

    def summary(self, ranks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float]:
        """Percentages, as papers report them."""
        out = {f"R{k}": 100 * self.rank(k) for k in ranks}
        out.update(mAP=100 * self.mAP, mINP=100 * self.mINP, queries=self.num_queries,
                   skipped_queries=self.num_skipped)
        return out


class MetricAccumulator:
    """Sums per-query AP, INP and CMC hits over chunks of queries."""

    def __init__(self, max_rank: int = 50, keep_rankings: bool = False):
        self.max_rank = max_rank
        self.rankings: list[np.ndarray] | None = [] if keep_rankings else None
        self.cmc_hits = np.zeros(max_rank)
        self.ap_sum = self.inp_sum = 0.0
        self.valid = self.skipped = 0

    def add(self, dist: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_cams: np.ndarray,
            g_cams: np.ndarray, g_junk: np.ndarray | None = None) -> None:
        """Score a chunk: ``dist`` is (chunk queries) x (gallery), smaller = more similar."""
        order = np.argsort(dist, axis=1, kind="stable")
        for i in range(dist.shape[0]):
            ranked = order[i]
            if self.rankings is not None:
                self.rankings.append(ranked[:self.max_rank])
            ignore = (g_pids[ranked] == q_pids[i]) & (g_cams[ranked] == q_cams[i])
            if g_junk is not None:
                ignore |= g_junk[ranked]
            matches = (g_pids[ranked] == q_pids[i])[~ignore]
            if not matches.any():
                self.skipped += 1
                continue
            self.valid += 1
            first = int(np.argmax(matches))
            if first < self.max_rank:
                self.cmc_hits[first:] += 1
            self.ap_sum += average_precision(matches)
            self.inp_sum += inverse_negative_penalty(matches)

    def result(self) -> RankingMetrics:
        n = max(self.valid, 1)
        return RankingMetrics(self.cmc_hits / n, self.ap_sum / n, self.inp_sum / n, self.valid, self.skipped,
                              self.rankings)


def evaluate_ranking(q_feats: np.ndarray, g_feats: np.ndarray, q_pids, g_pids, q_cams, g_cams,
                     g_junk: np.ndarray | None = None, chunk: int = 256, max_rank: int = 50,
                     distance: Callable[[np.ndarray, np.ndarray], np.ndarray] = cosine_distance,
                     keep_rankings: bool = False) -> RankingMetrics:
    """CMC / mAP / mINP of features, computing distances ``chunk`` queries at a time (the ranking
    distance of ``xreid.distance`` unless another is given)."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_cams, g_cams = np.asarray(q_cams), np.asarray(g_cams)
    acc = MetricAccumulator(max_rank, keep_rankings)
    if distance is cosine_distance:  # normalise the gallery once, not once per chunk of queries
        q_feats, g_feats = l2_normalise(q_feats), l2_normalise(g_feats)
        distance = functools.partial(cosine_distance, normalised=True)
    for s in range(0, len(q_feats), chunk):
        acc.add(distance(q_feats[s:s + chunk], g_feats), q_pids[s:s + chunk], g_pids, q_cams[s:s + chunk],
                g_cams, g_junk)
    return acc.result()


def evaluate_distances(dist: np.ndarray, q_pids, g_pids, q_cams, g_cams, g_junk: np.ndarray | None = None,
                       max_rank: int = 50) -> RankingMetrics:
    """CMC / mAP / mINP of a precomputed query x gallery distance matrix (e.g. after re-ranking)."""
    acc = MetricAccumulator(max_rank)
    acc.add(dist, np.asarray(q_pids), np.asarray(g_pids), np.asarray(q_cams), np.asarray(g_cams), g_junk)
    return acc.result()


def attribute_mean_accuracy(pred: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Label-based mA: mean over attributes of (TPR + TNR) / 2. Returns (mA, TPR, TNR) per attribute.

    Attributes with no positive (or no negative) sample get NaN for that rate and are left out of mA.
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    pos, neg = truth.sum(0), (~truth).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(pos > 0, (pred & truth).sum(0) / pos, np.nan)
        tnr = np.where(neg > 0, (~pred & ~truth).sum(0) / neg, np.nan)
    both = (tpr + tnr) / 2
    ma = float(np.nanmean(both)) if np.isfinite(both).any() else float("nan")
    return ma, tpr, tnr
