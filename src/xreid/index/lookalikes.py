"""Each row's look-alikes: its nearest rows in the case (cosine of the embeddings), and the attribute
codes smoothed over them that a description search ranks by
(``xreid.explain.description_score.lookalike_smoothed``; docs/METHODS.md#search-by-description).

They are computed when a build or add finishes (``IndexWriter.finish``): the new rows search the
whole index, and each earlier row compares its look-alikes with the new rows, so a row added later
also becomes a look-alike of the rows before it (the same as searching everything again). Small indexes search exactly
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
                 block: int = BLOCK, rows: np.ndarray | None = None, among: np.ndarray | None = None,
                 similarity: bool = False):
    """len(rows) x m int32: the ``m`` nearest other rows by cosine (unit ``vectors``) of each of
    ``rows`` (default: all), nearest first, ties by id; -1 where there are fewer usable rows, and
    for rows not ``usable`` (which are never chosen). ``among``: the rows they may be chosen from
    (default all; exact search only). With ``ann`` (an ``AnnIndex`` over the same rows) the
    candidates come from it. ``similarity``: also return the cosines (-inf where -1)."""
    v = np.ascontiguousarray(vectors, np.float32)
    n = len(v)
    ok = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    pool = np.arange(n) if among is None else np.asarray(among, np.int64)
    out = np.full((len(rows), m), -1, np.int32)
    out_sim = np.full((len(rows), m), -np.inf, np.float32)
    if len(rows) and m and len(pool):
        for start in range(0, len(rows), block):
            part = rows[start:start + block]
            if ann is None or among is not None:
                cand = np.broadcast_to(pool, (len(part), len(pool)))
                sim = v[part] @ v[pool].T
                sim[:, ~ok[pool]] = -np.inf
                sim[part[:, None] == pool[None, :]] = -np.inf
            else:
                cand = _ann_candidates(ann, v[part], m + 1)
                sim = np.einsum("bd,bkd->bk", v[part], v[np.maximum(cand, 0)])
                sim[(cand < 0) | (cand == part[:, None]) | ~ok[np.maximum(cand, 0)]] = -np.inf
            take = min(m, sim.shape[1])
            top = np.argpartition(-sim, take - 1, axis=1)[:, :take] if take < sim.shape[1] else np.argsort(-sim, 1)
            top_ids, top_sim = np.take_along_axis(cand, top, 1), np.take_along_axis(sim, top, 1)
            order = np.lexsort((top_ids, -top_sim), axis=1)
            top_ids, top_sim = np.take_along_axis(top_ids, order, 1), np.take_along_axis(top_sim, order, 1)
            found = np.isfinite(top_sim)
            out[start:start + len(part), :take] = np.where(found, top_ids, -1)
            out_sim[start:start + len(part), :take] = np.where(found, top_sim, -np.inf)
    out[~ok[rows]], out_sim[~ok[rows]] = -1, -np.inf
    return (out, out_sim) if similarity else out


def extend_nearest(vectors: np.ndarray, neighbours: np.ndarray, similarity: np.ndarray, usable: np.ndarray | None = None,
                   ann=None) -> tuple[np.ndarray, np.ndarray]:
    """The look-alikes (ids, cosines) of all N rows when those of the first len(``neighbours``) are
    known and the rest are new: the new rows search all rows; the old ones compare their list with
    the new rows only (N_new x N work instead of N x N). Equals ``nearest_rows`` on all rows."""
    n, n0, m = len(vectors), len(neighbours), neighbours.shape[1]
    new = np.arange(n0, n)
    nb_new, sim_new = nearest_rows(vectors, m, usable, ann, rows=new, similarity=True)
    if n0 == 0:
        return nb_new, sim_new
    cand, cand_sim = nearest_rows(vectors, m, usable, rows=np.arange(n0), among=new, similarity=True)
    ids = np.concatenate([neighbours, cand], 1).astype(np.int64)
    sims = np.concatenate([similarity, cand_sim], 1)
    ids = np.where(np.isfinite(sims), ids, np.iinfo(np.int32).max)  # empty places sort last
    order = np.lexsort((ids, -sims), axis=1)[:, :m]
    ids, sims = np.take_along_axis(ids, order, 1), np.take_along_axis(sims, order, 1)
    old = np.where(np.isfinite(sims), ids, -1).astype(np.int32)
    return np.concatenate([old, nb_new]), np.concatenate([sims.astype(np.float32), sim_new])


#: approximate candidates re-ranked exactly per row (recall of the look-alikes: benchmarks/bench_describe.py)
ANN_CANDIDATES = 64


def _ann_candidates(ann, queries: np.ndarray, k: int) -> np.ndarray:
    """Q x C candidate ids (-1 padded) for a batch of unit queries, from the ANN structure."""
    from xreid.index.ann import _faiss

    faiss = _faiss()
    params = faiss.SearchParametersIVF(nprobe=min(ann.nlist, ann.tuned_nprobe))  # what the tuning measured
    return ann.scan(np.ascontiguousarray(queries, np.float32), max(ANN_CANDIDATES, 4 * k), params).astype(np.int64)


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
