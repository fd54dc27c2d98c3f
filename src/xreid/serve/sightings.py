"""What the search service shows of sightings (rows made from footage): the sighting's detail (crops
with their measures, frame and time span), its key frame, its crops and the timeline of a set of
rows. Functions of a ``CaseSession``; the routes are in ``xreid.serve.app``."""

from __future__ import annotations

from xreid.index.sightings import is_sighting_key, sighting_details, sighting_folder, timeline
from xreid.serve.case import Problem


def _row(session, item: int) -> dict:
    index = session.index
    if not 0 <= item < len(index):
        raise Problem(404, f"no gallery item {item}")
    row = index.row(item, attributes=False)
    if not is_sighting_key(row["path"]):
        raise Problem(404, f"gallery item {item} is an image, not a sighting of footage")
    return row


def sighting(session, item: int) -> dict:
    return sighting_details(session.case, _row(session, item))


def sighting_file(session, item: int, name: str) -> bytes:
    """``keyframe.jpg`` or ``crop-K.jpg`` of sighting ``item``."""
    path = sighting_folder(session.case, _row(session, item)["path"]) / name
    if not path.is_file():
        raise Problem(404, f"sighting {item} has no {name}")
    return path.read_bytes()


def timeline_of(session, items: list[int] | None) -> dict:
    index = session.index
    chosen = range(len(index)) if items is None else items
    for i in chosen:
        if not 0 <= i < len(index):
            raise Problem(404, f"no gallery item {i}")
    return timeline([index.row(int(i), attributes=False) for i in chosen])


def timeline_png_bytes(data: dict) -> bytes:
    import tempfile
    from pathlib import Path

    from xreid.rendering.timeline import timeline_png

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "timeline.png"
        timeline_png(data, path)
        return path.read_bytes()


def box_upload(session, item: int, box: list[float]) -> dict:
    """A query from a box drawn on sighting ``item``'s frame (``x0, y0, x1, y1`` in the frame's pixels):
    the crop becomes an upload, as if the analyst had uploaded it."""
    import numpy as np

    from xreid.data.images import decode_image
    from xreid.serve.case import _jpeg

    data = sighting_file(session, item, "frame.jpg")
    frame, _ = decode_image(data, "frame.jpg")
    h, w = frame.shape[:2]
    if len(box) != 4:
        raise Problem(400, f"box must be [x0, y0, x1, y1], got {len(box)} numbers")
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, x1 = sorted((max(0, min(w, x0)), max(0, min(w, x1))))
    y0, y1 = sorted((max(0, min(h, y0)), max(0, min(h, y1))))
    if x1 - x0 < 8 or y1 - y0 < 16:
        raise Problem(400, f"box {box} is too small in the {w} x {h} frame (at least 8 x 16 pixels)")
    crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
    return session.upload(_jpeg(crop), f"box on sighting {item}")
