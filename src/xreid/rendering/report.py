"""Render a ranking explanation (``RankingExplanation``) as one self-contained HTML page: images
inlined as base64, pie charts as inline SVG, no network access needed.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from xreid.explain.maps.base import QUERY
from xreid.explain.ranking import RankingExplanation
from xreid.rendering.maps import MapPicture, caption, data_uri

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
OTHER_COLOUR, RESIDUAL_COLOUR = "#bab0ac", "#e8e8e8"


def image_data_uri(path: str | Path | None, height: int = 128) -> str:
    """A JPEG thumbnail of ``path`` as a data: URI (a grey placeholder when it cannot be read)."""
    from xreid.data.images import ImageError, load_image

    try:
        arr = load_image(path) if path else None
    except ImageError:
        arr = None
    if arr is None:
        arr = np.full((height, height // 2, 3), 200, np.uint8)
    im = Image.fromarray(arr)
    im = im.resize((max(1, round(im.width * height / im.height)), height), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def pie_svg(values: list[float], colours: list[str], size: int = 110) -> str:
    """Inline SVG pie of non-negative values."""
    total = float(sum(values))
    r = size / 2 - 2
    c = size / 2
    if total <= 0:
        return (f'<svg width="{size}" height="{size}"><circle cx="{c}" cy="{c}" r="{r}" fill="{RESIDUAL_COLOUR}"/>'
                f'<text x="{c}" y="{c}" text-anchor="middle" font-size="10">distance 0</text></svg>')
    out = [f'<svg width="{size}" height="{size}" viewBox="0 0 {size} {size}">']
    angle = -math.pi / 2
    for v, col in zip(values, colours):
        if v <= 0:
            continue
        frac = v / total
        if frac >= 0.9999:
            out.append(f'<circle cx="{c}" cy="{c}" r="{r}" fill="{col}"/>')
            break
        end = angle + 2 * math.pi * frac
        x1, y1 = c + r * math.cos(angle), c + r * math.sin(angle)
        x2, y2 = c + r * math.cos(end), c + r * math.sin(end)
        large = 1 if frac > 0.5 else 0
        out.append(f'<path d="M{c},{c} L{x1:.2f},{y1:.2f} A{r},{r} 0 {large} 1 {x2:.2f},{y2:.2f} Z" fill="{col}"/>')
        angle = end
    out.append("</svg>")
    return "".join(out)


def composition(parts: list[float], residual: float, names: list[str], top: int = 5) -> list[tuple[str, float, str]]:
    """(label, value, colour) slices: the ``top`` largest attribute parts, the other attributes, the residual."""
    order = np.argsort(parts)[::-1]
    slices = [(names[a], float(parts[a]), PALETTE[i % len(PALETTE)]) for i, a in enumerate(order[:top]) if parts[a] > 0]
    rest = float(sum(parts[a] for a in order[top:]))
    if rest > 0:
        slices.append(("other attributes", rest, OTHER_COLOUR))
    slices.append(("not explained by attributes", float(residual), RESIDUAL_COLOUR))
    return slices


CSS = """
body{font-family:system-ui,Segoe UI,Arial,sans-serif;margin:20px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:24px}
.query{display:flex;gap:16px;align-items:flex-start}
.tag{display:inline-block;padding:1px 6px;margin:2px;border-radius:8px;background:#eef;font-size:12px}
.tag.neg{background:#fee}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:8px;border-radius:6px;max-width:900px}
.ok{background:#e8f5e9;border:1px solid #8c8;padding:8px;border-radius:6px;max-width:900px}
table{border-collapse:collapse} td,th{border-bottom:1px solid #ddd;padding:6px;vertical-align:top;font-size:12px}
.match{outline:4px solid #2e7d32} .nomatch{outline:4px solid #c62828}
.legend span{display:inline-block;width:10px;height:10px;margin-right:4px}
.score{font-family:monospace}
"""


def _map_cells(pictures: list[MapPicture], height: int) -> str:
    return "".join(f'<div><img src="{data_uri(p.png)}" height="{height}" title="{html.escape(caption(p.saliency))}">'
                   f'<br>{html.escape(caption(p.saliency))}</div>' for p in pictures)


def _attribute_tag(a) -> str:
    return a.name if a.present else f"!{a.name}"


def render_report(e: RankingExplanation, query_path: str | Path, gallery_paths: dict[str, str | Path],
                  maps: list[MapPicture] | None = None, skipped: list[str] | None = None,
                  notes: list[str] | None = None) -> str:
    """The HTML page for one explained ranking; ``skipped`` lists the files that could not be used,
    ``notes`` any other remark the reader must see (query left out of the gallery, maps substituted)."""
    esc = html.escape
    names = e.attribute_names
    maps = maps or []
    present = {a.name: a.present for a in e.confident}
    rows = []
    for r in e.results:
        cls = "" if r.is_match is None else ("match" if r.is_match else "nomatch")
        verdict = "" if r.is_match is None else ("true match" if r.is_match else "different person")
        if r.identical_to_query:
            verdict = "identical to the query image (distance 0)"
        scores = "".join(
            f'<div class="score">{esc(n if present[n] else "!" + n)}: {100 * sc:.0f} %</div>'
            for n, sc in sorted(r.matching_scores.items(), key=lambda kv: kv[1]))
        slices = composition(r.exact_parts, r.exact_residual, names)
        legend = "".join(f'<div class="legend"><span style="background:{c}"></span>{esc(lbl)} '
                         f'{100 * v / max(r.distance, 1e-12):.0f} %</div>' for lbl, v, c in slices)
        e32 = np.asarray(r.attribute_error_eq32)
        top32 = ", ".join(f"{esc(names[a])} {e32[a]:+.3f}" for a in np.argsort(e32)[::-1][:3])
        moved = f'<div>was rank {r.original_rank} before filtering</div>' if r.original_rank != r.rank else ""
        flt = f'<div>breaks {r.filter_violations} filter condition(s)</div>' if r.filter_violations else ""
        own = [p for p in maps if p.saliency.image == r.key or p.saliency.pair == r.key]
        rows.append(
            f'<tr><td>{r.rank}</td><td><img class="{cls}" src="{image_data_uri(gallery_paths.get(r.key))}">'
            f'<div>{esc(r.key)}</div><div>{esc(verdict)}</div>{moved}{flt}</td>'
            f'<td>{r.distance:.4f}<br>explained by attributes: {100 * r.explained_share:.1f} %</td>'
            f'<td>{scores or "(no confident query attribute)"}</td>'
            f'<td style="display:flex;gap:8px">{pie_svg([v for _, v, _ in slices], [c for _, _, c in slices])}'
            f'<div>{legend}<div style="margin-top:6px;color:#666">attribute error as published, top: {top32}</div></div></td>'
            f'<td style="display:flex;gap:4px">{_map_cells(own, 128)}</td></tr>')
    tags = "".join(f'<span class="tag{"" if a.present else " neg"}">{esc(_attribute_tag(a))}</span>' for a in e.confident)
    flt = (f'<p>Attribute filter ({esc(e.filter_mode)}): '
           + ", ".join(f"{esc(k)}={'yes' if v else 'no'}" for k, v in e.filter.items()) + "</p>") if e.filter else ""
    qmaps = _map_cells([p for p in maps if p.saliency.image == QUERY and p.saliency.pair is None], 160)
    remarks = "".join(f'<p class="warn">{esc(n)}</p>' for n in notes or [])
    skipped_html = ""
    if skipped:
        items = "".join(f"<li>{esc(s)}</li>" for s in skipped)
        skipped_html = f"<h2>Files that could not be used ({len(skipped)})</h2><ul>{items}</ul>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>xreid explanation: {esc(e.query)}</title>
<style>{CSS}</style></head><body>
<h1>Why these results? Query {esc(e.query)}</h1>
<div class="query"><img src="{image_data_uri(query_path, 192)}">{qmaps}<div>
<p>Model: {esc(e.model)}. Gallery: {e.gallery_size} images. Distance: {esc(e.distance)}.</p>
<p>Attributes the model is confident about for the query (probability outside
[{0.5 - e.confidence_threshold:.2f}, {0.5 + e.confidence_threshold:.2f}]; <code>!name</code> = absent):</p>
<div>{tags or '<em>none</em>'}</div>{flt}
<p class="{'ok' if e.reliable else 'warn'}">{esc(e.reliability)}</p>{remarks}</div></div>
<h2>Top {len(e.results)} results</h2>
<p>Matching score per confident query attribute (clipped at 100 %). The pie splits each distance
exactly into attribute parts and a part not explained by attributes (they sum to the distance);
the attribute errors as published are listed beside it (they can be negative and do not sum to the distance).</p>
<table><tr><th>rank</th><th>image</th><th>distance</th><th>matching scores</th><th>distance composition</th><th>maps</th></tr>
{''.join(rows)}</table>{skipped_html}</body></html>"""
