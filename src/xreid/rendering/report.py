"""Render a ranking explanation (``RankingExplanation``) as one self-contained HTML page: images
inlined as base64, pie charts as inline SVG, no network access needed.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from xreid.data.vocabulary import group_order, words
from xreid.explain.maps.base import QUERY
from xreid.explain.ranking import RankingExplanation, ResultExplanation
from xreid.rendering.maps import HIGH_MEANS, MapPicture, caption, data_uri
from xreid.rendering.charts import bar_svg, composition, pie_svg
from xreid.rendering.interpretation import interpreter_block
from xreid.rendering.words import explained_sentence, query_chips, result_line

def image_data_uri(path: str | Path | np.ndarray | None, height: int = 128) -> str:
    """A JPEG thumbnail of ``path`` (an image file, or an image already decoded: H x W x 3 RGB) as a
    data: URI (a grey placeholder when it cannot be read)."""
    from xreid.data.images import ImageError, load_image

    if isinstance(path, np.ndarray):
        arr = path
    else:
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


CSS = """
:root{--ok:#2e7d32;--bad:#c62828;--muted:#888;--line:#e3e3e3}
body{font-family:system-ui,Segoe UI,Arial,sans-serif;margin:0 auto;padding:16px 20px;color:#222;max-width:1360px}
h1{font-size:20px;margin:4px 0 2px} .sub{color:#555;font-size:13px;margin-bottom:12px}
.card{border:1px solid var(--line);border-radius:10px;padding:12px;margin:10px 0;display:flex;gap:16px;
      break-inside:avoid;page-break-inside:avoid;background:#fff}
.card.querycard{background:#f7f9fc}
.card img.person{height:160px;border-radius:4px;outline:3px solid #ccc}
.card.match img.person{outline-color:var(--ok)} .card.nomatch img.person{outline-color:var(--bad)}
.main{flex:1;min-width:0}
.head{display:flex;gap:14px;align-items:baseline;flex-wrap:wrap;font-size:14px}
.rank{font-weight:700;font-size:18px} .dist{font-family:monospace}
.label{font-size:12px;padding:1px 8px;border-radius:8px;color:#fff} .label.match{background:var(--ok)}
.label.nomatch{background:var(--bad)} .label.same{background:#6d4c41}
.line{font-size:15px;line-height:1.45;margin:6px 0}
.chips{display:flex;flex-wrap:wrap;gap:4px 14px;margin:6px 0}
.group{font-size:12px;color:#555} .group b{display:block;font-weight:600;color:#333}
.chip{display:inline-block;padding:2px 8px;margin:2px 2px 0 0;border-radius:10px;background:#e3ecfa;font-size:13px}
.chip.unreliable{background:#eee;color:var(--muted);text-decoration:line-through dotted}
.chip.flag{background:#fff1d6}
.verdict{padding:8px 10px;border-radius:6px;margin:6px 0;font-size:14px}
.verdict.ok{background:#e8f5e9;border:1px solid #8c8} .verdict.warn{background:#fff3cd;border:1px solid #e0c060}
.maps{display:flex;gap:8px;flex-wrap:wrap;align-items:flex-end;font-size:11px;color:#555}
figure{margin:0;max-width:170px} figcaption{font-size:11px;color:#555}
.scale{display:flex;flex-direction:column;align-items:flex-start;font-size:11px;color:#555;gap:2px}
.scale .jet{width:12px;height:90px;background:linear-gradient(to top,#00007f,#0000ff,#00ffff,#7fff7f,#ffff00,#ff0000,#7f0000)}
details{margin-top:6px;font-size:12px} summary{cursor:pointer;color:#1a5fb4}
table{border-collapse:collapse;margin-top:6px} td,th{border-bottom:1px solid var(--line);padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left} tr.unreliable td{color:var(--muted)}
.legend span{display:inline-block;width:10px;height:10px;margin-right:4px}
.muted{color:var(--muted)}
@media (max-width:900px){.card{flex-direction:column}}
@media print{body{max-width:none;padding:0;font-size:11px} .card{border-color:#bbb}
  details::details-content{display:block;content-visibility:visible} summary{display:none} .maps img{height:110px}}
"""


def _map_cells(pictures: list[MapPicture], height: int) -> str:
    cells = []
    for p in pictures:
        text = caption(p.saliency) + (" (map is all zero)" if p.saliency.is_empty else "")
        cells.append(f'<figure><img src="{data_uri(p.jpeg)}" style="height:{height}px" alt="{html.escape(text)}">'
                     f'<figcaption>{html.escape(text)}</figcaption></figure>')
    if not cells:
        return ""
    kinds = list(dict.fromkeys(p.saliency.kind for p in pictures))
    legend = "; ".join(f"{HIGH_MEANS.get(k, 'more')}" for k in kinds)
    return ("".join(cells) + f'<div class="scale"><span>high: {html.escape(legend)}</span><span class="jet"></span>'
            f'<span>low</span></div>')


def _chips_html(e: RankingExplanation) -> str:
    chips = query_chips(e.attribute_names, e.query_calibrated or e.query_probabilities,
                        e.attribute_reliable or [True] * len(e.attribute_names))
    groups: dict[str, list[str]] = {}
    for c in chips:
        cls = "chip" + ("" if c.reliable else " unreliable") + (" flag" if c.flagged else "")
        tip = f"{100 * c.probability:.0f} %" + ("" if c.reliable else ", unreliable for this model") + \
            (f"; {c.flagged}" if c.flagged else "")
        groups.setdefault(c.group, []).append(f'<span class="{cls}" title="{html.escape(tip)}">{html.escape(c.text)}'
                                              f'{" ?" if c.flagged else ""}</span>')
    return "".join(f'<div class="group"><b>{html.escape(g)}</b>{"".join(v)}</div>'
                   for g, v in sorted(groups.items(), key=lambda kv: group_order(kv[0])))


def _unreliable_html(e: RankingExplanation) -> str:
    names = [words(n).present for n, ok in zip(e.attribute_names, e.attribute_reliable) if not ok]
    if not names:
        return ""
    return (f'<p class="muted">Unreliable for this model (not used in verdicts): {html.escape(", ".join(names))}.</p>')


def _details_table(e: RankingExplanation, r: ResultExplanation) -> str:
    names = e.attribute_names
    cal_q = e.query_calibrated or e.query_probabilities
    cal_g = r.calibrated or r.probabilities
    rel = e.attribute_reliability or [None] * len(names)
    ok = e.attribute_reliable or [True] * len(names)
    order = sorted(range(len(names)), key=lambda a: -r.exact_parts[a])
    rows = []
    for a in order:
        n = names[a]
        score = r.matching_scores.get(n)
        p_diff = cal_q[a] * (1 - cal_g[a]) + (1 - cal_q[a]) * cal_g[a]
        rows.append(
            f'<tr class="{"" if ok[a] else "unreliable"}"><td>{html.escape(words(n).present)} <span class="muted">'
            f'{html.escape(n)}</span></td><td>{100 * cal_q[a]:.0f}</td><td>{100 * cal_g[a]:.0f}</td>'
            f'<td>{100 * p_diff:.0f}</td><td>{100 * r.exact_parts[a] / max(r.distance, 1e-12):.1f}</td>'
            f'<td>{r.attribute_error_eq32[a]:+.3f}</td><td>{"" if score is None else f"{100 * score:.0f}"}</td>'
            f'<td>{"" if rel[a] is None else f"{100 * rel[a]:.0f}"}</td>'
            f'<td>{100 * e.query_probabilities[a]:.0f} / {100 * r.probabilities[a]:.0f}</td></tr>')
    return ('<table><tr><th>attribute</th><th>query %</th><th>result %</th><th>P(differ) %</th>'
            '<th>share of distance %</th><th>attribute error (as published)</th><th>matching score %</th>'
            '<th>reliability %</th><th>raw probabilities %</th></tr>' + "".join(rows) + "</table>")


def _fused_html(r: ResultExplanation, top: int = 4) -> str:
    """With a fusion: the ranking distance as the model's part plus the attributes' parts, the
    largest named (docs/METHODS.md#attribute-fusion)."""
    if r.fused is None:
        return ""
    parts = sorted(r.fused.attributes.items(), key=lambda kv: -kv[1])
    named = ", ".join(f"{html.escape(words(n).present)} {v:.4f}" for n, v in parts[:top])
    more = f", {len(parts) - top} more" if len(parts) > top else ""
    return (f'<p class="muted fused">fused distance {r.distance:.3f} = model {r.fused.model:.3f} + attributes '
            f'{sum(r.fused.attributes.values()):.4f}' + (f" ({named}{more})" if named else "") + "</p>")


def _result_card(e: RankingExplanation, r: ResultExplanation, gallery_paths: dict[str, str | Path | np.ndarray],
                 maps: list[MapPicture], interpreted=None) -> str:
    esc = html.escape
    names = e.attribute_names
    cls = "" if r.is_match is None else ("match" if r.is_match else "nomatch")
    label = ""
    if r.identical_to_query:
        label = '<span class="label same">identical to the query image</span>'
    elif r.is_match is not None:
        label = f'<span class="label {cls}">{"same person (known)" if r.is_match else "different person (known)"}</span>'
    line = (result_line(r.summary, names, e.query_calibrated, r.calibrated) if r.summary is not None
            else "No attribute summary for this result.")
    slices = composition(r.exact_parts, r.exact_residual, names)
    model_distance = r.fused.model if r.fused is not None else r.distance  # what the exact parts split
    legend = "".join(f'<div class="legend"><span style="background:{c}"></span>{esc(lbl)} '
                     f'{100 * v / max(model_distance, 1e-12):.0f} %</div>' for lbl, v, c in slices)
    moved = f' · was rank {r.original_rank} before filtering' if r.original_rank != r.rank else ""
    flt = f' · breaks {r.filter_violations} filter condition(s)' if r.filter_violations else ""
    own = [p for p in maps if p.saliency.image == r.key or p.saliency.pair == r.key]
    first = ("pair-sum", "occlusion-pair")  # shown on the card; the rest fold away in the details
    summary_maps = [p for p in own if p.saliency.kind in first]
    detail_maps = [p for p in own if p.saliency.kind not in first and p.saliency.kind != "interpreter"]
    maps_html = (f'<div class="maps">{_map_cells(summary_maps, 140)}</div>' if summary_maps else "")
    if interpreted is not None:  # the distilled interpreter's parts and maps (xreid explain --interpreter)

        maps_html += interpreter_block(interpreted, [p for p in own if p.saliency.kind == "interpreter"])
    return f"""<div class="card {cls}"><img class="person" src="{image_data_uri(gallery_paths.get(r.key), 160)}" alt="result {r.rank}">
<div class="main"><div class="head"><span class="rank">#{r.rank}</span><span class="dist">distance {r.distance:.3f}</span>
{label}<span class="muted">{esc(r.key)}{moved}{flt}</span></div>
<p class="line">{esc(line)}</p>{_fused_html(r)}
<div title="share of the distance per attribute; grey: not explained by attributes">{bar_svg(slices)}
<span class="muted"> attributes explain {100 * r.explained_share:.0f} % of this distance</span></div>
{maps_html}
<details><summary>Details: every attribute, the distance composition, all maps</summary>
<div style="display:flex;gap:10px;align-items:flex-start">{pie_svg([v for _, v, _ in slices], [c for _, _, c in slices])}<div>{legend}</div></div>
{_details_table(e, r)}<div class="maps">{_map_cells(detail_maps, 120)}</div></details></div></div>"""


def render_report(e: RankingExplanation, query_path: str | Path | np.ndarray,
                  gallery_paths: dict[str, str | Path | np.ndarray | None],
                  maps: list[MapPicture] | None = None, skipped: list[str] | None = None,
                  notes: list[str] | None = None, interpretation=None) -> str:
    """The HTML page for one explained ranking: a query card, then one card per result with its
    plain-words line; every number folds open underneath. The query and the results' pictures are
    image files or images already decoded (H x W x 3 RGB). ``skipped`` lists the files that could not
    be used, ``notes`` any other remark the reader must see. One self-contained offline file."""
    esc = html.escape
    maps = maps or []
    qmaps = _map_cells([p for p in maps if p.saliency.image == QUERY and p.saliency.pair is None], 140)
    remarks = "".join(f'<div class="verdict warn">{esc(n)}</div>' for n in notes or [])
    flt = (f'<p>Attribute filter ({esc(e.filter_mode)}): '
           + ", ".join(f"{esc(words(k).present if v else words(k).absent)}" for k, v in e.filter.items())
           + "</p>") if e.filter else ""
    skipped_html = ""
    if skipped:
        items = "".join(f"<li>{esc(s)}</li>" for s in skipped)
        skipped_html = f"<h2>Files that could not be used ({len(skipped)})</h2><ul>{items}</ul>"
    interpreted = {p.key: p for p in interpretation.pairs} if interpretation is not None else {}
    cards = "".join(_result_card(e, r, gallery_paths, maps, interpreted.get(r.key)) for r in e.results)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>xreid explanation: {esc(e.query)}</title>
<style>{CSS}</style></head><body>
<h1>Why these results?</h1>
<div class="sub">Model {esc(e.model)} · gallery of {e.gallery_size} images · {esc(e.distance)} · top {len(e.results)}</div>
<div class="card querycard"><img class="person" src="{image_data_uri(query_path, 192)}" alt="query">
<div class="main"><div class="head"><span class="rank">Query</span><span class="muted">{esc(e.query)}</span></div>
<div class="verdict {'ok' if e.reliable else 'warn'}">{esc(e.reliability)}</div>
<div class="chips">{_chips_html(e) or '<span class="muted">no attribute the model is sure of</span>'}</div>
{_unreliable_html(e)}{flt}{remarks}<div class="maps">{qmaps}</div></div></div>
<p>{esc(explained_sentence([r.explained_share for r in e.results]))}</p>
{cards}{skipped_html}</body></html>"""
