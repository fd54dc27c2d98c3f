"""Evaluate a model on a protocol: embed every test image once, score each test set, average."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from xreid.data.protocol import Protocol
from xreid.evaluation.metrics import RankingMetrics, evaluate_distances, evaluate_ranking
from xreid.evaluation.rerank import average_query_expansion, k_reciprocal_rerank
from xreid.models.embedders import Embedder

METRIC_KEYS = ("R1", "R5", "R10", "R20", "mAP", "mINP")


@dataclass
class ProtocolResult:
    model: str
    protocol: str
    per_set: dict[str, dict[str, float]]
    mean: dict[str, float]
    skipped_images: list[str] = field(default_factory=list)
    embed_seconds: float = 0.0
    images_embedded: int = 0
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": self.model, "protocol": self.protocol, "options": self.options,
                "per_set": self.per_set, "mean": self.mean, "skipped_images": self.skipped_images,
                "images_embedded": self.images_embedded, "embed_seconds": round(self.embed_seconds, 2)}


def score_test_set(qf: np.ndarray, gf: np.ndarray, q_pids, g_pids, q_cams, g_cams,
                   rerank: bool = False, query_expansion: bool = False) -> RankingMetrics:
    """Metrics of one query/gallery split, with optional query expansion and re-ranking."""
    if query_expansion:
        qf, gf = average_query_expansion(qf, gf)
    if rerank:
        return evaluate_distances(k_reciprocal_rerank(qf, gf), q_pids, g_pids, q_cams, g_cams)
    return evaluate_ranking(qf, gf, q_pids, g_pids, q_cams, g_cams)


def evaluate_protocol(embedder: Embedder, protocol: Protocol, rerank: bool = False,
                      query_expansion: bool = False, progress: bool = True, batch_size: int = 64,
                      query_cameras: bool = True) -> ProtocolResult:
    """Embed every test image once, each with its camera (``Embedder.for_camera``), score each test set
    and average. ``query_cameras`` False: the query images are embedded a second time, as crops of
    unknown camera (an analyst's uploaded photo); the galleries keep their cameras."""
    images = protocol.test_images()
    paths = [protocol.image_root / r.path for r in images]
    tic = time.perf_counter()
    res = embedder.embed_paths(paths, batch_size=batch_size, progress=progress, cameras=[r.cam for r in images])
    features = query_features = res.features
    if not query_cameras and embedder.camera_names():
        queries = {r.path for ts in protocol.test_sets for r in ts.query}
        redo = [j for j, i in enumerate(res.kept) if images[i].path in queries]
        query_features = features.copy()  # a query that is also a gallery image elsewhere keeps its camera there
        query_features[redo] = embedder.embed_paths([paths[res.kept[j]] for j in redo], batch_size=batch_size).features
    seconds = time.perf_counter() - tic
    row = {images[i].path: j for j, i in enumerate(res.kept)}
    per_set: dict[str, dict[str, float]] = {}
    for ts in protocol.test_sets:
        q = [r for r in ts.query if r.path in row]
        g = [r for r in ts.gallery if r.path in row]
        if not q or not g:
            raise ValueError(f"test set {ts.name}: no usable query or gallery images")
        m = score_test_set(query_features[[row[r.path] for r in q]], features[[row[r.path] for r in g]],
                           [r.pid for r in q], [r.pid for r in g], [r.cam for r in q], [r.cam for r in g],
                           rerank=rerank, query_expansion=query_expansion)
        per_set[ts.name] = m.summary()
    mean = {k: float(np.mean([s[k] for s in per_set.values()])) for k in METRIC_KEYS}
    options = {"rerank": rerank, "query_expansion": query_expansion, "flip": embedder.flip_average,
               "identity": embedder.identity(), "query_cameras": query_cameras}
    return ProtocolResult(embedder.name, protocol.name, per_set, mean, [str(e) for e in res.skipped],
                          seconds, len(res.kept), options)


def format_result(result: ProtocolResult) -> str:
    """A plain-text table of per-set and mean metrics."""
    lines = [f"{'set':<8}" + "".join(f"{k:>8}" for k in METRIC_KEYS)]
    for name, s in list(result.per_set.items()) + [("mean", result.mean)]:
        lines.append(f"{name:<8}" + "".join(f"{s[k]:8.1f}" for k in METRIC_KEYS))
    return "\n".join(lines)
