"""What an explanation names (docs/METHODS.md#naming-differences): the attributes most likely to truly
differ between two people, and those they most likely share.

The exact decomposition says how much of a distance lies along each attribute's direction, not
whether the two people really differ in that attribute: a large part can come from a confident
"blue" against an unsure "blue". With calibrated probabilities p_q and p_g of the two images, the
probability that the attribute truly differs is

    P(differ) = p_q (1 - p_g) + (1 - p_q) p_g

(the two images' attributes taken as independent given what the model sees). An explanation names
a difference only for a *reliable* attribute (balanced accuracy on validation images at least
``RELIABLE_AT``) that also accounts for part of the distance (at least ``MIN_SHARE`` x the mean
attribute part of that distance), most likely differences first. Both thresholds and the rule
itself were chosen on PETA-ReID-val, for the bundled model and OMZ 0277 together
(docs/RESULTS.md#naming-differences).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Attributes whose balanced accuracy on validation images is below this are "unreliable for this
#: model": shown greyed, never named in a verdict.
RELIABLE_AT = 0.6
#: An attribute must hold at least this multiple of the mean attribute part to be named.
MIN_SHARE = 1.5
#: A difference is stated as a verdict ("differs in ...") when it is at least this likely: on
#: PETA-ReID-val the lowest value at which no true match got a verdict (docs/METHODS.md#naming-differences).
VERDICT_AT = 0.8
#: Differences less likely than this are not listed in the plain-words line.
LIST_AT = 0.5
#: An attribute is stated as shared when both images have it (or both lack it) this surely.
AGREE_AT = 0.75


def difference_probability(p_q: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    """P(the attribute truly differs) from calibrated probabilities of the two images (broadcasts)."""
    p_q, p_g = np.asarray(p_q, np.float64), np.asarray(p_g, np.float64)
    return p_q * (1.0 - p_g) + (1.0 - p_q) * p_g


def candidates(parts: np.ndarray, reliable: np.ndarray, min_share: float = MIN_SHARE) -> np.ndarray:
    """Attributes that may be named for a pair (or ... x A pairs): reliable, and holding at least
    ``min_share`` x the mean attribute part of this pair's distance."""
    parts = np.asarray(parts, np.float64)
    mean = parts.mean(-1, keepdims=True)
    return np.asarray(reliable, bool) & (parts >= min_share * mean) & (parts > 0)


def rank_differences(p_q: np.ndarray, p_g: np.ndarray, parts: np.ndarray, reliable: np.ndarray,
                     min_share: float = MIN_SHARE) -> list[int]:
    """Attribute indices that may be named as differences for one pair, most likely difference first."""
    p_diff = difference_probability(p_q, p_g)
    idx = np.flatnonzero(candidates(parts, reliable, min_share))
    return [int(a) for a in idx[np.argsort(-p_diff[idx], kind="stable")]]


def first_named(p_q: np.ndarray, p_g: np.ndarray, parts: np.ndarray, reliable: np.ndarray,
                min_share: float = MIN_SHARE) -> np.ndarray:
    """For G pairs (p_g, parts: G x A; p_q: A), the index of the first named difference, or -1 when
    no attribute qualifies. What the explanation-precision benchmark scores."""
    p_diff = difference_probability(np.asarray(p_q)[None], p_g)
    ok = candidates(parts, reliable, min_share)
    best = np.argmax(np.where(ok, p_diff, -1.0), axis=-1)
    return np.where(ok.any(-1), best, -1)


def rank_agreements(p_q: np.ndarray, p_g: np.ndarray, reliable: np.ndarray, at: float = AGREE_AT) -> list[int]:
    """Reliable attributes both images surely have (present in both), most certain first."""
    both = np.minimum(np.asarray(p_q, np.float64), np.asarray(p_g, np.float64))
    idx = np.flatnonzero(np.asarray(reliable, bool) & (both >= at))
    return [int(a) for a in idx[np.argsort(-both[idx], kind="stable")]]


@dataclass
class AttributeEvidence:
    """One attribute in a pair's explanation, with both sides' calibrated values."""

    name: str
    query: float  # calibrated probability that the query has it
    result: float  # ... that the result has it
    p_differ: float
    share: float  # part of the distance along this attribute / the distance
    reliable: bool


@dataclass
class PairSummary:
    """What a reader is told about one result: what likely differs, what is shared, and a verdict
    when a difference is clear (``verdict`` lists the clearly different attributes)."""

    differences: list[AttributeEvidence]
    agreements: list[AttributeEvidence]
    verdict: list[str]


def summarise_pair(names: list[str], p_q: np.ndarray, p_g: np.ndarray, parts: np.ndarray, distance: float,
                   reliable: np.ndarray, top: int = 3) -> PairSummary:
    """The plain-words content of one result: up to ``top`` differences and agreements."""
    p_diff = difference_probability(p_q, p_g)

    def evidence(a: int) -> AttributeEvidence:
        return AttributeEvidence(names[a], float(p_q[a]), float(p_g[a]), float(p_diff[a]),
                                 float(parts[a] / distance) if distance > 1e-12 else 0.0, bool(reliable[a]))

    differences = [evidence(a) for a in rank_differences(p_q, p_g, parts, reliable)[:top] if p_diff[a] >= LIST_AT]
    agreements = [evidence(a) for a in rank_agreements(p_q, p_g, reliable)[:top]]
    verdict = [d.name for d in differences if d.p_differ >= VERDICT_AT]
    return PairSummary(differences, agreements, verdict)
