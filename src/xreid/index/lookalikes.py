"""Each row's look-alikes: its nearest rows in the case (cosine of the embeddings), and the attribute
codes smoothed over them that a description search ranks by
(``xreid.explain.description_score.lookalike_smoothed``; docs/METHODS.md#search-by-description).

They are computed over the whole index when a build or add finishes (``IndexWriter.finish``), so a
row added later also becomes a look-alike of the rows before it. Small indexes search exactly
(blocks of rows against all rows); an index with an ANN structure asks it for each row's candidates,
in batches, and re-ranks them exactly (as an image search does). Rows of dropped segments are never
a look-alike and keep their own codes.
"""

from __future__ import annotations

import numpy as np

from xreid.explain.description_score import LOOKALIKE_WEIGHT, LOOKALIKES, lookalike_mix

#: rows per block of the exact search (a block x N similarity matrix at a time)
BLOCK = 256


def nearest_rows(vectors: np.ndarray, m: int = LOOKALIKES, usable: np.ndarray | None = None, ann=None,
                 block: int = BLOCK) -> np.ndarray:
    """N x m int32: each row's ``m`` nearest other rows by cosine (unit ``vectors``), nearest first,
    ties by id; -1 where there are fewer usable rows, and for rows not ``usable`` (which are never
    chosen). With ``ann`` (an ``AnnIndex`` over the same rows) the candidates come from it."""
    v = np.ascontiguousarray(vectors, np.float32)
    n = len(v)
    ok = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
    out = np.full((n, m), -1, np.int32)
    if n == 0 or m == 0:
        return out
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        if ann is None:
            sim = v[rows] @ v.T
            sim[:, ~ok] = -np.inf
            sim[np.arange(len(rows)), rows] = -np.inf
            take = min(m, n)
            top_ids = np.argpartition(-sim, take - 1, axis=1)[:, :take] if take < n else np.argsort(-sim, axis=1)
        else:
            cand = _ann_candidates(ann, v[rows], m + 1)
            sim = np.einsum("bd,bkd->bk", v[rows], v[np.maximum(cand, 0)])
            sim[(cand < 0) | (cand == rows[:, None]) | ~ok[np.maximum(cand, 0)]] = -np.inf
            take = min(m, sim.shape[1])
            top = np.argpartition(-sim, take - 1, axis=1)[:, :take] if take < sim.shape[1] else np.argsort(-sim, 1)
            top_ids = np.take_along_axis(cand, top, 1)
            sim = np.take_along_axis(sim, top, 1)
        top_sim = sim if ann is not None else np.take_along_axis(sim, top_ids, 1)
        order = np.lexsort((top_ids, -top_sim), axis=1)
        top_ids, top_sim = np.take_along_axis(top_ids, order, 1), np.take_along_axis(top_sim, order, 1)
        out[rows, :take] = np.where(np.isfinite(top_sim), top_ids, -1)
    out[~ok] = -1
    return out


#: approximate candidates re-ranked exactly per row (recall of the look-alikes: benchmarks/bench_describe.py)
ANN_CANDIDATES = 64


def _ann_candidates(ann, queries: np.ndarray, k: int) -> np.ndarray:
    """Q x C candidate ids (-1 padded) for a batch of unit queries, from the ANN structure."""
    from xreid.index.ann import _faiss

    faiss = _faiss()
    params = faiss.SearchParametersIVF(nprobe=min(ann.nlist, ann.nprobe))
    _, ids = ann.index.search(np.ascontiguousarray(queries, np.float32), max(ANN_CANDIDATES, 4 * k), params=params)
    return ids.astype(np.int64)


def lookalike_codes(codes: np.ndarray, neighbours: np.ndarray, weight: float = LOOKALIKE_WEIGHT,
                    block: int = 65_536) -> np.ndarray:
    """A x N uint8: the index's attribute codes (A x N) smoothed over each row's look-alikes, in
    blocks of rows (a 1M-row index never holds more than a block's probabilities as floats)."""
    from xreid.index.gallery import decode_probabilities, encode_probabilities

    codes = np.asarray(codes)
    nb = np.asarray(neighbours, np.int64)
    out = np.empty_like(codes, dtype=np.uint8)
    for start in range(0, codes.shape[1], block):
        rows = slice(start, min(codes.shape[1], start + block))
        own = decode_probabilities(codes[:, rows].T)
        near = decode_probabilities(np.moveaxis(codes[:, np.maximum(nb[rows], 0)], 0, -1))
        out[:, rows] = encode_probabilities(lookalike_mix(own, near, nb[rows] >= 0, weight)).T
    return out
