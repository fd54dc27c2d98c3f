"""The timeline of sightings (``xreid.index.sightings.timeline``): one lane per camera, one bar per
sighting from its first to its last frame; as inline SVG (search page, HTML report, each bar a link
to its sighting), as an HTML page with the data as JSON, and as a PNG for printing (matplotlib)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from markupsafe import Markup

from xreid.io import atomic_write
from xreid.rendering.charts import PALETTE
from xreid.rendering.templating import render


def _label(t: float, relative: bool) -> str:
    if relative:
        return f"{t:.0f} s"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S")


def _span(data: dict) -> tuple[float, float]:
    items = data["items"]
    t0 = min(i["start"] for i in items)
    t1 = max(i["end"] for i in items)
    return t0, max(t1, t0 + 1.0)


def timeline_svg(data: dict, width: int = 720, lane_height: int = 28, link: str | None = "#sighting-{id}") -> Markup:
    """Inline SVG (template ``timeline.svg.j2``); ``link`` (with ``{id}``) makes each bar a link (None:
    plain bars)."""
    if not data["items"]:
        return render("timeline.svg.j2", bars=[])
    left, top, row_height = 110, 18, 14
    t0, t1 = _span(data)
    scale = (width - left - 10) / (t1 - t0)
    rows = data.get("rows", {})
    lane_top, y = {}, top
    for lane in data["lanes"]:
        lane_top[lane] = y
        y += max(lane_height, row_height * rows.get(lane, 1) + 8)
    height = y + 24
    lanes = []
    for lane in data["lanes"]:
        h = max(lane_height, row_height * rows.get(lane, 1) + 8) - 4
        lanes.append({"name": lane, "top": lane_top[lane], "width": width - left - 10, "height": h,
                      "label_y": lane_top[lane] + h / 2 + 4})
    bars = []
    for item in data["items"]:
        k = data["lanes"].index(item["camera"])
        bars.append({"x": f"{left + (item['start'] - t0) * scale:.1f}",
                     "y": lane_top[item["camera"]] + 4 + row_height * item.get("row", 0),
                     "w": f"{max(3.0, (item['end'] - item['start']) * scale):.1f}", "height": row_height - 4,
                     "colour": PALETTE[k % len(PALETTE)],
                     "title": f"sighting {item['id']}: {item['camera']}, {_label(item['start'], data['relative'])}"
                              f" - {_label(item['end'], data['relative'])}",
                     "href": link.format(id=item["id"]) if link else None})
    ticks = []
    for k in range(5):
        t = t0 + (t1 - t0) * k / 4
        ticks.append({"x": f"{left + (t - t0) * scale:.1f}", "label": _label(t, data["relative"])})
    return render("timeline.svg.j2", width=width, height=height, left=left, lanes=lanes, bars=bars, ticks=ticks)


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
    rows = [{"id": i["id"], "camera": i["camera"], "start": _label(i["start"], data["relative"]),
             "end": _label(i["end"], data["relative"])} for i in data["items"]]
    return str(render("timeline.html.j2", section=False, title=title, svg=timeline_svg(data), rows=rows,
                      data=data))


def timeline_section(data: dict) -> Markup:
    """The timeline as a section of the HTML report (plain bars, no links)."""
    return render("timeline.html.j2", section=True, svg=timeline_svg(data, link=None))
