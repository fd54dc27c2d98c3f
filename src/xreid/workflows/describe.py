"""Search an index by description, alone or joined to an image search, and the JSON both write
(``xreid index search --describe``, ``--json``; the search service uses the same functions)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from xreid.explain.attribute_head import AttributeHead
from xreid.explain.describe import Description, parse_description
from xreid.explain.description_score import (BETA, COMBINE, RERANK_POOL, RULE, UNRELIABLE_WEIGHT, combined_distance,
                                            description_scores, evidence, filter_terms, term_weights)
from xreid.explain.naming import RELIABLE_AT
from xreid.index.describe import DescriptionResult, search_description, term_reliability
from xreid.index.filters import Filter
from xreid.index.gallery import GalleryIndex, SearchResult
from xreid.rendering.description import reason_line


def index_reliability(index: GalleryIndex, head: AttributeHead | None) -> np.ndarray | None:
    """The head's reliability per index attribute; the head must be the one the index was built with."""
    if head is None or head.reliability is None:
        return None
    from xreid.binding import HEAD_FIELDS, check_binding, head_binding

    check_binding(index.case, index.manifest.get("attributes"), head_binding(head), fields=HEAD_FIELDS, strict=False,
                  what="indexed with another attribute head", verb="built with head",
                  remedy="Give the --head the index was built with.")
    return head.reliability


def read_description(text: str, index: GalleryIndex) -> Description:
    """Parse ``text`` against the index's attributes; ValueError when nothing usable is left."""
    d = parse_description(text, index.attribute_names)
    if not d.terms:
        raise ValueError(f"nothing in the description {text!r} names an attribute of this index"
                         + ("".join(f"\n  {p}" for p in d.problems) if d.problems else ""))
    return d


def describe_search(index: GalleryIndex, text: str, head: AttributeHead | None, k: int = 10,
                    where: Filter | None = None) -> tuple[Description, DescriptionResult]:
    d = read_description(text, index)
    return d, search_description(index, d.terms, k, where, index_reliability(index, head), RULE, UNRELIABLE_WEIGHT)


def rerank_order(index: GalleryIndex, d: Description, weights: np.ndarray, ids: np.ndarray, distances: np.ndarray,
                 beta: float = BETA) -> np.ndarray:
    """The order of an image search's results (``ids``, ``distances``) once the description ``d``
    re-ranks them: by d - beta log(score), ties by id."""
    pos = [index.attribute_names.index(t.name) for t in d.terms]
    score = description_scores(index.probabilities(ids)[:, pos], [t.wanted for t in d.terms], weights, RULE)
    return np.lexsort((np.asarray(ids), combined_distance(distances, score, beta)))


def joined_filter(d: Description, weights: np.ndarray, where: Filter | None) -> Filter:
    """``where`` with the description's reliable terms added as attribute conditions."""
    base = where or Filter()
    attrs = {**filter_terms([t.name for t in d.terms], [t.wanted for t in d.terms], weights), **dict(base.attributes)}
    return replace(base, attributes=attrs)


@dataclass
class Described:
    """An image search joined to a description: the ranking after it, and the evidence per result."""

    ids: np.ndarray
    distances: np.ndarray  # the image search's own distances
    combined: np.ndarray  # what ranks them (distances with the re-ranking term; = distances for a filter)
    evidence: list
    mode: str


def join_description(index: GalleryIndex, d: Description, head: AttributeHead | None, search, k: int,
                     where: Filter | None = None, mode: str = COMBINE, beta: float = BETA) -> Described:
    """Run ``search(k, where)`` (an image search: -> SearchResult) with the description ``d`` as a
    filter (its reliable terms added to ``where``) or a re-ranking term over its first
    max(RERANK_POOL, 5 k) results."""
    rel = term_reliability(d.terms, index.attribute_names, index_reliability(index, head))
    weights = term_weights(rel, len(d.terms), UNRELIABLE_WEIGHT)
    names, wanted = [t.name for t in d.terms], [t.wanted for t in d.terms]
    reliable = np.ones(len(d.terms), bool) if rel is None else np.nan_to_num(rel, nan=0.0) >= RELIABLE_AT
    if mode == "filter":
        res: SearchResult = search(k, joined_filter(d, weights, where))
        ids, dist, combined = res.ids, res.distances.astype(np.float64), res.distances.astype(np.float64)
    elif mode == "rerank":
        res = search(max(RERANK_POOL, 5 * k), where)
        pos = [index.attribute_names.index(n) for n in names]
        combined = combined_distance(res.distances, description_scores(index.probabilities(res.ids)[:, pos], wanted,
                                                                       weights, RULE), beta)
        order = rerank_order(index, d, weights, res.ids, res.distances, beta)[:k]
        ids, dist, combined = res.ids[order], res.distances[order].astype(np.float64), combined[order]
    else:
        raise ValueError(f"unknown way to join a description: {mode!r} (filter or rerank)")
    pos = [index.attribute_names.index(n) for n in names]
    probs = index.probabilities(ids)[:, pos] if len(ids) else np.zeros((0, len(names)))
    ev = [evidence(p, names, wanted, [t.text for t in d.terms], weights, reliable) for p in probs]
    return Described(ids, dist, combined, ev, mode)


def describe_case(index: GalleryIndex, text: str, head: AttributeHead | None, k: int, where: Filter | None,
                  embedder=None, query=None, exact: bool = False):
    """``xreid index search --describe``: (the description as read, its result). Alone it ranks the
    index by how well each image fits; with ``query`` (an image, embedded by ``embedder``) the image
    search is re-ranked (or filtered) by the description."""
    if query is None:
        return describe_search(index, text, head, k, where)
    from xreid.workflows.index import search_index

    d = read_description(text, index)
    return d, join_description(index, d, head, lambda n, w: search_index(embedder, index, query, w, n, exact=exact),
                               k, where)


def _row(index: GalleryIndex, i: int) -> dict:
    row = index.row(int(i), attributes=False)
    return {"id": int(i), "key": row.pop("path"), **row}


def description_json(d: Description, res: DescriptionResult, index: GalleryIndex) -> dict:
    """What `--json` writes for a description search: the description as read, and the ranked results."""
    return {"kind": "description", "description": d.to_dict(), "rule": res.rule, "lookalikes": res.lookalikes,
            "candidates": res.candidates,
            "weights": {t.name: float(w) for t, w in zip(res.terms, res.weights)},
            "results": [{"rank": r + 1, **_row(index, i), "score": round(float(s), 6),
                         "evidence": [e.to_dict() for e in ev], "reason": reason_line(ev)}
                        for r, (i, s, ev) in enumerate(zip(res.ids, res.scores, res.evidence))]}


def image_json(query: str, res: SearchResult | Described, index: GalleryIndex, d: Description | None = None) -> dict:
    """What `--json` writes for an image search (joined to a description or not)."""
    out: dict = {"kind": "image", "query": query}
    if isinstance(res, Described):
        out.update(description=d.to_dict() if d else None, joined=res.mode)
        out["results"] = [{"rank": r + 1, **_row(index, i), "distance": round(float(dist), 6),
                           "score": round(float(c), 6), "evidence": [e.to_dict() for e in ev],
                           "reason": reason_line(ev)}
                          for r, (i, dist, c, ev) in enumerate(zip(res.ids, res.distances, res.combined, res.evidence))]
    else:
        out.update(method=res.method, candidates=res.candidates)
        out["results"] = [{"rank": r + 1, **_row(index, i), "distance": round(float(dist), 6),
                           "attributes": index.row(int(i))["attributes"]}
                          for r, (i, dist) in enumerate(zip(res.ids, res.distances))]
    return out
