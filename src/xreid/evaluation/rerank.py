"""Post-hoc ranking refinements: k-reciprocal re-ranking and average query expansion."""

from __future__ import annotations

import numpy as np

from xreid.distance import cosine_distance, l2_normalise

MAX_RERANK_IMAGES = 30_000  # the method needs an (Q+G) x (Q+G) matrix


def _k_reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """The k-reciprocal neighbours of i: its top-k neighbours that also have i in their top-k."""
    forward = rank[i, :k + 1]
    backward = rank[forward, :k + 1]
    return forward[np.any(backward == i, axis=1)]


def k_reciprocal_rerank(q_feats: np.ndarray, g_feats: np.ndarray, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3) -> np.ndarray:
    """Zhong et al. (CVPR 2017) re-ranked query x gallery distances.

    Final distance = (1 - lambda) * Jaccard distance of k-reciprocal neighbour sets (soft,
    Gaussian-weighted, expanded and averaged over k2 neighbours) + lambda * original distance.
    Original distances are squared Euclidean between L2-normalised features, each column divided
    by its maximum, as in the paper's reference code.
    """
    nq = len(q_feats)
    feats = np.concatenate([q_feats, g_feats]).astype(np.float32)
    jaccard, dist = k_reciprocal_jaccard(feats, k1, k2, nq)
    final = (1 - lambda_value) * jaccard + lambda_value * dist[:nq]
    return final[:, nq:]


def k_reciprocal_jaccard(feats: np.ndarray, k1: int = 20, k2: int = 6, rows: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(the Jaccard distances of k-reciprocal neighbour sets between the first ``rows`` features (all
    when None) and every feature, the column-normalised original distances) within one set of
    features: ``k_reciprocal_rerank``'s core, and the distance ``xreid adapt`` clusters on."""
    n = len(feats)
    nq = n if rows is None else rows
    if n > MAX_RERANK_IMAGES:
        raise ValueError(f"k-reciprocal re-ranking needs an {n} x {n} matrix; limit is {MAX_RERANK_IMAGES} images")
    dist = 2.0 * cosine_distance(feats, feats)  # = squared Euclidean of normalised features
    np.maximum(dist, 0, out=dist)
    dist = (dist / dist.max(axis=0, keepdims=True).clip(1e-12)).T
    rank = np.argsort(dist, axis=1).astype(np.int32)
    half = int(round(k1 / 2))
    v = np.zeros((n, n), np.float32)
    for i in range(n):
        recip = _k_reciprocal(rank, i, k1)
        expansion = [recip]
        for c in recip:
            c_recip = _k_reciprocal(rank, int(c), half)
            if len(np.intersect1d(c_recip, recip)) > 2.0 / 3.0 * len(c_recip):
                expansion.append(c_recip)
        idx = np.unique(np.concatenate(expansion))
        w = np.exp(-dist[i, idx])
        v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    # Jaccard distance between query rows and every row via min-sums over shared non-zeros
    jaccard = np.zeros((nq, n), np.float32)
    for i in range(nq):
        nz = np.flatnonzero(v[i])
        shared = np.minimum(v[i, nz][None, :], v[:, nz]).sum(axis=1)
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    return jaccard, dist


def _top_k_mean(anchors: np.ndarray, pool: np.ndarray, k: int, include_self: bool, chunk: int = 1024) -> np.ndarray:
    """Each anchor averaged with its k nearest rows of ``pool`` (cosine), in chunks; L2-normalised."""
    out = np.empty_like(anchors, dtype=np.float32)
    pool_n = l2_normalise(pool)
    for s in range(0, len(anchors), chunk):
        a_n = l2_normalise(anchors[s:s + chunk])
        sim = a_n @ pool_n.T
        kk = min(k + (1 if include_self else 0), pool.shape[0])
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        mean = (pool_n[top].sum(axis=1) + (0 if include_self else a_n)) / (kk + (0 if include_self else 1))
        out[s:s + chunk] = l2_normalise(mean)
    return out


def average_query_expansion(q_feats: np.ndarray, g_feats: np.ndarray, k_query: int = 5,
                            k_gallery: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Average query expansion (docs/METHODS.md#evaluation): each query averaged with its top-``k_query`` gallery
    neighbours, each gallery item with its top-``k_gallery`` gallery neighbours (itself included)."""
    g_new = _top_k_mean(g_feats, g_feats, k_gallery, include_self=True)
    q_new = _top_k_mean(q_feats, g_feats, k_query, include_self=False)
    return q_new, g_new
