"""Explanations in plain words: attribute chips and one line per result, built from the numbers.

Shared by the HTML report and the search page. Nothing here decides what to name (that is
``xreid.explain.naming``); this only says it in words, with both sides' values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xreid.data.vocabulary import AttributeWords, group_order, words
from xreid.explain.naming import AttributeEvidence, PairSummary

#: A calibrated probability at least this high ("more likely than not") shows the attribute as a chip
#: on the query card; the chip's tooltip gives the probability.
CHIP_AT = 0.5


@dataclass
class Chip:
    """One attribute as a reader sees it: its words, its group, how sure, and whether the model can
    be trusted on it (unreliable chips are drawn greyed)."""

    text: str
    group: str
    probability: float
    reliable: bool
    flagged: str = ""  # why the reader should be careful (two colours predicted for one part)


def _exclusive_members(names: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for a, n in enumerate(names):
        w = words(n)
        if w.exclusive:
            groups.setdefault(w.exclusive, []).append(a)
    return groups


def query_chips(names: list[str], probabilities: list[float], reliable: list[bool], at: float = CHIP_AT) -> list[Chip]:
    """The attributes the model sees in the query, grouped and ordered for reading. Colours of one
    part are resolved to the most likely colour; a second likely colour is flagged, not listed."""
    p = np.asarray(probabilities)
    chips: list[Chip] = []
    exclusive = _exclusive_members(names)
    in_exclusive = {a for members in exclusive.values() for a in members}
    for a, n in enumerate(names):
        if a not in in_exclusive and p[a] >= at:
            chips.append(Chip(words(n).present, words(n).group, float(p[a]), bool(reliable[a])))
    for members in exclusive.values():
        order = sorted(members, key=lambda a: -p[a])
        best = order[0]
        if p[best] < at:
            continue
        w = words(names[best])
        runner_up = order[1] if len(order) > 1 else None
        flag = ""
        if runner_up is not None and p[runner_up] >= 0.5:
            flag = f"also likely: {words(names[runner_up]).present}"
        chips.append(Chip(w.present, w.group, float(p[best]), bool(reliable[best]), flag))
    return sorted(chips, key=lambda c: (group_order(c.group), -c.probability))


def _group_value(names: list[str], probabilities: np.ndarray, w: AttributeWords) -> str:
    """The most likely colour of a part ("blue"), or "unclear" when no colour is likely."""
    members = [a for a, n in enumerate(names) if words(n).exclusive == w.exclusive]
    best = max(members, key=lambda a: probabilities[a])
    return words(names[best]).present.split(" ")[0] if probabilities[best] >= 0.5 else "unclear"


def describe(e: AttributeEvidence, names: list[str], query: np.ndarray, result: np.ndarray) -> str:
    """One attribute with both sides' values: "top: blue / red", "backpack: yes / no"."""
    w = words(e.name)
    if w.exclusive:
        q, r = _group_value(names, query, w), _group_value(names, result, w)
        if q != r:
            return f"{w.part}: {q} / {r}"
    return f"{w.present}: {_yes_no(e.query)} / {_yes_no(e.result)}"


def _yes_no(p: float) -> str:
    """Yes / no at 0.5, as the query card's chips; "(unsure)" within 0.1 of it."""
    return ("yes" if p >= 0.5 else "no") + (" (unsure)" if abs(p - 0.5) < 0.1 else "")


def result_line(summary: PairSummary, names: list[str], query: list[float], result: list[float]) -> str:
    """The plain-words line of one result, differences first (most likely first), then what is shared."""
    q, r = np.asarray(query), np.asarray(result)
    parts = []
    if summary.verdict:
        named = [words(n) for n in summary.verdict]
        what = [w.exclusive or w.present for w in named]
        parts.append("Probably not the same person: differs in " + _join(list(dict.fromkeys(what))) + ".")
    if summary.differences:
        parts.append("Differences (query / result): "
                     + "; ".join(dict.fromkeys(describe(d, names, q, r) for d in summary.differences)) + ".")
    else:
        parts.append("No reliable attribute clearly differs.")
    if summary.agreements:
        parts.append("Both: " + ", ".join(dict.fromkeys(words(a.name).present for a in summary.agreements)) + ".")
    return " ".join(parts)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def explained_sentence(shares: list[float]) -> str:
    """How much of the distances the attributes explain, in one sentence."""
    if not shares:
        return ""
    lo, hi, mid = 100 * min(shares), 100 * max(shares), 100 * float(np.median(shares))
    span = f"{lo:.0f} %" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f} %"
    return (f"Attributes account for {span} of these distances (median {mid:.0f} %); the rest is appearance "
            f"the model compares that the attribute vocabulary does not name.")
