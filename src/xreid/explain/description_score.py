"""How well an image fits a description (docs/METHODS.md#search-by-description).

For the described terms t (an attribute and whether it is wanted) and an image's calibrated
probabilities p_t, the probability that the term holds as described is q_t = p_t if wanted, else
1 - p_t. Each term has a weight w_t: 1 for an attribute reliable for the model (balanced accuracy on
validation images >= ``RELIABLE_AT``), ``UNRELIABLE_WEIGHT`` for the others (NaN reliability counts
as unreliable). The rules compared:

- ``product``:  prod_t q_t ** w_t  (the probability that every term holds, terms independent)
- ``geomean``:  (prod_t q_t ** w_t) ** (1 / sum_t w_t)  (soft-AND; ranks as ``product``, reads as a
  probability per term)
- ``min``:      min_t q_t ** w_t
- ``mean``:     sum_t w_t q_t / sum_t w_t

The rule (``RULE``) and the unreliable weight were chosen on PETA-ReID-val (docs/RESULTS.md).

Look-alike smoothing: a person is usually seen more than once, and one crop reads an attribute
worse than several. Before scoring, each image's probabilities are averaged with those of its
``LOOKALIKES`` nearest images in the case (cosine of the embeddings; ``lookalike_smoothed``):
p' = (1 - a) p + a mean_j p_j, with a = ``LOOKALIKE_WEIGHT``; both chosen on PETA-ReID-val. The
index computes them when a build or add finishes (``xreid.index.lookalikes``).
Evidence per term: met when q_t >= 0.5 + ``UNSURE_WITHIN``, not met when q_t <= 0.5 - ``UNSURE_WITHIN``,
else unsure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xreid.explain.naming import RELIABLE_AT

RULES = ("product", "geomean", "min", "mean")
#: chosen on PETA-ReID-val (docs/RESULTS.md#search-by-description)
RULE = "geomean"
#: the weight of an attribute unreliable for the model (chosen on PETA-ReID-val)
UNRELIABLE_WEIGHT = 0.25
#: look-alike smoothing: how many nearest images, and their share (chosen on PETA-ReID-val)
LOOKALIKES = 1
LOOKALIKE_WEIGHT = 0.5
#: how a description joins an image search ("search by this image"): "rerank" (distance - BETA x
#: log score over the image search's first candidates) or "filter" (every reliable term likely as
#: described); chosen on PETA-ReID-val (docs/RESULTS.md#search-by-description)
COMBINE = "rerank"
BETA = 0.05
#: the image search's first this-many results (at least) are re-ranked
RERANK_POOL = 200
#: a term is "unsure" when its probability is within this of 0.5 (as the reports' "(unsure)")
UNSURE_WITHIN = 0.1
#: probabilities are kept in [EPS, 1 - EPS] before taking logs
EPS = 1e-4


def term_weights(reliability: Sequence[float] | np.ndarray | None, n_terms: int,
                 unreliable_weight: float = UNRELIABLE_WEIGHT, reliable_at: float = RELIABLE_AT) -> np.ndarray:
    """w_t per term from the terms' reliabilities (None: every term counts fully)."""
    if reliability is None:
        return np.ones(n_terms)
    r = np.nan_to_num(np.asarray(reliability, np.float64), nan=0.0)
    return np.where(r >= reliable_at, 1.0, float(unreliable_weight))


def lookalike_smoothed(p: np.ndarray, neighbours: np.ndarray, weight: float = LOOKALIKE_WEIGHT) -> np.ndarray:
    """p' = (1 - weight) p + weight x the mean of the neighbours' p, per row (p: N x A; neighbours:
    N x m row ids, -1 where a row has fewer); a row without neighbours keeps its own p."""
    p = np.asarray(p, np.float64)
    nb = np.asarray(neighbours, np.int64).reshape(len(p), -1)
    return lookalike_mix(p, p[np.maximum(nb, 0)], nb >= 0, weight)


def lookalike_mix(p: np.ndarray, neighbour_p: np.ndarray, valid: np.ndarray, weight: float = LOOKALIKE_WEIGHT
                  ) -> np.ndarray:
    """``lookalike_smoothed`` for rows whose neighbours' probabilities are given (neighbour_p:
    N x m x A, ``valid``: N x m, which of them exist)."""
    p = np.asarray(p, np.float64)
    valid = np.asarray(valid, bool)
    count = valid.sum(1)[:, None]
    mean = (np.asarray(neighbour_p, np.float64) * valid[..., None]).sum(1) / np.maximum(count, 1)
    return np.where(count > 0, (1 - weight) * p + weight * mean, p)


def term_probabilities(p: np.ndarray, wanted: Sequence[bool] | np.ndarray) -> np.ndarray:
    """q (... x T): the probability that each term holds as described."""
    p = np.asarray(p, np.float64)
    return np.where(np.asarray(wanted, bool), p, 1.0 - p)


def _term_values(q: np.ndarray, w: np.ndarray, rule: str) -> np.ndarray:
    """What each term adds (``sum`` rules) or competes with (``min``): w log q, or w q for ``mean``."""
    if rule == "mean":
        return w * q
    return w * np.log(np.clip(q, EPS, 1 - EPS))


def _reduce(values: np.ndarray, rule: str) -> np.ndarray:
    return values.min(-1) if rule == "min" else values.sum(-1)


