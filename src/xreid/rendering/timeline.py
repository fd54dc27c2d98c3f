"""The timeline of sightings (``xreid.index.sightings.timeline``): one lane per camera, one bar per
sighting from its first to its last frame; as inline SVG (search page, HTML report, each bar a link
to its sighting), as an HTML page with the data as JSON, and as a PNG for printing (matplotlib)."""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

from xreid.io import atomic_write
from xreid.rendering.charts import PALETTE


def _label(t: float, relative: bool) -> str:
    if relative:
        return f"{t:.0f} s"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S")


def _span(data: dict) -> tuple[float, float]:
    items = data["items"]
    t0 = min(i["start"] for i in items)
    t1 = max(i["end"] for i in items)
    return t0, max(t1, t0 + 1.0)


def timeline_svg(data: dict, width: int = 720, lane_height: int = 28, link: str | None = "#sighting-{id}") -> str:
    """Inline SVG; ``link`` (with ``{id}``) makes each bar a link (None: plain bars)."""
    if not data["items"]:
        return '<p class="timeline-empty">No sightings to place on a timeline.</p>'
    left, top, row_height = 110, 18, 14
    t0, t1 = _span(data)
    scale = (width - left - 10) / (t1 - t0)
    rows = data.get("rows", {})
    lane_top, y = {}, top
    for lane in data["lanes"]:
        lane_top[lane] = y
        y += max(lane_height, row_height * rows.get(lane, 1) + 8)
    height = y + 24
    out = [f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">']
    for k, lane in enumerate(data["lanes"]):
        h = max(lane_height, row_height * rows.get(lane, 1) + 8) - 4
        out.append(f'<rect x="{left}" y="{lane_top[lane]}" width="{width - left - 10}" height="{h}" fill="#f3f3f3"/>')
        out.append(f'<text x="{left - 6}" y="{lane_top[lane] + h / 2 + 4}" text-anchor="end">{html.escape(lane)}</text>')
    for item in data["items"]:
        k = data["lanes"].index(item["camera"])
        x = left + (item["start"] - t0) * scale
        w = max(3.0, (item["end"] - item["start"]) * scale)
        y = lane_top[item["camera"]] + 4 + row_height * item.get("row", 0)
        colour = PALETTE[k % len(PALETTE)]
        title = (f"sighting {item['id']}: {html.escape(str(item['camera']))}, {_label(item['start'], data['relative'])}"
                 f" - {_label(item['end'], data['relative'])}")
        bar = (f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_height - 4}" rx="3" fill="{colour}">'
               f'<title>{title}</title></rect>')
        out.append(f'<a href="{html.escape(link.format(id=item["id"]))}">{bar}</a>' if link else bar)
    for k in range(5):
        t = t0 + (t1 - t0) * k / 4
        x = left + (t - t0) * scale
        out.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" fill="#555">'
                   f'{_label(t, data["relative"])}</text>')
    out.append("</svg>")
    return "".join(out)


def timeline_png(data: dict, path: str | Path, title: str = "Sightings") -> None:
    """The timeline as a PNG (for printing), written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes = data["lanes"] or ["-"]
    rows = data.get("rows", {})
    base, y = {}, 0
    for lane in lanes:  # lanes top to bottom, each as many rows high as it needs
        base[lane] = y
        y += rows.get(lane, 1) + 0.5
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.22 * y), dpi=150)
    for item in data["items"]:
        k = lanes.index(item["camera"])
        row = base[item["camera"]] + item.get("row", 0)
        ax.barh(row, max(item["end"] - item["start"], 0.2), left=item["start"], height=0.8,
                color=PALETTE[k % len(PALETTE)])
        ax.text(item["end"], row, f" {item['id']}", fontsize=6, va="center")
    ax.set_yticks([base[lane] + (rows.get(lane, 1) - 1) / 2 for lane in lanes], lanes)
    ax.set_ylim(y - 0.5, -0.8)
    if data["items"]:
        t0, t1 = _span(data)
        ticks = [t0 + (t1 - t0) * k / 4 for k in range(5)]
        ax.set_xticks(ticks, [_label(t, data["relative"]) for t in ticks])
    ax.set_xlabel("seconds into the video" if data["relative"] else "time (UTC)")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def timeline_html(data: dict, title: str = "Sightings") -> str:
    """A standalone page: the SVG timeline, a table of the sightings and the data as JSON."""
    rows = "".join(f'<tr id="sighting-{i["id"]}"><td>{i["id"]}</td><td>{html.escape(str(i["camera"]))}</td>'
                   f'<td>{_label(i["start"], data["relative"])}</td><td>{_label(i["end"], data["relative"])}</td></tr>'
                   for i in data["items"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>{timeline_svg(data)}"
            f"<table><tr><th>sighting</th><th>camera</th><th>from</th><th>to</th></tr>{rows}</table>"
            f"<script type='application/json' id='timeline-data'>{html.escape(json.dumps(data))}</script>"
            f"</body></html>")
