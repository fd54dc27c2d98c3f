"""The interpreter's distance decomposition as pure functions (docs/METHODS.md#interpreter).

An interpreter maps each image x to one vector z_a(x) per attribute a. The component of attribute a
in the distance between x and y is

    d_a(x, y) = ||z_a(x) - z_a(y)||^2  >= 0,

and the reconstructed distance is their sum, d_hat = sum_a d_a, which the fit makes reproduce the
target model's distance d (``xreid.distance``). A component's contribution is its share of the sum,
c_a = d_a / d_hat (all zero for a pair at distance 0: nothing to explain, never NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Below this a reconstructed (or target) distance counts as 0: shares and relative errors are not defined.
ZERO_DISTANCE = 1e-9


def component_distances(z_q: np.ndarray, z_g: np.ndarray) -> np.ndarray:
    """d_a = ||z_q,a - z_g,a||^2 per attribute. ``z_q``: A x k (one image) or Q x A x k, ``z_g``:
    G x A x k. Returns G x A for one query image, Q x G x A for several."""
    z_q, z_g = np.asarray(z_q, np.float64), np.asarray(z_g, np.float64)
    if z_q.ndim == 2:
        return ((z_g - z_q[None]) ** 2).sum(-1)
    # ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b, per attribute, without a Q x G x A x k array
    sq_q, sq_g = (z_q ** 2).sum(-1), (z_g ** 2).sum(-1)
    cross = np.einsum("qak,gak->qga", z_q, z_g)
    return np.maximum(sq_q[:, None, :] + sq_g[None, :, :] - 2 * cross, 0.0)


def contributions(parts: np.ndarray) -> np.ndarray:
    """Each component's share of the reconstructed distance (rows sum to 1); a pair whose components
    are all (nearly) zero gets zeros, not NaN."""
    parts = np.asarray(parts, np.float64)
    total = parts.sum(-1, keepdims=True)
    return np.where(total > ZERO_DISTANCE, parts / np.maximum(total, ZERO_DISTANCE), 0.0)


def pair_fit(reconstructed: float, target: float) -> dict:
    """How well one pair's reconstruction matches the target distance: the absolute difference and
    the relative error |d_hat - d| / d (None for a pair at target distance 0)."""
    diff = float(reconstructed - target)
    return {"target": float(target), "reconstructed": float(reconstructed), "difference": diff,
            "relative_error": abs(diff) / float(target) if target > ZERO_DISTANCE else None}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as Spearman's correlation needs."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        if e - s > 1:
            ranks[order[s:e]] = (s + e - 1) / 2
    return ranks


def fidelity(reconstructed: np.ndarray, target: np.ndarray) -> dict:
    """Agreement of reconstructed and target distances over pairs: Pearson and Spearman correlation,
    and the mean and median relative error |d_hat - d| / d over the pairs with d > 0."""
    r, t = np.ravel(np.asarray(reconstructed, np.float64)), np.ravel(np.asarray(target, np.float64))
    if len(r) != len(t) or len(r) < 2:
        raise ValueError(f"fidelity needs two equally long lists of at least 2 distances (got {len(r)}, {len(t)})")
    pearson = float(np.corrcoef(r, t)[0, 1])
    spearman = float(np.corrcoef(_ranks(r), _ranks(t))[0, 1])
    ok = t > ZERO_DISTANCE
    rel = np.abs(r[ok] - t[ok]) / t[ok]
    return {"pearson": pearson, "spearman": spearman, "relative_error_mean": float(rel.mean()),
            "relative_error_median": float(np.median(rel)), "pairs": int(len(r))}


@dataclass
class InterpretedPair:
    """The interpreter's account of one (query, result) distance: every attribute's part, its share
    of the reconstructed distance, how well the parts' sum matches the target distance
    (``pair_fit``), and the attributes with the largest parts (never-seen attributes left out)."""

    key: str
    parts: list[float]
    shares: list[float]
    fit: dict
    largest: list[str]
    largest_shares: list[float] = field(default_factory=list)  # the shares of ``largest``, in order


@dataclass
class InterpretedRanking:
    """An interpreter's decomposition of an explained ranking's results."""

    attribute_names: list[str]
    absent: list[str]  # never positive in the interpreter's training data: parts without attribute meaning
    model: str
    pairs: list[InterpretedPair] = field(default_factory=list)
    seconds: float = 0.0
