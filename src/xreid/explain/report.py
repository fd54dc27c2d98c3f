"""Render a ranking explanation (the dict of ``RankingExplanation.to_dict``) as one self-contained
HTML page: images inlined as base64, pie charts as inline SVG, no network access needed.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

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


def render_report(explanation: dict, query_path: str | Path, gallery_paths: dict[str, str | Path],
                  maps: dict | None = None) -> str:
    """The HTML page for one explained ranking."""
    e = explanation
    esc = html.escape
    names = e["attribute_names"]
    rows = []
    for r in e["results"]:
        cls = "" if r["is_match"] is None else ("match" if r["is_match"] else "nomatch")
        verdict = "" if r["is_match"] is None else ("true match" if r["is_match"] else "different person")
        scores = "".join(
            f'<div class="score">{esc(n if e["query_probabilities"][names.index(n)] > 0.5 else "!" + n)}: '
            f'{100 * s:.0f} %</div>' for n, s in sorted(r["matching_scores"].items(), key=lambda kv: kv[1]))
        slices = composition(r["exact_parts"], r["exact_residual"], names)
        legend = "".join(f'<div class="legend"><span style="background:{c}"></span>{esc(lbl)} '
                         f'{100 * v / max(r["distance"], 1e-12):.0f} %</div>' for lbl, v, c in slices)
        e32 = np.asarray(r["attribute_error_eq32"])
        top32 = ", ".join(f"{esc(names[a])} {e32[a]:+.3f}" for a in np.argsort(e32)[::-1][:3])
        moved = (f'<div>was rank {r["original_rank"]} before filtering</div>'
                 if r["original_rank"] != r["rank"] else "")
        flt = f'<div>breaks {r["filter_violations"]} filter condition(s)</div>' if r["filter_violations"] else ""
        map_html = "".join(f'<div><img src="{m}" height="128" title="{esc(k)}"><br>{esc(k)}</div>'
                           for k, m in ((maps or {}).get(r["key"], {})).items())
        rows.append(
            f'<tr><td>{r["rank"]}</td><td><img class="{cls}" src="{image_data_uri(gallery_paths.get(r["key"]))}">'
            f'<div>{esc(r["key"])}</div><div>{esc(verdict)}</div>{moved}{flt}</td>'
            f'<td>{r["distance"]:.4f}<br>explained by attributes: {100 * r["explained_share"]:.1f} %</td>'
            f'<td>{scores or "(no confident query attribute)"}</td>'
            f'<td style="display:flex;gap:8px">{pie_svg([v for _, v, _ in slices], [c for _, _, c in slices])}'
            f'<div>{legend}<div style="margin-top:6px;color:#666">eq. 3.2 (as published) top: {top32}</div></div></td>'
            f'<td style="display:flex;gap:4px">{map_html}</td></tr>')
    tags = "".join(f'<span class="tag{" neg" if t.startswith("!") else ""}">{esc(t)}</span>' for t in e["confident"])
    flt = (f'<p>Attribute filter ({esc(e["filter_mode"])}): '
           + ", ".join(f"{esc(k)}={'yes' if v else 'no'}" for k, v in e["filter"].items()) + "</p>") if e["filter"] else ""
    qmaps = "".join(f'<div><img src="{m}" height="160"><br>{esc(k)}</div>' for k, m in ((maps or {}).get("__query__", {})).items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>xreid explanation: {esc(e['query'])}</title>
<style>{CSS}</style></head><body>
<h1>Why these results? Query {esc(e['query'])}</h1>
<div class="query"><img src="{image_data_uri(query_path, 192)}">{qmaps}<div>
<p>Model: {esc(e['model'])}. Gallery: {e['gallery_size']} images. Distance: {esc(e['distance'])}.</p>
<p>Attributes the model is confident about for the query (probability outside
[{0.5 - e['confidence_threshold']:.2f}, {0.5 + e['confidence_threshold']:.2f}]; <code>!name</code> = absent):</p>
<div>{tags or '<em>none</em>'}</div>{flt}
<p class="{'ok' if e['reliable'] else 'warn'}">{esc(e['reliability'])}</p></div></div>
<h2>Top {len(e['results'])} results</h2>
<p>Matching score per confident query attribute (eq. 3.1, clipped at 100 %). The pie splits each distance
exactly into attribute parts and a part not explained by attributes (they sum to the distance);
eq. 3.2 values as published are listed beside it (they can be negative and do not sum to the distance).</p>
<table><tr><th>rank</th><th>image</th><th>distance</th><th>matching scores</th><th>distance composition</th><th>maps</th></tr>
{''.join(rows)}</table></body></html>"""
