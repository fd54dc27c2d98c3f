"""Multi-object tracking scores (CLEAR-MOT MOTA, identity IDF1) of tracks against a MOTChallenge
ground truth, with the ``motmetrics`` package (IoU >= 0.5 to match, boxes ``x, y, w, h`` in pixels).

Both files use the MOTChallenge text format ``frame,id,x,y,w,h,conf|flag,...`` (frames from 1); in the
ground truth a ``flag`` of 0 marks a box to ignore, which is dropped here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_mot(path: str | Path, max_frame: int | None = None) -> np.ndarray:
    """Rows ``frame, id, x, y, w, h, conf`` of a MOTChallenge file (for a ground truth the 7th
    column is the flag, 0 = ignore), frames up to ``max_frame``."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, 7))
    rows = rows[:, :7]
    if max_frame is not None:
        rows = rows[rows[:, 0] <= max_frame]
    return rows


def _motmetrics():
    if not hasattr(np, "asfarray"):  # motmetrics 1.4 still calls it; NumPy 2 removed it
        np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]
    import motmetrics

    return motmetrics


def drop_ignored(g: np.ndarray, t: np.ndarray, mm) -> tuple[np.ndarray, np.ndarray]:
    """One frame: the ground-truth rows to score (flag != 0) and the track rows left once those
    matching an ignored ground-truth box (flag 0; IoU >= 0.5, one-to-one over all ground-truth boxes)
    are removed, as the MOTChallenge evaluation does."""
    ignored = g[:, 6] == 0
    if not ignored.any() or not len(t):
        return g[~ignored], t
    from scipy.optimize import linear_sum_assignment

    dist = np.nan_to_num(mm.distances.iou_matrix(g[:, 2:6], t[:, 2:6], max_iou=0.5), nan=2.0)
    rows, cols = linear_sum_assignment(dist)
    drop = [c for r, c in zip(rows, cols) if dist[r, c] <= 0.5 and ignored[r]]
    return g[~ignored], np.delete(t, drop, axis=0)


def mot_scores(gt: np.ndarray, tracks: np.ndarray, frames: range | None = None) -> dict[str, float]:
    """MOTA, IDF1 (percent), ID switches, false positives, misses, fragmentations of ``tracks``
    against ``gt`` (both ``frame, id, x, y, w, h, flag|conf`` rows; ground-truth flag 0 = ignore)
    over ``frames`` (default: the ground truth's frames)."""
    mm = _motmetrics()
    acc = mm.MOTAccumulator(auto_id=False)
    frames = frames if frames is not None else range(int(gt[:, 0].min()), int(gt[:, 0].max()) + 1)
    for f in frames:
        g, t = drop_ignored(gt[gt[:, 0] == f], tracks[tracks[:, 0] == f], mm)
        dist = mm.distances.iou_matrix(g[:, 2:6], t[:, 2:6], max_iou=0.5)
        acc.update(g[:, 1].astype(int).tolist(), t[:, 1].astype(int).tolist(), dist, frameid=f)
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches", "num_false_positives",
                                                         "num_misses", "num_fragmentations", "precision", "recall"],
                                          name="x")
    row = summary.iloc[0]
    return {"MOTA": 100 * float(row["mota"]), "IDF1": 100 * float(row["idf1"]), "IDsw": int(row["num_switches"]),
            "FP": int(row["num_false_positives"]), "FN": int(row["num_misses"]),
            "Frag": int(row["num_fragmentations"]), "precision": 100 * float(row["precision"]),
            "recall": 100 * float(row["recall"])}
