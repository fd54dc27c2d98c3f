"""Small charts shared by the report, the interpreter block and the search page: the distance
composition of one result and its bar and pie (inline SVG)."""

from __future__ import annotations

import math

import numpy as np
from markupsafe import Markup

from xreid.data.vocabulary import words
from xreid.rendering.templating import render

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
OTHER_COLOUR, RESIDUAL_COLOUR = "#bab0ac", "#e8e8e8"


def pie_svg(values: list[float], colours: list[str], size: int = 110) -> Markup:
    """Inline SVG pie of non-negative values (``pie.svg.j2``; the geometry computed here)."""
    total = float(sum(values))
    r = size / 2 - 2
    c = size / 2
    shapes = []
    angle = -math.pi / 2
    for v, col in zip(values, colours) if total > 0 else ():
        if v <= 0:
            continue
        frac = v / total
        if frac >= 0.9999:
            shapes.append({"d": None, "colour": col})
            break
        end = angle + 2 * math.pi * frac
        x1, y1 = c + r * math.cos(angle), c + r * math.sin(angle)
        x2, y2 = c + r * math.cos(end), c + r * math.sin(end)
        large = 1 if frac > 0.5 else 0
        shapes.append({"d": f"M{c},{c} L{x1:.2f},{y1:.2f} A{r},{r} 0 {large} 1 {x2:.2f},{y2:.2f} Z", "colour": col})
        angle = end
    return render("pie.svg.j2", empty=total <= 0, shapes=shapes, size=size, c=c, r=r, residual=RESIDUAL_COLOUR)


def composition(parts: list[float], residual: float, names: list[str], top: int = 5) -> list[tuple[str, float, str]]:
    """(label, value, colour) slices: the ``top`` largest attribute parts (in words), the other
    attributes, the residual."""
    order = np.argsort(parts)[::-1]
    slices = [(words(names[a]).present, float(parts[a]), PALETTE[i % len(PALETTE)])
              for i, a in enumerate(order[:top]) if parts[a] > 0]
    rest = float(sum(parts[a] for a in order[top:]))
    if rest > 0:
        slices.append(("other attributes", rest, OTHER_COLOUR))
    slices.append(("not explained by attributes", float(residual), RESIDUAL_COLOUR))
    return slices


def bar_svg(slices: list[tuple[str, float, str]], width: int = 320, height: int = 14) -> Markup:
    """A horizontal stacked bar of the distance composition (attribute parts, then the residual)."""
    total = sum(v for _, v, _ in slices)
    rects, x = [], 0.0
    for label, v, colour in slices if total > 0 else ():
        w = width * v / total
        rects.append({"x": f"{x:.2f}", "w": f"{w:.2f}", "colour": colour, "title": f"{label} {100 * v / total:.0f} %"})
        x += w
    return render("bar.svg.j2", empty=total <= 0, rects=rects, width=width, height=height, residual=RESIDUAL_COLOUR)
