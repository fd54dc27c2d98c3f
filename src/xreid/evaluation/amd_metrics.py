"""AMD's explanation metrics (docs/METHODS.md#interpreter), over pairs of images with ground-truth
attribute labels and per-attribute contributions to their distance.

For a pair, D = the attributes whose labels truly differ (k = |D|), S = those that match (k' = |S|),
and c the contributions (normalised to sum to 1 per pair; ``xreid.explain.interpretation.contributions``):

- Ex_Precision_d = |top-k attributes by contribution ∩ D| / k, averaged over pairs with k > 0;
- Ex_Precision_s = |bottom-k' attributes by contribution ∩ S| / k', averaged over pairs with k' > 0;
  a pair whose attributes all match (k' = A) would score 1 whatever its contributions, so it scores
  the share of attributes whose contribution is at most 2 / A instead;
- Ex_mAP_d = average precision of D when the attributes are ranked by contribution, largest first
  (mean over the attributes of D of the share of D among the attributes ranked up to it), over
  pairs with k > 0; Ex_mAP_s likewise for S ranked smallest first, over pairs with k' > 0.

Attributes are ranked by the scores as given (a positive scale per pair changes nothing; scores
that may be negative, like the published attribute error, rank below zero); the 2 / A rule reads
the non-negative part of the scores normalised to sum to 1. Ties are broken by attribute order
(stable sort), the same for every method scored.
Attributes to leave out (never labelled positive, say) are dropped with ``keep`` before scoring.
"""

from __future__ import annotations

import numpy as np


def _precision_at_k(order: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per pair, the share of the first k (k = number relevant) ranked attributes that are relevant."""
    k = relevant.sum(1)
    hits_ranked = np.take_along_axis(relevant, order, axis=1)
    positions = np.arange(relevant.shape[1])[None, :]
    hits = (hits_ranked & (positions < k[:, None])).sum(1)
    return np.where(k > 0, hits / np.maximum(k, 1), np.nan)


def _average_precision(order: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    hits_ranked = np.take_along_axis(relevant, order, axis=1)
    cum = np.cumsum(hits_ranked, axis=1)
    prec = cum / np.arange(1, relevant.shape[1] + 1)[None, :]
    k = relevant.sum(1)
    return np.where(k > 0, (prec * hits_ranked).sum(1) / np.maximum(k, 1), np.nan)


def explanation_metrics(contrib: np.ndarray, differs: np.ndarray, keep: np.ndarray | None = None) -> dict:
    """Ex_Precision_d / _s and Ex_mAP_d / _s (percent) for P pairs: ``contrib`` P x A contributions,
    ``differs`` P x A booleans (labels truly differ). ``keep``: A booleans, attributes scored."""
    c = np.asarray(contrib, np.float64)
    d = np.asarray(differs, bool)
    if c.shape != d.shape or c.ndim != 2:
        raise ValueError(f"contributions {c.shape} and differences {d.shape} must both be pairs x attributes")
    if keep is not None:
        c, d = c[:, np.asarray(keep, bool)], d[:, np.asarray(keep, bool)]
    a = c.shape[1]
    s = ~d
    down = np.argsort(-c, axis=1, kind="stable")
    up = np.argsort(c, axis=1, kind="stable")
    prec_d = _precision_at_k(down, d)
    prec_s = _precision_at_k(up, s)
    all_match = ~d.any(1)
    share = np.maximum(c[all_match], 0.0)
    share = share / np.maximum(share.sum(1, keepdims=True), 1e-300)
    prec_s[all_match] = (share <= 2.0 / a).mean(1)
    ap_d, ap_s = _average_precision(down, d), _average_precision(up, s)

    def mean(x: np.ndarray) -> float | None:
        x = x[np.isfinite(x)]
        return 100 * float(x.mean()) if len(x) else None

    return {"ex_precision_d": mean(prec_d), "ex_precision_s": mean(prec_s), "ex_map_d": mean(ap_d),
            "ex_map_s": mean(ap_s), "pairs": int(len(c)), "pairs_with_differences": int(d.any(1).sum()),
            "attributes": int(a)}


def difference_rates(positive_ratio: np.ndarray) -> np.ndarray:
    """How often each attribute differs between two identities drawn independently, from the share
    p_a of identities that have it: 2 p_a (1 - p_a). The frequency baseline ranks attributes by it."""
    p = np.asarray(positive_ratio, np.float64)
    return 2.0 * p * (1.0 - p)
