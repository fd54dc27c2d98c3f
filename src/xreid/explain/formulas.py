"""Every explanation formula of docs/METHODS.md, as pure functions on numpy arrays.

Notation: f_q, f_g embeddings (N), x_q, x_g attribute probabilities (A), W the N x A weights of
the bias-free attribute layer. xreid compares embeddings by the cosine distance of
``xreid.distance`` (d = 1 - cos(f_q, f_g) = ||f_q - f_g||^2 / 2 for unit vectors), so the
attribute layer also reads L2-normalised embeddings and every decomposition below splits exactly
that d. Each function names the section of docs/METHODS.md it implements.
"""

from __future__ import annotations

import numpy as np

from xreid.distance import pair_distance

#: Default confidence threshold t_a of the matching scores (docs/METHODS.md#matching-scores): an
#: attribute is "confident" when its probability is below 0.2 or above 0.8.
DEFAULT_CONFIDENCE = 0.3


def class_balanced_weights(labels: np.ndarray, positive_ratio: np.ndarray, scheme: str = "inverse") -> np.ndarray:
    """Per-sample, per-attribute BCE weights against class imbalance (p_a = positive ratio of attribute a).

    ``"inverse"`` (default): positives 1 / (2 p_a), negatives 1 / (2 (1 - p_a)), so both classes weigh
    the same in total; this optimises label-based mA, (TPR + TNR) / 2. ``"exp"``: positives
    exp(1 - p_a), negatives exp(p_a) (the milder correction of the method's description); "inverse"
    gave the higher mA (docs/RESULTS.md#attribute-recognition).
    """
    p = np.clip(np.asarray(positive_ratio, np.float64), 1e-3, 1 - 1e-3)
    pos = np.asarray(labels, bool)
    if scheme == "inverse":
        return np.where(pos, 0.5 / p, 0.5 / (1.0 - p))
    if scheme == "exp":
        return np.where(pos, np.exp(1.0 - p), np.exp(p))
    raise ValueError(f"unknown class-balancing scheme {scheme!r}; choose 'inverse' or 'exp'")


def confident_attributes(x_q: np.ndarray, threshold: float = DEFAULT_CONFIDENCE) -> np.ndarray:
    """Matching-score selection (docs/METHODS.md#matching-scores): attributes the classifier is sure about for the query, |x_q,a - 0.5| > t_a."""
    return np.abs(np.asarray(x_q) - 0.5) > threshold


def matching_scores(x_q: np.ndarray, x_g: np.ndarray, clip: bool = True) -> np.ndarray:
    """Matching scores (docs/METHODS.md#matching-scores): s_a = (1 - |x_q,a - x_g,a|) / (0.5 + |x_q,a - 0.5|). x_g may be G x A.

    Unclipped, s_a exceeds 1 when the gallery image is less extreme than the query in the same
    direction (x_g = x_q gives 1 / (0.5 + |x_q - 0.5|)); xreid clips at 1 (100 %) by default
    because such a gallery image agrees with the query on that attribute.
    """
    x_q, x_g = np.asarray(x_q, np.float64), np.asarray(x_g, np.float64)
    s = (1.0 - np.abs(x_q - x_g)) / (0.5 + np.abs(x_q - 0.5))
    return np.minimum(s, 1.0) if clip else s


def attribute_error(f_q: np.ndarray, f_g: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Attribute error as published (docs/METHODS.md#distance-decomposition): e_a = sum_n (f_q,n - f_g,n)^2 * w_n,a. f_g may be G x N.

    The weights may be negative, so e_a may be negative, and sum_a e_a is not the distance.
    """
    return ((np.asarray(f_g) - np.asarray(f_q)) ** 2) @ np.asarray(weights)


def orthonormal_attribute_basis(weights: np.ndarray, rcond: float = 1e-6) -> np.ndarray:
    """Symmetric (Loewdin) orthonormalisation of W's columns: U = W (W^T W)^(-1/2).

    U spans the same subspace as W, and among all orthonormal bases of it is the one closest to W
    (column by column), so U's column a still stands for attribute a, with no attribute ordering.
    Directions with eigenvalue below ``rcond`` x the largest (linearly dependent weights) are dropped.
    """
    w = np.asarray(weights, np.float64)
    evals, evecs = np.linalg.eigh(w.T @ w)
    keep = evals > rcond * max(evals.max(), 1e-300)
    inv_sqrt = (evecs[:, keep] / np.sqrt(evals[keep])) @ evecs[:, keep].T
    return w @ inv_sqrt


def exact_decomposition(f_q: np.ndarray, f_g: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the ranking distance d = ||f_q - f_g||^2 / 2 (unit vectors) into attribute parts + residual
    (docs/METHODS.md#distance-decomposition).

    With U the orthonormal attribute basis (``orthonormal_attribute_basis(W)``), the difference
    D = f_q - f_g splits into its projection on span(W) and the rest; by Pythagoras
        d = sum_a (u_a . D)^2 / 2  +  ||D - U U^T D||^2 / 2,
    every part non-negative. Returns (parts: ... x A, residual: ..., d: ...); parts.sum(-1) +
    residual equals d up to floating-point rounding. The explained share is parts.sum(-1) / d.
    """
    diff = np.asarray(f_q, np.float64) - np.asarray(f_g, np.float64)
    coords = diff @ basis
    parts = 0.5 * coords ** 2
    d = pair_distance(f_q, f_g)
    residual = np.maximum(d - parts.sum(-1), 0.0)
    return parts, residual, d


def dims_per_attribute(weights: np.ndarray) -> np.ndarray:
    """Embedding analysis (docs/METHODS.md#embedding-analysis): for every embedding dim, the attribute with the largest weight; count per attribute."""
    w = np.asarray(weights)
    return np.bincount(np.argmax(w, axis=1), minlength=w.shape[1])


def extreme_attributes(weights: np.ndarray, dim: int, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Embedding analysis (docs/METHODS.md#embedding-analysis): indices of the k attributes with the highest and the k with the lowest weight for ``dim``."""
    row = np.asarray(weights)[dim]
    order = np.argsort(row)
    return order[::-1][:k], order[:k]
