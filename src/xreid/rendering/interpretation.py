"""The interpreter's block on a result card of the report: how well its parts reconstruct the
model's distance, the largest parts as a bar, and each largest part's attention map on both images."""

from __future__ import annotations

from markupsafe import Markup

from xreid.data.vocabulary import words
from xreid.explain.interpretation import InterpretedPair
from xreid.explain.maps.base import QUERY
from xreid.rendering.charts import OTHER_COLOUR, PALETTE, bar_svg
from xreid.rendering.maps import MapPicture, data_uri
from xreid.rendering.templating import render

TOP = 5


def interpreter_block(pair: InterpretedPair, pictures: list[MapPicture]) -> Markup:
    """``interpreter.html.j2`` for one result: the fit line, the shares bar and the attention maps (query | result)."""
    fit = pair.fit
    off = "" if fit["relative_error"] is None else f" ({100 * fit['relative_error']:.0f} % off)"
    slices = [(words(n).present, v, PALETTE[i % len(PALETTE)])
              for i, (n, v) in enumerate(zip(pair.largest[:TOP], pair.largest_shares))]
    rest = max(0.0, 1.0 - sum(v for _, v, _ in slices))
    if rest > 0 and slices:
        slices.append(("other attributes", rest, OTHER_COLOUR))
    legend = ", ".join(f"{label} {100 * v:.0f} %" for label, v, _ in slices[:TOP])
    cells = []
    for name in pair.largest:
        side = {p.saliency.image: p for p in pictures if p.saliency.label == name and
                (p.saliency.pair == pair.key or p.saliency.image == pair.key)}
        if QUERY in side and pair.key in side:
            cells.append({"query": data_uri(side[QUERY].jpeg), "result": data_uri(side[pair.key].jpeg),
                          "name": words(name).present})
    line = (f'Distilled interpreter: its parts sum to {fit["reconstructed"]:.3f} for the '
            f'model\'s distance {fit["target"]:.3f}{off}. Largest parts: {legend or "none (distance 0)"}.')
    return render("interpreter.html.j2", line=line, bar=bar_svg(slices) if slices else "", cells=cells)
