"""Search a gallery index by description (docs/METHODS.md#search-by-description): every row the
filter keeps is scored by how well its stored calibrated attribute probabilities fit the described
terms (``xreid.explain.description_score``), with one table lookup per term on the uint8 codes.
Camera, time, field and attribute filters act as in image search (``GalleryIndex.mask``). The
probabilities ranked are each row's smoothed over its look-alikes where the index has them
(``GalleryIndex.description_codes``; docs/METHODS.md#search-by-description); the evidence gives both.

On a large index the search is exact but does not look every term up for every row: the k-th best
score of an evenly spaced sample of the kept rows is a lower bound L of the k-th best overall, and
since each term's value rises (or falls) with its code, a row can only reach L when each of its
codes passes a threshold computed from L and the other terms' best values (the best any row of
the index holds: the value at the attribute's smallest or largest code). Those comparisons on
the uint8 codes pick the few candidates that are then scored in full."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xreid.explain.describe import Term
from xreid.explain.description_score import (RULE, UNRELIABLE_WEIGHT, TermEvidence, check_rule, evidence,
                                            finish_scores, reduce_tables, score_tables, term_weights)
from xreid.explain.naming import RELIABLE_AT
from xreid.index.filters import Filter
from xreid.index.gallery import GalleryIndex, decode_probabilities


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
    scored: int = 0  # rows scored in full (the others could not reach the k-th best)
    method: str = "description"
    lookalikes: bool = False  # ranked by probabilities smoothed over each row's look-alikes

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


#: below this many kept rows every row is scored in full
PRUNE_FROM = 50_000
SAMPLE = 16_384


def _candidates(codes: list[np.ndarray], tables: np.ndarray, weights: np.ndarray, rule: str,
                mask: np.ndarray | None, kept: int, k: int, ranges: np.ndarray | None = None) -> np.ndarray:
    """Ids of the kept rows that may be among the ``k`` best (all kept rows on a small index)."""
    n = len(codes[0]) if codes else len(mask) if mask is not None else 0
    if not codes or kept <= max(PRUNE_FROM, 4 * k):
        return np.arange(n) if mask is None else np.flatnonzero(mask)
    kept_ids = None if mask is None else np.flatnonzero(mask)
    step = max(1, kept // SAMPLE)
    sample = np.arange(0, n, step) if kept_ids is None else kept_ids[::step]
    sample_vals = reduce_tables([table[c[sample]] for table, c in zip(tables, codes)], weights, rule, finish=False)
    bound = float(np.partition(sample_vals, len(sample_vals) - k)[len(sample_vals) - k]) - 1e-3
    active = [t for t in range(len(codes)) if not (rule == "min" and weights[t] <= 0)]
    if ranges is None:
        best = tables.max(1).astype(np.float64)
    else:  # tables are monotonic in the code: the best value a row holds is at one end of its range
        r = np.asarray(ranges, np.int64)
        best = np.maximum(tables[np.arange(len(tables)), r[:, 0]], tables[np.arange(len(tables)), r[:, 1]]
                          ).astype(np.float64)
    keep = mask.copy() if mask is not None else np.ones(n, bool)
    for t in active:
        need = bound if rule == "min" else bound - (best[active].sum() - best[t])
        ok = np.flatnonzero(tables[t] >= need)  # the codes with which the row can still reach the bound
        if len(ok) == 256:
            continue
        if len(ok) == 0:
            return np.zeros(0, np.int64)
        lo, hi = int(ok.min()), int(ok.max())
        if hi - lo + 1 != len(ok):  # not one interval (never for these monotonic tables): no pruning
            continue
        c = codes[t]
        keep &= (c >= lo) if hi == 255 else (c <= hi) if lo == 0 else ((c >= lo) & (c <= hi))
    ids = np.flatnonzero(keep)
    if rule == "min" or len(ids) <= 4 * SAMPLE:
        return ids
    # term by term on the survivors: a row whose partial sum plus the other terms' best cannot reach
    # the bound is dropped (look-alike codes, averaged, bunch up and leave the thresholds above loose)
    acc = np.zeros(len(ids), np.float32)
    rest = float(best[active].sum())
    spread = tables.max(1) - tables.min(1)
    for t in sorted(active, key=lambda t: -spread[t]):  # the terms that can lose most first
        acc += tables[t][codes[t][ids]]
        rest -= float(best[t])
        ok = acc + rest >= bound - 1e-3
        ids, acc = ids[ok], acc[ok]
    return ids


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
    check_rule(rule)
    mask = index.mask(where)
    kept = len(index) if mask is None else int(np.count_nonzero(mask))
    pos = {n: i for i, n in enumerate(index.attribute_names)}
    ranked = index.description_codes()
    codes = [ranked[pos[t.name]] for t in terms]
    tables = score_tables(decode_probabilities(np.arange(256)), [t.wanted for t in terms], weights, rule
                          ).astype(np.float32)
    ids = _candidates(codes, tables, weights, rule, mask, kept, k,
                      index.description_code_range()[[pos[t.name] for t in terms]])
    reduced = reduce_tables([table[c[ids]] for table, c in zip(tables, codes)], weights, rule, finish=False)
    top = _top_k_desc(reduced, ids, min(k, len(ids)))
    chosen = ids[top].astype(np.int64)
    best = finish_scores(reduced[top], weights, rule) if terms else np.ones(len(top))
    reliable = (np.ones(len(terms), bool) if rel is None
                else np.nan_to_num(rel, nan=0.0) >= RELIABLE_AT)
    cols = [pos[t.name] for t in terms]
    probs = decode_probabilities(ranked[:, chosen].T)[:, cols] if len(chosen) else np.zeros((0, len(terms)))
    own = index.probabilities(chosen)[:, cols] if len(chosen) else probs
    smoothed = index.lookalike_codes is not None
    ev = [evidence(p, [t.name for t in terms], [t.wanted for t in terms], [t.text for t in terms], weights, reliable,
                   own=o if smoothed else None) for p, o in zip(probs, own)]
    return DescriptionResult(chosen, best, [index.row(int(i)) for i in chosen], ev, kept, terms, weights, rule,
                             scored=len(ids), lookalikes=smoothed)
