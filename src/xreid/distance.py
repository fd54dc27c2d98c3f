"""The one definition of how xreid compares embeddings (docs/METHODS.md#distance-and-normalisation).

Embeddings are L2-normalised and compared by the cosine distance d = 1 - cos(f_q, f_g), which for
unit vectors equals ||f_q - f_g||^2 / 2. Evaluation, explanation, visual maps, training losses,
export checks and benchmarks all call these functions, so a ranking is the same wherever it is made.
Each function takes numpy arrays or torch tensors and returns the same kind.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

EPS = 1e-12
Array = TypeVar("Array")


def l2_normalise(x: Array, axis: int = -1) -> Array:
    """``x`` scaled to unit length along ``axis`` (zero vectors stay zero)."""
    if isinstance(x, np.ndarray) or np.isscalar(x) or isinstance(x, (list, tuple)):
        x = np.asarray(x)
        return x / np.linalg.norm(x, axis=axis, keepdims=True).clip(EPS)
    import torch.nn.functional as F

    return F.normalize(x, dim=axis, eps=EPS)


def row_norms(x: np.ndarray) -> np.ndarray:
    """The length of each row (last axis) of ``x``, clipped at EPS, without a squared or normalised
    copy of it: what lets a large gallery be compared without normalising it first."""
    return np.sqrt(np.einsum("...d,...d->...", x, x)).clip(EPS)


#: a single query against at most this many rows is scored by numpy's own loop, not the BLAS
#: (``_dot_rows``)
OWN_LOOP_ROWS = 16_384


def _dot_rows(q: Array, g: Array) -> Array:
    """``q @ g.T``. One query vector against up to ``OWN_LOOP_ROWS`` numpy rows (a search's re-rank of
    its candidates, a small gallery) is summed by ``einsum``'s own loop on the calling thread instead of
    the BLAS: the BLAS wakes its thread pool for a product this small, whose threads then spin on the
    cores, and two threads calling it at once (a sharded search's shard threads, a server's concurrent
    searches) wait on each other: 0.14 ms a product of 3,200 x 256 alone, 0.58 ms each from two threads
    at once. With ``xreid.index.ann.one_thread_per_scan``, a search of 4 shards of 1,000,000 rows that
    re-ranks 3,200 candidates a shard went from 19.2 to 9.8 ms (``benchmarks/bench_code_size.py``,
    docs/RESULTS.md, Sharded index and Ray). Larger products keep the BLAS's threads."""
    if (isinstance(q, np.ndarray) and isinstance(g, np.ndarray) and q.ndim == 1 and g.ndim == 2
            and len(g) <= OWN_LOOP_ROWS):
        return np.einsum("nd,d->n", g, q)
    return q @ g.T


def cosine_similarity(q: Array, g: Array, normalised: bool = False) -> Array:
    """Cosine similarity between every row of ``q`` (... x D or D) and every row of ``g`` (G x D).
    ``normalised=True`` says both are unit rows already (a large gallery normalised once)."""
    if normalised:
        return _dot_rows(q, g)
    if isinstance(g, np.ndarray) and g.ndim == 2:  # divide by the row norms: no normalised copy of a large gallery
        return _dot_rows(l2_normalise(np.asarray(q)), g) / row_norms(g)
    return l2_normalise(q) @ l2_normalise(g).T


def cosine_distance(q: Array, g: Array, normalised: bool = False) -> Array:
    """The ranking distance, 1 - cosine similarity, between rows of ``q`` and rows of ``g`` (inputs
    need not be normalised unless ``normalised``). For a single query vector returns a length-G vector."""
    return 1.0 - cosine_similarity(q, g, normalised)


def paired_cosine(a: Array, b: Array) -> Array:
    """Cosine similarity of matched rows: row i of ``a`` with row i of ``b``."""
    return (l2_normalise(a) * l2_normalise(b)).sum(-1)


def pair_distance(f_q: np.ndarray, f_g: np.ndarray) -> np.ndarray:
    """d = ||f_q - f_g||^2 / 2 on unit vectors, row by row (= ``cosine_distance`` of matched pairs).

    The form the exact decomposition splits (docs/METHODS.md#distance-decomposition)."""
    return 0.5 * np.sum((np.asarray(f_g) - np.asarray(f_q)) ** 2, axis=-1)


def rank_gallery(query: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, distances): gallery indices nearest first (ties keep gallery order) and every
    gallery item's distance to the query."""
    dist = cosine_distance(np.asarray(query, np.float32), np.asarray(gallery, np.float32))
    return np.argsort(dist, kind="stable"), dist
