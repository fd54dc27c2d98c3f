"""A description search's result in plain words: which described attributes it fits, which are
unsure, which it does not fit, and which counted less because the model is unreliable on them."""

from __future__ import annotations

from collections.abc import Sequence

from xreid.explain.description_score import MET, NOT_MET, UNSURE, TermEvidence


def _listed(ev: Sequence[TermEvidence]) -> str:
    return ", ".join(f"{e.text} {round(100 * e.probability)} %" for e in ev)


def reason_line(ev: Sequence[TermEvidence]) -> str:
    """ "Fits 2 of 3 described attributes: woman 92 %, red top 71 %. Unsure: no hat 52 %." """
    if not ev:
        return "No attribute described: every image fits equally."
    met = [e for e in ev if e.status == MET]
    parts = [f"Fits {len(met)} of {len(ev)} described attribute{'s' if len(ev) > 1 else ''}"
             + (f": {_listed(met)}." if met else ".")]
    for what, label in ((UNSURE, "Unsure"), (NOT_MET, "Does not fit")):
        some = [e for e in ev if e.status == what]
        if some:
            parts.append(f"{label}: {_listed(some)}.")
    weak = [e for e in ev if not e.reliable]
    if weak:
        parts.append(f"Counted at weight {weak[0].weight:g} (the model is unreliable on "
                     f"{'it' if len(weak) == 1 else 'them'}): {', '.join(e.text for e in weak)}.")
    return " ".join(parts)
