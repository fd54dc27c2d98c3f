"""Explain one query's ranking (the hits a gallery's search returned): distances, attribute matching
scores, both distance decompositions, the filter's effect, and a reliability verdict on the query. Returns typed records
(``RankingExplanation``), never text or pictures: ``xreid.rendering`` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from xreid.distance import l2_normalise
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.formulas import (DEFAULT_CONFIDENCE, attribute_error, confident_attributes,
                                    exact_decomposition, matching_scores, orthonormal_attribute_basis)
from xreid.explain.fusion import Fusion, fused_parts
from xreid.explain.naming import RELIABLE_AT, PairSummary, summarise_pair
from xreid.explain.query_check import QueryCheck
from xreid.explain.sightings import CropPairs



class RankedHits(Protocol):
    """What an explanation reads of a search's ranked hits (``xreid.index.base.Hits`` has it)."""

    ids: np.ndarray
    keys: list[str]
    distances: np.ndarray
    ranks: np.ndarray
    original_ranks: np.ndarray
    violations: np.ndarray
    model_distances: np.ndarray | None


class GalleryRows(Protocol):
    """What an explanation reads of a gallery (``xreid.index.base.Gallery`` has it)."""

    def vectors_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray: ...

    def probabilities(self, ids: Sequence[int] | np.ndarray) -> np.ndarray: ...

    def metadata(self, i: int) -> dict: ...


class FilterSpec(Protocol):
    """What an explanation records of the search's filter (``xreid.index.filters.Filter`` has it)."""

    attributes: dict  # {name: True / False / minimum probability}
    mode: str

#: A calibrated probability this far from 0.5 (above it, or below 1 minus it) counts as sure.
SURE_AT = 0.8
#: A result this close to the query (cosine distance) is the same picture, not a re-identification.
IDENTICAL_BELOW = 1e-6


@dataclass
class ConfidentAttribute:
    """An attribute the model is sure about for the query: present or absent, with its probability."""

    name: str
    present: bool
    probability: float


def check_options(top_k: int, threshold: float) -> None:
    """Refuse options that would produce a misleading explanation instead of an error."""
    if top_k < 1:
        raise ValueError(f"top-k must be at least 1 (got {top_k})")
    if not 0.0 <= threshold < 0.5:
        raise ValueError(f"confidence threshold must be in [0, 0.5) (got {threshold}): an attribute is "
                         f"confident when its probability is further than this from 0.5")


@dataclass
class FusedParts:
    """A fused distance split exactly (docs/METHODS.md#attribute-fusion): ``model`` (the re-id
    model's 1 - cos) plus one non-negative part per attribute (mixing x weight x squared probability
    difference) add up to the result's distance."""

    model: float
    attributes: dict[str, float]
    mixing: float


@dataclass
class ResultExplanation:
    rank: int
    key: str
    distance: float
    original_rank: int
    pid: str | None
    is_match: bool | None
    probabilities: list[float]
    matching_scores: dict[str, float]  # confident query attributes only, clipped at 1
    matching_scores_raw: dict[str, float]
    attribute_error_eq32: list[float]  # e_a as published, all attributes
    exact_parts: list[float]  # attribute parts of the distance
    exact_residual: float  # the part not explained by attributes
    explained_share: float
    filter_violations: int = 0
    identical_to_query: bool = False  # the same picture as the query (distance ~ 0)
    calibrated: list[float] = field(default_factory=list)  # calibrated attribute probabilities
    summary: PairSummary | None = None  # what differs and what is shared, for the plain-words line
    fused: FusedParts | None = None  # with a fusion: the model's part and each attribute's part of ``distance``
    crops: CropPairs | None = None  # a sighting (or a sighting query): the pair read through its best crops


