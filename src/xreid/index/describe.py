"""Search a gallery index by description (docs/METHODS.md#search-by-description): every row the
filter keeps is scored by how well its stored calibrated attribute probabilities fit the described
terms (``xreid.explain.description_score``), with one table lookup per term on the uint8 codes.
Camera, time, field and attribute filters act as in image search (``GalleryIndex.mask``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xreid.explain.describe import Term
from xreid.explain.description_score import (RULE, UNRELIABLE_WEIGHT, TermEvidence, evidence, reduce_tables,
                                            score_tables, term_weights)
from xreid.explain.naming import RELIABLE_AT
from xreid.index.gallery import Filter, GalleryIndex, decode_probabilities


@dataclass
class DescriptionResult:
    """The best-fitting rows, best first: ids, scores (see the rule), one metadata row and the
    per-term evidence per result, how many rows the filter kept, and the terms' weights."""

    ids: np.ndarray
    scores: np.ndarray
    rows: list[dict]
    evidence: list[list[TermEvidence]]
    candidates: int
    terms: list[Term]
    weights: np.ndarray
    rule: str
    method: str = "description"

    def __len__(self) -> int:
        return len(self.ids)


def _top_k_desc(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, ties broken by id."""
    if len(scores) > 4 * k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        pos = np.flatnonzero(scores >= kth)
    else:
        pos = np.arange(len(scores))
    return pos[np.lexsort((ids[pos], -scores[pos]))][:k]


def term_reliability(terms: Sequence[Term], names: Sequence[str], reliability: np.ndarray | None) -> np.ndarray | None:
    """The reliabilities of the terms' attributes (``reliability``: one per name), or None."""
    if reliability is None:
        return None
    pos = {n: i for i, n in enumerate(names)}
    return np.array([reliability[pos[t.name]] for t in terms], np.float64)


def search_description(index: GalleryIndex, terms: Sequence[Term], k: int = 10, where: Filter | None = None,
                       reliability: np.ndarray | None = None, rule: str = RULE,
                       unreliable_weight: float = UNRELIABLE_WEIGHT) -> DescriptionResult:
    """The ``k`` rows that fit ``terms`` best among those ``where`` keeps. ``reliability``: the
    attribute head's reliability per index attribute (None: every attribute counts fully)."""
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    terms = list(terms)
    unknown = [t.name for t in terms if t.name not in index.attribute_names]
    if unknown:
        raise ValueError(f"{index.case}: the index has no attribute {', '.join(unknown)}")
    rel = term_reliability(terms, index.attribute_names, reliability)
    weights = term_weights(rel, len(terms), unreliable_weight)
    mask = index.mask(where)
    ids = np.arange(len(index)) if mask is None else np.flatnonzero(mask)
    levels = decode_probabilities(np.arange(256))
    tables = score_tables(levels, [t.wanted for t in terms], weights, rule).astype(np.float32)
    pos = {n: i for i, n in enumerate(index.attribute_names)}
    values = []
    for t, table in zip(terms, tables):
        codes = index.attribute_codes[pos[t.name]]
        values.append(table[codes if mask is None else codes[ids]])
    scores = reduce_tables(values, weights, rule) if terms else np.ones(len(ids))
    top = _top_k_desc(scores, ids, min(k, len(ids)))
    chosen, best = ids[top].astype(np.int64), scores[top].astype(np.float64)
    reliable = (np.ones(len(terms), bool) if rel is None
                else np.nan_to_num(rel, nan=0.0) >= RELIABLE_AT)
    probs = index.probabilities(chosen)[:, [pos[t.name] for t in terms]] if len(chosen) else np.zeros((0, len(terms)))
    ev = [evidence(p, [t.name for t in terms], [t.wanted for t in terms], [t.text for t in terms], weights, reliable)
          for p in probs]
    return DescriptionResult(chosen, best, [index.row(int(i)) for i in chosen], ev, len(ids), terms, weights, rule)