def _finish(x: np.ndarray, w: np.ndarray, rule: str) -> np.ndarray:
    total = max(float(np.sum(w)), 1e-12)
    if rule == "geomean":
        return np.exp(x / total)
    if rule == "mean":
        return x / total
    return np.exp(x)


def check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown description rule {rule!r} (known: {', '.join(RULES)})")


def description_scores(p: np.ndarray, wanted: Sequence[bool], weights: np.ndarray, rule: str = RULE) -> np.ndarray:
    """The score of each image (p: n x T calibrated probabilities of the described attributes);
    higher fits better. With no term every image scores 1."""
    check_rule(rule)
    p = np.asarray(p, np.float64)
    if p.shape[-1] == 0:
        return np.ones(p.shape[:-1])
    w = np.asarray(weights, np.float64)
    if rule == "min":  # a term of weight 0 takes no part
        w_eff = np.where(w > 0, w, np.nan)
        v = _term_values(term_probabilities(p, wanted), np.nan_to_num(w_eff, nan=0.0), rule)
        v = np.where(np.isnan(w_eff), 0.0, v)
        return _finish(_reduce(v, rule), w, rule)
    return _finish(_reduce(_term_values(term_probabilities(p, wanted), w, rule), rule), w, rule)


def score_tables(levels: np.ndarray, wanted: Sequence[bool], weights: np.ndarray, rule: str = RULE) -> np.ndarray:
    """For probabilities stored as codes (level[c] = the probability of code c), a T x C table of
    each term's value per code, so that an index scores N rows with T lookups:
    ``finish_scores(reduce over t of table[t, codes[t]])`` equals ``description_scores``."""
    check_rule(rule)
    q = term_probabilities(np.asarray(levels, np.float64)[None, :], np.asarray(wanted, bool)[:, None])
    return _term_values(q, np.asarray(weights, np.float64)[:, None], rule)


def reduce_tables(values: Sequence[np.ndarray], weights: np.ndarray, rule: str = RULE, finish: bool = True
                  ) -> np.ndarray:
    """Combine per-term looked-up values (each n, float32) into scores, as ``description_scores``;
    ``finish=False`` stops before the last step, a monotonic map (what a search may compare)."""
    w = np.asarray(weights, np.float64)
    acc = None
    for v, wt in zip(values, w):
        if rule == "min" and wt <= 0:
            continue
        acc = v.copy() if acc is None else (np.minimum(acc, v, out=acc) if rule == "min" else np.add(acc, v, out=acc))
    if acc is None:
        n = len(values[0]) if len(values) else 0
        return np.ones(n) if finish else np.zeros(n)
    return _finish(acc, w, rule) if finish else acc


def finish_scores(reduced: np.ndarray, weights: np.ndarray, rule: str = RULE) -> np.ndarray:
    """The scores of values ``reduce_tables(..., finish=False)`` returned (increasing in them)."""
    return _finish(np.asarray(reduced, np.float64), np.asarray(weights, np.float64), rule)


def combined_distance(distance: np.ndarray, score: np.ndarray, beta: float = BETA) -> np.ndarray:
    """An image search's distance with a description's score as a re-ranking term: d - beta log(score)."""
    return np.asarray(distance, np.float64) - beta * np.log(np.maximum(np.asarray(score, np.float64), 1e-12))


def filter_terms(names: Sequence[str], wanted: Sequence[bool], weights: np.ndarray) -> dict[str, bool]:
    """The description as an attribute filter: each fully weighted (reliable) term, as described."""
    return {n: bool(w) for n, w, wt in zip(names, wanted, weights) if wt >= 1.0}


# --- evidence ----------------------------------------------------------------------------------------

MET, NOT_MET, UNSURE = "met", "not met", "unsure"


@dataclass
class TermEvidence:
    """One described term for one image: the probability it holds as described, and the verdict."""

    name: str
    wanted: bool
    text: str  # "backpack", "no hat"
    probability: float  # q_t
    status: str  # met / not met / unsure
    reliable: bool
    weight: float
    own: float | None = None  # q_t read from this image alone, where the probability ranked is smoothed

    def to_dict(self) -> dict:
        out = {"name": self.name, "wanted": self.wanted, "text": self.text,
               "probability": round(self.probability, 4), "status": self.status, "reliable": self.reliable,
               "weight": self.weight}
        if self.own is not None:
            out["own"] = round(self.own, 4)
        return out


def status(q: float) -> str:
    return MET if q >= 0.5 + UNSURE_WITHIN else NOT_MET if q <= 0.5 - UNSURE_WITHIN else UNSURE


def evidence(p: np.ndarray, names: Sequence[str], wanted: Sequence[bool], texts: Sequence[str],
             weights: np.ndarray, reliable: Sequence[bool], own: np.ndarray | None = None) -> list[TermEvidence]:
    """Per term, for one image (p: T calibrated probabilities of the described attributes, as
    ranked; ``own``: the image's own where those are smoothed over its look-alikes)."""
    q = term_probabilities(p, wanted)
    q_own = [None] * len(q) if own is None else [float(v) for v in term_probabilities(own, wanted)]
    return [TermEvidence(n, bool(w), t, float(qq), status(float(qq)), bool(r), float(wt), o)
            for n, w, t, qq, wt, r, o in zip(names, wanted, texts, q, weights, reliable, q_own)]