@dataclass
class RankingExplanation:
    query: str
    query_pid: str | None
    attribute_names: list[str]
    query_probabilities: list[float]
    confident: list[ConfidentAttribute]
    confidence_threshold: float
    gallery_size: int
    results: list[ResultExplanation]
    mean_matching_score: float | None
    reliability: str
    reliable: bool
    filter: dict[str, bool] = field(default_factory=dict)
    filter_mode: str = "rerank"
    weights: list[list[float]] = field(default_factory=list)
    orthonormal_basis: list[list[float]] = field(default_factory=list)
    query_embedding: list[float] = field(default_factory=list)
    result_embeddings: list[list[float]] = field(default_factory=list)
    model: str = ""
    distance: str = "cosine distance of L2-normalised embeddings (1 - cos)"
    query_calibrated: list[float] = field(default_factory=list)  # calibrated probabilities of the query
    attribute_reliability: list[float | None] = field(default_factory=list)  # balanced accuracy on validation
    attribute_reliable: list[bool] = field(default_factory=list)  # may be named in verdicts
    query_check: QueryCheck | None = None  # image measurements of the query crop, when it was checked

    def to_dict(self) -> dict:
        return asdict(self)


def reliability_verdict(check: QueryCheck | None, n_sure: int) -> tuple[bool, str]:
    """Plain words on whether the query can be trusted (docs/METHODS.md#query-reliability): the image
    checks first, then whether the model is sure of any reliable attribute of the query."""
    if check is not None and check.problems:
        return False, ("This query is probably not a usable person crop: " + "; ".join(check.problems)
                       + ". Treat the ranking and its explanation with care.")
    if n_sure == 0:
        return False, ("The model is not sure of any reliable attribute of the query (blurred, occluded, badly "
                       "cropped or unusual image?): the ranking cannot be explained in attributes.")
    return True, "The query looks like a usable person crop."


