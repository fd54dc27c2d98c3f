"""A gallery held in memory (``Gallery`` of ``xreid.index.base``): the embedded folder, CSV list,
``.npz`` or protocol test set of ``xreid explain``. Searches are exact (``xreid.distance.rank_gallery``:
the ranking ``xreid eval`` scores); filters read the rows' metadata and attribute probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xreid.distance import rank_gallery
from xreid.index.base import Gallery, Hits, filtered_order
from xreid.index.filters import Filter, _as_list, attribute_violations
from xreid.index.metadata import CAMERA, PID, TIME, format_time, parse_time


class MemoryGallery(Gallery):
    """Rows given as arrays: ``keys`` (paths relative to the data root), ``vectors`` (N x D, as the
    model gave them), ``paths`` (the image files; default: the keys), ``pids`` (None = unknown),
    ``fields`` (per row, string fields such as ``camera``), ``times`` (seconds, NaN = unknown) and
    the attribute head whose probabilities the filters and explanations read (calibrated where it
    has a calibration, raw otherwise), computed once on first use unless ``probabilities`` are given.
    ``skipped`` lists the files that could not be embedded."""

    def __init__(self, keys: Sequence[str], vectors: np.ndarray, paths: Sequence[Path | str] | None = None,
                 pids: Sequence[str | None] | None = None, head=None, probabilities: np.ndarray | None = None,
                 fields: Sequence[dict[str, str]] | None = None, times: Sequence[float] | None = None,
                 skipped: Sequence[str] = ()):
        super().__init__()
        n = len(keys)
        self.keys = [str(k) for k in keys]
        self.vectors = np.asarray(vectors).reshape(n, -1) if n else np.zeros((0, 0), np.float32)
        self.paths = [Path(p) for p in (paths if paths is not None else keys)]
        self.pids = list(pids) if pids is not None else [None] * n
        self.fields = [dict(f) for f in fields] if fields is not None else [{} for _ in range(n)]
        self.times = np.full(n, np.nan) if times is None else np.asarray(times, np.float64)
        self.head = head
        self.attribute_names = list(head.names) if head is not None else []
        self._probabilities = None if probabilities is None else np.asarray(probabilities)
        self.skipped = list(skipped)
        for what, value in (("paths", self.paths), ("pids", self.pids), ("fields", self.fields), ("times", self.times)):
            if len(value) != n:
                raise ValueError(f"{n} gallery keys but {len(value)} {what}")

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, rows: Sequence[int] | np.ndarray, skipped: Sequence[str] = ()) -> "MemoryGallery":
        """The gallery of ``rows`` only (``skipped`` added to its list of unusable files)."""
        rows = [int(i) for i in rows]
        probs = None if self._probabilities is None else self._probabilities[rows]
        return MemoryGallery([self.keys[i] for i in rows], self.vectors[rows], [self.paths[i] for i in rows],
                             [self.pids[i] for i in rows], self.head, probs, [self.fields[i] for i in rows],
                             self.times[rows], self.skipped + list(skipped))

    # -- the interface --

    def vectors_of(self, ids) -> np.ndarray:
        return self.vectors[np.asarray(ids, np.int64)]

    def all_probabilities(self) -> np.ndarray | None:
        """Every row's attribute probabilities (computed from the head once)."""
        if self._probabilities is None and self.head is not None and len(self):
            self._probabilities = self.head.calibrated(self.vectors)
        return self._probabilities

    def probabilities(self, ids) -> np.ndarray | None:
        ids = np.asarray(ids, np.int64)
        if self._probabilities is not None:
            return self._probabilities[ids]
        return None if self.head is None else self.head.calibrated(self.vectors[ids])

    def metadata(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} not in the gallery (0..{len(self) - 1})")
        return {"id": i, "path": self.keys[i], TIME: format_time(float(self.times[i])), PID: self.pids[i],
                CAMERA: self.fields[i].get(CAMERA) or None,
                **{k: v for k, v in self.fields[i].items() if k != CAMERA and v}}

    def key(self, i: int) -> str:
        return self.keys[i]

    def image_path(self, i: int) -> Path:
        return self.paths[i]

    @property
    def field_names(self) -> list[str]:
        return sorted({PID, CAMERA} | {k for f in self.fields for k in f})

    def search(self, query: np.ndarray, k: int = 10, where: Filter | None = None) -> Hits:
        if len(self) == 0:
            raise ValueError("the gallery is empty")
        order, dist = rank_gallery(query, self.vectors)
        return self.rank(dist, k, where, order=order)

    def rank(self, distances: np.ndarray, k: int = 10, where: Filter | None = None,
             model_distances: np.ndarray | None = None, order: np.ndarray | None = None) -> Hits:
        """The top ``k`` rows by ``distances`` (one per row; ties keep row order) that ``where``
        keeps: what ``search`` does with the cosine distances, and a fused ranking with fused ones
        (``model_distances``: the model's own, kept with each hit)."""
        if k < 1:
            raise ValueError(f"top-k must be at least 1 (got {k})")
        by_distance = np.argsort(distances, kind="stable") if order is None else order
        keep, viol = self._mask(where), None
        if where is not None and where.attributes:
            if self.all_probabilities() is None:
                raise ValueError("an attribute filter needs the gallery's attribute probabilities (an attribute head)")
            viol = attribute_violations(self.all_probabilities(), self.attribute_names, where.attributes)
        order, viol = filtered_order(by_distance, keep, viol, where.mode if where is not None else "keep")
        original = np.empty(len(distances), np.int64)
        original[by_distance] = np.arange(1, len(distances) + 1)
        top = order[:k]
        return Hits(top, [self.keys[i] for i in top], np.asarray(distances)[top], np.arange(1, len(top) + 1),
                    original[top], viol[:k], None if model_distances is None else np.asarray(model_distances)[top],
                    "exact", len(order), len(self))

    def _mask(self, where: Filter | None) -> np.ndarray | None:
        """Rows that meet ``where``'s camera, time and field conditions (None: no such condition)."""
        if where is None or (where.camera is None and where.after is None and where.before is None
                             and not where.fields):
            return None
        m = np.ones(len(self), bool)
        if where.camera is not None:
            wanted = {str(c) for c in _as_list(where.camera)}
            cams = [f.get(CAMERA, "") for f in self.fields]
            m &= np.array([c in wanted or c.rsplit("/", 1)[-1] in wanted for c in cams], bool)
        if where.after is not None:
            m &= self.times >= parse_time(where.after)
        if where.before is not None:
            m &= self.times < parse_time(where.before)
        for name, values in where.fields.items():
            if name not in self.field_names:
                raise ValueError(f"filter: unknown field {name!r}; this gallery has: {', '.join(self.field_names)}")
            wanted = {str(v) for v in _as_list(values)}
            col = [self.pids[i] if name == PID else self.fields[i].get(name) for i in range(len(self))]
            m &= np.array([v is not None and str(v) in wanted for v in col], bool)
        return m
