"""Sightings from tracks: which crops of a track to keep, and which broken tracks are one person
(docs/METHODS.md#sightings). Pure computation on boxes and embeddings; no I/O.

Crop choice. Each detection of a track gets a quality in [0, 1]:

    quality = confidence * min(1, height / REF_HEIGHT) * (1 - occluded) * border * check

where ``occluded`` is the share of the box covered by boxes nearer the camera (their bottom edge
lower in the frame; overlaps summed, capped at 1), ``border`` is 0.5 for a box touching the frame
edge (a person cut by it) else 1, and ``check`` is 0.5 when the query check
(``xreid.explain.query_check``) finds the crop blurred, uniform or noisy, else 1. A track keeps its
``k`` best crops at least ``MIN_CROP_GAP`` frames apart (near-identical neighbours add nothing).

Linking. ByteTrack loses a person behind an occluder or out of the frame and starts a new track
when they reappear. Track ``b`` may continue track ``a`` when ``b`` starts after ``a`` ends, within
``max_gap`` seconds, their mean embeddings (of the kept crops, L2-normalised) have cosine similarity
of at least ``min_similarity``, and ``b``'s first box lies within ``speed * gap + 1`` box heights of
``a``'s last box (people walk at about ``speed`` box heights per second); ``b`` may start up to
``max_overlap`` seconds before ``a`` ends (the frames both hold then go to ``b``). A person who left the
frame and came back (``a`` ends at the edge, ``b`` starts at the edge) needs no motion agreement but
``min_similarity_reentry``. Pairs are joined greedily, most similar first, each track having at
most one predecessor and one successor.

Explaining a pair through the crops. A sighting's embedding is the mean of its best crops', so the
ranking's distance ``D`` of two sightings is not the distance of any two pictures. "Why?" reads
every best crop of both sides: ``crop_distances`` gives the distance of each query crop to each
result crop, and ``representative_pair`` picks the pair whose own distance is nearest ``D``; the
maps and pictures are drawn on that pair, so what the analyst sees stands for the number the
ranking used (the key crop, the best-quality one, may be an outlier). When the query side is fixed
(one query picture for the whole ranking), only the result crop is chosen; a query sighting shows
its most typical crop (``typical_view``: nearest its embedding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: crops this tall (pixels) or taller get the full size term
REF_HEIGHT = 128.0
#: two kept crops of one track are at least this many frames apart
MIN_CROP_GAP = 5
#: a box within this many pixels of the frame edge touches it
BORDER_MARGIN = 4.0


def occluded_fraction(boxes: np.ndarray) -> np.ndarray:
    """For each ``x0, y0, x1, y1`` box of one frame, the share of its area covered by the boxes in
    front of it (bottom edge lower in the image), overlaps summed and capped at 1."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)[:, :4]
    if len(b) < 2:
        return np.zeros(len(b))
    w = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    in_front = b[None, :, 3] > b[:, None, 3]
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    return np.minimum(1.0, (inter * in_front).sum(axis=1) / area)


def touches_border(box: np.ndarray, width: int, height: int, margin: float = BORDER_MARGIN) -> bool:
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    return x0 <= margin or y0 <= margin or x1 >= width - margin or y1 >= height - margin


def crop_quality(confidence: float, box_height: float, occluded: float, at_border: bool, usable: bool) -> float:
    """The quality of one detection as a crop to keep (formula in the module docstring)."""
    return float(confidence * min(1.0, box_height / REF_HEIGHT) * (1.0 - occluded)
                 * (0.5 if at_border else 1.0) * (1.0 if usable else 0.5))


def choose_crops(frames: np.ndarray, quality: np.ndarray, k: int, min_gap: int = MIN_CROP_GAP) -> list[int]:
    """Indices of up to ``k`` entries of highest quality, no two closer than ``min_gap`` frames
    (greedy, best first; ties broken by earlier frame), in order of quality."""
    order = np.lexsort((np.asarray(frames), -np.asarray(quality, np.float64)))
    chosen: list[int] = []
    for i in order:
        if all(abs(int(frames[i]) - int(frames[j])) >= min_gap for j in chosen):
            chosen.append(int(i))
            if len(chosen) == k:
                break
    return chosen


