"""Explain one query's ranking: distances, attribute matching scores, both distance decompositions,
optional attribute filtering, and a reliability verdict on the query. Returns typed records
(``RankingExplanation``), never text or pictures: ``xreid.rendering`` draws them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from xreid.distance import l2_normalise, rank_gallery
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.formulas import (DEFAULT_CONFIDENCE, attribute_error, confident_attributes,
                                    exact_decomposition, matching_scores, orthonormal_attribute_basis)
from xreid.explain.fusion import Fusion, fused_parts
from xreid.explain.naming import RELIABLE_AT, PairSummary, summarise_pair
from xreid.explain.query_check import QueryCheck

#: A calibrated probability this far from 0.5 (above it, or below 1 minus it) counts as sure.
SURE_AT = 0.8
#: A result this close to the query (cosine distance) is the same picture, not a re-identification.
IDENTICAL_BELOW = 1e-6


def parse_filter(text: str | None, names: list[str]) -> dict[str, bool]:
    """``"personalMale=yes,carryingBackpack=no"`` -> {name: wanted}; unknown names are an error."""
    if not text:
        return {}
    out: dict[str, bool] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"filter item {item!r}: expected name=yes or name=no")
        name, value = (s.strip() for s in item.split("=", 1))
        if name not in names:
            close = [n for n in names if n.lower() == name.lower()]
            hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(names)}"
            raise ValueError(f"filter: unknown attribute {name!r}{hint}")
        if value.lower() not in ("yes", "no", "1", "0", "true", "false"):
            raise ValueError(f"filter item {item!r}: value must be yes or no")
        if name in out:
            raise ValueError(f"filter: attribute {name!r} is named twice")
        out[name] = value.lower() in ("yes", "1", "true")
    return out


def filter_violations(probs: np.ndarray, names: list[str], wanted: dict[str, bool]) -> np.ndarray:
    """Per gallery item, how many filter conditions its predicted attributes break (prob on the wrong side
    of 0.5; docs/METHODS.md#attribute-filtering)."""
    if not wanted:
        return np.zeros(len(probs), int)
    idx = [names.index(n) for n in wanted]
    want = np.array(list(wanted.values()))
    return ((probs[:, idx] >= 0.5) != want).sum(axis=1)


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


def explain_ranking(query_feature: np.ndarray, gallery_features: np.ndarray, gallery_keys: list[str],
                    head: AttributeHead, top_k: int = 10, threshold: float = DEFAULT_CONFIDENCE,
                    gallery_pids: list[str | None] | None = None, query_pid: str | None = None,
                    filter_spec: dict[str, bool] | None = None, filter_mode: str = "rerank",
                    query_key: str = "query", basis: np.ndarray | None = None,
                    gallery_probabilities: np.ndarray | None = None, include_vectors: bool = True,
                    model: str = "", query_check: QueryCheck | None = None,
                    fusion: Fusion | None = None, fusion_probabilities: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> RankingExplanation:
    """Rank ``gallery_features`` for the query and explain the top ``top_k``.

    ``basis`` (the head's orthonormal attribute basis) and ``gallery_probabilities`` may be passed
    precomputed to explain many queries against one gallery quickly. A result is marked a match or
    not only when both its person id and the query's are known. ``query_check`` (image measurements
    of the query crop) feeds the reliability verdict. With a ``fusion`` and ``fusion_probabilities``
    (its attribute classifier's calibrated probabilities of the query, A, and the gallery, G x A), the
    gallery is ranked by the fused distance and each result carries its exact split (``fused``).
    """
    check_options(top_k, threshold)
    if len(gallery_features) == 0:
        raise ValueError("the gallery is empty")
    if filter_mode not in ("rerank", "keep"):
        raise ValueError(f"filter mode must be 'rerank' or 'keep', not {filter_mode!r}")
    head.check_embedding(query_feature[None], "query embedding")
    head.check_embedding(gallery_features, "gallery embeddings")
    q = l2_normalise(np.asarray(query_feature, np.float64))
    by_distance, dist = rank_gallery(query_feature, gallery_features)
    model_dist = dist
    if fusion is not None:
        if fusion_probabilities is None:
            raise ValueError("a fusion needs its attribute probabilities of the query and the gallery")
        f_q, f_g = fusion_probabilities
        dist = fusion.distances(model_dist[None], np.asarray(f_q)[None], np.asarray(f_g))[0]
        by_distance = np.argsort(dist, kind="stable")
    order = by_distance
    names = head.names
    wanted = filter_spec or {}
    probs_all = gallery_probabilities
    if wanted:
        probs_all = head.predict(gallery_features) if probs_all is None else probs_all
        viol = filter_violations(probs_all[order], names, wanted)
        if filter_mode == "keep":
            order, viol = order[viol == 0], viol[viol == 0]
        else:
            resort = np.argsort(viol, kind="stable")
            order, viol = order[resort], viol[resort]
    else:
        viol = np.zeros(len(order), int)
    original_rank = np.empty(len(dist), int)
    original_rank[by_distance] = np.arange(1, len(dist) + 1)
    top = order[:top_k]
    g = l2_normalise(np.asarray(gallery_features)[top].astype(np.float64))  # the top only: no float64 gallery copy
    x_q = head.predict(q[None])[0]
    x_g = probs_all[top] if probs_all is not None else head.predict(g)
    confident = confident_attributes(x_q, threshold)
    scores_raw = matching_scores(x_q, x_g, clip=False)
    scores = np.minimum(scores_raw, 1.0)
    basis = orthonormal_attribute_basis(head.weights) if basis is None else basis
    e32 = attribute_error(q, g, head.weights)
    parts, residual, d_exact = exact_decomposition(q, g, basis)
    c_q, c_g = head.calibrated(q[None])[0], head.calibrated(g)
    usable = head.reliable(RELIABLE_AT)
    results = []
    for i, j in enumerate(top):
        pid = gallery_pids[j] if gallery_pids else None
        results.append(ResultExplanation(
            rank=i + 1, key=gallery_keys[j], distance=float(dist[j]), original_rank=int(original_rank[j]),
            pid=pid, is_match=(pid == query_pid) if (pid is not None and query_pid is not None) else None,
            probabilities=[float(v) for v in x_g[i]],
            matching_scores={n: float(scores[i, a]) for a, n in enumerate(names) if confident[a]},
            matching_scores_raw={n: float(scores_raw[i, a]) for a, n in enumerate(names) if confident[a]},
            attribute_error_eq32=[float(v) for v in e32[i]], exact_parts=[float(v) for v in parts[i]],
            exact_residual=float(residual[i]),
            explained_share=float(parts[i].sum() / d_exact[i]) if d_exact[i] > 1e-12 else 0.0,
            filter_violations=int(viol[i]), identical_to_query=bool(dist[j] < IDENTICAL_BELOW),
            calibrated=[float(v) for v in c_g[i]],
            summary=summarise_pair(list(names), c_q, c_g[i], parts[i], float(d_exact[i]), usable),
            fused=None if fusion is None else _fused_parts(fusion, float(model_dist[j]), f_q, f_g[j])))
    mean_score = float(scores[:, confident].mean()) if confident.any() and len(top) else None
    sure = usable & ((c_q >= SURE_AT) | (c_q <= 1 - SURE_AT))
    measured = head.reliability if head.reliability is not None else np.full(len(names), np.nan)
    reliable, verdict = reliability_verdict(query_check, int(sure.sum()))
    labels = [ConfidentAttribute(n, bool(x_q[a] > 0.5), float(x_q[a])) for a, n in enumerate(names) if confident[a]]
    return RankingExplanation(
        query=query_key, query_pid=query_pid, attribute_names=list(names),
        query_probabilities=[float(v) for v in x_q], confident=labels, confidence_threshold=threshold,
        gallery_size=int(len(gallery_features)), results=results, mean_matching_score=mean_score,
        reliability=verdict, reliable=reliable, filter=wanted, filter_mode=filter_mode,
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
