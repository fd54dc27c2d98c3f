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