def explain_ranking(query_feature: np.ndarray, hits: RankedHits, gallery: GalleryRows, head: AttributeHead,
                    threshold: float = DEFAULT_CONFIDENCE, query_pid: str | None = None, query_key: str = "query",
                    basis: np.ndarray | None = None, include_vectors: bool = True, model: str = "",
                    query_check: QueryCheck | None = None, fusion: Fusion | None = None,
                    fusion_probabilities: tuple[np.ndarray, np.ndarray] | None = None,
                    filter: FilterSpec | None = None, pids: Sequence[str | None] | None = None) -> RankingExplanation:
    """Explain ``hits``, the ranked results of ``gallery.search`` (``xreid.index.base``), for the query
    embedding ``query_feature``; nothing is ranked again. Reads the hits' vectors, calibrated
    attribute probabilities and person ids from the gallery (``vectors_of``, ``probabilities``,
    ``metadata``).

    ``basis`` (the head's orthonormal attribute basis) may be passed precomputed to explain many
    queries quickly. A result is marked a match or not only when both its person id and the query's
    are known. ``query_check`` (image measurements of the query crop) feeds the reliability verdict.
    With a fused ranking (``fusion``; ``hits.model_distances`` the model's own distances), each
    result carries its exact split (``fused``); ``fusion_probabilities`` are the fusion's attribute
    probabilities of the query (A) and of the hits (k x A). ``filter``: the search's filter, recorded.
    ``pids``: the hits' person ids, when the caller has read their metadata already.
    """
    if len(gallery) == 0:
        raise ValueError("the gallery is empty")
    head.check_embedding(np.asarray(query_feature)[None], "query embedding")
    ids = np.asarray(hits.ids, np.int64)
    q = l2_normalise(np.asarray(query_feature, np.float64))
    names = head.names
    g = l2_normalise(np.asarray(gallery.vectors_of(ids), np.float64).reshape(len(ids), -1))
    head.check_embedding(g, "gallery embeddings")
    x_q = head.predict(q[None])[0]
    x_g = head.predict(g)
    confident = confident_attributes(x_q, threshold)
    scores_raw = matching_scores(x_q, x_g, clip=False)
    scores = np.minimum(scores_raw, 1.0)
    basis = orthonormal_attribute_basis(head.weights) if basis is None else basis
    e32 = attribute_error(q, g, head.weights)
    parts, residual, d_exact = exact_decomposition(q, g, basis)
    stored = gallery.probabilities(ids) if len(ids) else None
    c_q, c_g = head.calibrated(q[None])[0], (head.calibrated(g) if stored is None else np.asarray(stored))
    usable = head.reliable(RELIABLE_AT)
    if fusion is not None:
        if fusion_probabilities is None or hits.model_distances is None:
            raise ValueError("a fusion needs its attribute probabilities of the query and the hits, and the "
                             "hits' model distances")
        f_q, f_g = fusion_probabilities
    results = []
    for i, j in enumerate(ids):
        pid = pids[i] if pids is not None else gallery.metadata(int(j)).get("pid")
        dist = float(hits.distances[i])
        results.append(ResultExplanation(
            rank=int(hits.ranks[i]), key=hits.keys[i], distance=dist, original_rank=int(hits.original_ranks[i]),
            pid=pid, is_match=(pid == query_pid) if (pid is not None and query_pid is not None) else None,
            probabilities=[float(v) for v in x_g[i]],
            matching_scores={n: float(scores[i, a]) for a, n in enumerate(names) if confident[a]},
            matching_scores_raw={n: float(scores_raw[i, a]) for a, n in enumerate(names) if confident[a]},
            attribute_error_eq32=[float(v) for v in e32[i]], exact_parts=[float(v) for v in parts[i]],
            exact_residual=float(residual[i]),
            explained_share=float(parts[i].sum() / d_exact[i]) if d_exact[i] > 1e-12 else 0.0,
            filter_violations=int(hits.violations[i]), identical_to_query=bool(dist < IDENTICAL_BELOW),
            calibrated=[float(v) for v in c_g[i]],
            summary=summarise_pair(list(names), c_q, c_g[i], parts[i], float(d_exact[i]), usable),
            fused=None if fusion is None else _fused_parts(fusion, float(hits.model_distances[i]), f_q,
                                                           np.asarray(f_g)[i])))
    mean_score = float(scores[:, confident].mean()) if confident.any() and len(ids) else None
    sure = usable & ((c_q >= SURE_AT) | (c_q <= 1 - SURE_AT))
    measured = head.reliability if head.reliability is not None else np.full(len(names), np.nan)
    reliable, verdict = reliability_verdict(query_check, int(sure.sum()))
    labels = [ConfidentAttribute(n, bool(x_q[a] > 0.5), float(x_q[a])) for a, n in enumerate(names) if confident[a]]
    return RankingExplanation(
        query=query_key, query_pid=query_pid, attribute_names=list(names),
        query_probabilities=[float(v) for v in x_q], confident=labels, confidence_threshold=threshold,
        gallery_size=int(getattr(hits, "size", 0) or len(gallery)), results=results, mean_matching_score=mean_score,
        reliability=verdict, reliable=reliable, filter=dict(filter.attributes) if filter is not None else {},
        filter_mode=filter.mode if filter is not None else "rerank",
        weights=head.weights.tolist() if include_vectors else [],
        orthonormal_basis=basis.tolist() if include_vectors else [],
        query_embedding=q.tolist() if include_vectors else [],
        result_embeddings=g.tolist() if include_vectors else [], model=model,
        query_calibrated=[float(v) for v in c_q],
        attribute_reliability=[None if np.isnan(v) else float(v) for v in measured],
        attribute_reliable=[bool(v) for v in usable], query_check=query_check,
        distance=RankingExplanation.distance if fusion is None else
        f"fused: 1 - cos of the model + {fusion.mixing:g} x weighted squared attribute probability differences")


def _fused_parts(fusion: Fusion, d_model: float, p_q: np.ndarray, p_g: np.ndarray) -> FusedParts:
    model, parts = fused_parts(d_model, p_q, p_g, fusion.weights, fusion.mixing)
    return FusedParts(model, {n: float(v) for n, v in zip(fusion.names, parts) if v > 0}, fusion.mixing)