def mean_embedding(vectors: np.ndarray) -> np.ndarray:
    """The sighting embedding: mean of the L2-normalised rows (itself not normalised)."""
    v = np.asarray(vectors, np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v.mean(axis=0).astype(np.float32)


@dataclass(frozen=True)
class LinkParams:
    """Thresholds of the linking pass (chosen on frames 1-400 of PETS09-S2L1, docs/RESULTS.md#footage)."""

    max_gap: float = 5.0  # seconds between a's last and b's first frame
    min_similarity: float = 0.8  # cosine of the tracks' mean embeddings, for a gap inside the frame (bundled model)
    min_similarity_reentry: float = 0.85  # ... for a person who left the frame and came back
    speed: float = 2.0  # box heights per second a person may move during the gap
    max_overlap: float = 1.0  # seconds b may start before a ends (a split rarely falls on the exact frame)


@dataclass
class TrackEnds:
    """What linking needs of one track: first / last frame and box, and its mean embedding."""

    first: int
    last: int
    first_box: np.ndarray
    last_box: np.ndarray
    embedding: np.ndarray
    first_at_border: bool = False
    last_at_border: bool = False


def link_score(a: TrackEnds, b: TrackEnds, fps: float, p: LinkParams) -> float | None:
    """Cosine similarity of ``a`` and ``b`` when ``b`` may continue ``a`` under ``p``, else None."""
    if b.first <= a.first or b.last <= a.last:
        return None
    if b.first <= a.last and (a.last - b.first + 1) / fps > p.max_overlap:
        return None
    gap = max(0.0, (b.first - a.last) / fps)
    if gap > p.max_gap:
        return None
    ea, eb = a.embedding / max(np.linalg.norm(a.embedding), 1e-12), b.embedding / max(np.linalg.norm(b.embedding), 1e-12)
    sim = float(ea @ eb)
    reentry = a.last_at_border and b.first_at_border
    ca = np.array([(a.last_box[0] + a.last_box[2]) / 2, (a.last_box[1] + a.last_box[3]) / 2])
    cb = np.array([(b.first_box[0] + b.first_box[2]) / 2, (b.first_box[1] + b.first_box[3]) / 2])
    height = max(float(a.last_box[3] - a.last_box[1]), float(b.first_box[3] - b.first_box[1]), 1.0)
    near = np.linalg.norm(cb - ca) / height <= p.speed * gap + 1.0
    if near and sim >= p.min_similarity:
        return sim
    if reentry and sim >= p.min_similarity_reentry:
        return sim
    return None


def link_tracks(tracks: list[TrackEnds], fps: float, p: LinkParams = LinkParams()) -> list[int]:
    """Group label per track (tracks joined by linking share one, the smallest index in the group)."""
    pairs = []
    for i, a in enumerate(tracks):
        for j, b in enumerate(tracks):
            if i != j:
                s = link_score(a, b, fps, p)
                if s is not None:
                    pairs.append((s, i, j))
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    succ: dict[int, int] = {}
    pred: dict[int, int] = {}
    for _, i, j in pairs:
        if i in succ or j in pred:
            continue
        # a chain's last track must end before the next one starts: joining the chain ending at i to
        # the one starting at j keeps time order because b starts after a ends; cycles cannot form.
        succ[i], pred[j] = j, i
    label = list(range(len(tracks)))
    for i in range(len(tracks)):
        if i not in pred:
            j = i
            while j in succ:
                j = succ[j]
                label[j] = i
    return label


def split_points(vectors: np.ndarray, window: int, min_similarity: float, min_piece: int) -> list[int]:
    """Where one track holds two people (the tracker swapped them at a crossing): sample indices at
    which a new piece starts. ``vectors`` are the track's sampled embeddings in time order. At each
    candidate index i (pieces at least ``min_piece`` samples long) the similarity is the cosine of
    the means of the ``window`` normalised samples before and after i; the lowest one below
    ``min_similarity`` is a split, and each side is searched again."""
    v = np.asarray(vectors, np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def search(lo: int, hi: int) -> list[int]:
        best, where = min_similarity, None
        for i in range(lo + min_piece, hi - min_piece + 1):
            a = v[max(lo, i - window):i].mean(axis=0)
            b = v[i:min(hi, i + window)].mean(axis=0)
            sim = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
            if sim < best:
                best, where = sim, i
        return [] if where is None else search(lo, where) + [where] + search(where, hi)

    return search(0, len(v))


@dataclass
class CropPairs:
    """A pair explained through its crops: the names of the query's and the result's views (crop
    files; one view for a single image), the distance (1 - cos) of every query view to every result
    view, the pair ``shown`` (query view, result view) and the distance it stands for (the one the
    ranking used, of the sightings' mean embeddings)."""

    query: list[str]
    result: list[str]
    distances: list[list[float]]
    shown: tuple[int, int]
    distance: float
    skipped: list[str] = field(default_factory=list)  # crop files that could not be read

    @property
    def shown_distance(self) -> float:
        return self.distances[self.shown[0]][self.shown[1]]


def crop_distances(query: np.ndarray, result: np.ndarray) -> np.ndarray:
    """1 - cos of each row of ``query`` (n x D) with each row of ``result`` (m x D): n x m."""
    q = np.asarray(query, np.float64).reshape(len(query), -1)
    r = np.asarray(result, np.float64).reshape(len(result), -1)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    return 1.0 - q @ r.T


def representative_pair(distances: np.ndarray, target: float, query_view: int | None = None) -> tuple[int, int]:
    """The (query view, result view) whose distance is nearest ``target``; ties go to the better
    crops (views are ordered best first: smallest i + j, then smallest i). ``query_view`` fixes the
    query side."""
    d = np.asarray(distances, np.float64)
    rows = range(d.shape[0]) if query_view is None else [query_view]
    best = min(((round(abs(d[i, j] - target), 9), i + j, i, j) for i in rows for j in range(d.shape[1])))
    return best[2], best[3]


def typical_view(vectors: np.ndarray, centre: np.ndarray) -> int:
    """The view (row of ``vectors``) nearest ``centre`` in cosine; the first of equals."""
    return int(np.argmin(crop_distances(np.asarray(centre)[None], vectors)[0].round(12)))
