"""The timeline of sightings (``xreid.index.sightings.timeline``): one lane per camera, one bar per
sighting from its first to its last frame; as inline SVG (search page, HTML report, each bar a link
to its sighting), as an HTML page with the data as JSON, and as a PNG for printing (matplotlib)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

from markupsafe import Markup

from xreid.io import atomic_write
from xreid.rendering.charts import PALETTE
from xreid.rendering.templating import render


def _label(t: float, relative: bool) -> str:
    if relative:
        return f"{t:.0f} s"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


#: tick steps (seconds) a timeline may use: round numbers of seconds, minutes, hours and days
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
              86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400)


def tick_step(span: float, most: int = 7) -> float:
    """The smallest step of ``TICK_STEPS`` that puts at most ``most`` ticks on ``span`` seconds."""
    for step in TICK_STEPS:
        if span / step <= most - 1:
            return step
    return span / (most - 1)


def _clock(seconds: float, tenths: bool) -> str:
    """An offset as H:MM:SS (M:SS under an hour; 'N d H:MM:SS' past a day), with tenths of a second."""
    total = round(seconds * 10)
    days, rest = divmod(total, 864000)
    h, rest = divmod(rest, 36000)
    m, rest = divmod(rest, 600)
    sec = f"{rest / 10:04.1f}" if tenths else f"{rest // 10:02d}"
    text = f"{h}:{m:02d}:{sec}" if h or days else f"{m}:{sec}"
    return f"{days} d {text}" if days else text


def time_ticks(t0: float, t1: float, relative: bool, most: int = 7) -> list[tuple[float, str]]:
    """Ticks for a time axis from ``t0`` to ``t1`` (seconds; since the epoch, UTC, unless
    ``relative``: offsets into a video): at multiples of a round step (``tick_step``) and labelled
    to the resolution that step needs, so that no two labels are the same, from a few seconds to
    weeks. Absolute times carry the date when the span covers more than one day."""
    span = max(t1 - t0, 1e-9)
    step = tick_step(span, most)
    k0, k1 = math.ceil(t0 / step - 1e-9), math.floor(t1 / step + 1e-9)
    ticks = [round(k * step, 1) for k in range(k0, k1 + 1)] or [t0]
    if relative:
        if span < 60:
            return [(t, f"{t:.1f} s" if step < 1 else f"{t:.0f} s") for t in ticks]
        return [(t, _clock(t, step < 1)) for t in ticks]
    when = [datetime.fromtimestamp(math.floor(t), timezone.utc) for t in ticks]
    if step >= 86400:
        fmt = "%Y-%m-%d"
    else:
        clock = "%H:%M" if step >= 60 else "%H:%M:%S"
        dated = when[0].date() != datetime.fromtimestamp(t1, timezone.utc).date()
        fmt = f"%m-%d {clock}" if dated else clock
    labels = [w.strftime(fmt) + (f".{round(t * 10) % 10}" if step < 1 else "") for w, t in zip(when, ticks)]
    return list(zip(ticks, labels))


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
    ticks = [{"x": f"{left + (t - t0) * scale:.1f}", "label": label}
             for t, label in time_ticks(t0, t1, data["relative"])]
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
        ticks = time_ticks(t0, t1, data["relative"])
        ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
        ax.set_xlim(t0 - 0.02 * (t1 - t0), t1 + 0.02 * (t1 - t0))
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
