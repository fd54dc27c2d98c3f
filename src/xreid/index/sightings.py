"""Sightings in a gallery index: rows made from footage (``xreid index build --video``), whose images
live in the case folder rather than under the data root, and the timeline of a set of them.

A sighting row's key is ``sightings/VIDEO_ID/SSSSS/crop-0.jpg`` (its best crop, relative to the case)
and its string fields say ``kind=sighting``, the camera, video, frame span and time offsets
(``xreid.workflows.footage``). Beside the key crop the folder holds ``crop-K.jpg`` (the best crops,
best first), ``crops.json`` (frame, box and quality measures of each) and ``keyframe.jpg`` (the
frame of the best crop with its box drawn) and ``frame.jpg`` (that frame, clean and full size: a query
box may be drawn on it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath

SIGHTINGS = "sightings"
SIGHTING_PREFIX = SIGHTINGS + "/"
#: per video, what the build keeps to resume and export (``xreid.workflows.footage``)
FOOTAGE = "footage"
#: per video, the sizes and SHA-256 of its files once its sightings are committed
FILES = "files.json"


def is_sighting_key(key: str) -> bool:
    return str(key).startswith(SIGHTING_PREFIX)


def sighting_folder(case: str | Path, key: str) -> Path:
    return Path(case) / PurePosixPath(key).parent


def video_files(case: str | Path, video_id: str) -> list[Path]:
    """The files a finished video left in the case, but ``video.json`` and ``files.json`` (written
    after them): its chunk files and ``tracks.npz``, and every file of its sightings."""
    case = Path(case)
    folder = case / FOOTAGE / video_id
    files = sorted(folder.glob("chunk-*.npz")) + ([folder / "tracks.npz"] if (folder / "tracks.npz").is_file() else [])
    return files + sorted(p for p in (case / SIGHTINGS / video_id).rglob("*") if p.is_file())


def footage_checks(case: str | Path, video_id: str) -> dict[str, dict]:
    """Size and SHA-256 of each of ``video_files``, by path relative to the case (``files.json``)."""
    from xreid.index.integrity import file_check

    case = Path(case)
    return {p.relative_to(case).as_posix(): file_check(p.read_bytes()) for p in video_files(case, video_id)}


def check_footage(case: str | Path) -> tuple[dict[str, str], int, int]:
    """Verify the footage files of every video in the case: those ``files.json`` lists against their
    checksums (and it must list every file a finished video has), the others for structure. Returns
    (damaged file relative to the case -> problem, files verified, files without a checksum)."""
    import json

    from xreid.index.integrity import DamagedFile, check_structure, read_checked

    case = Path(case)
    damaged: dict[str, str] = {}
    verified = unchecked = 0
    for folder in sorted(p for p in (case / FOOTAGE).glob("*") if p.is_dir()):
        listing: dict = {}
        if (folder / FILES).is_file():
            try:
                listing = json.loads((folder / FILES).read_text())
            except (OSError, ValueError) as exc:
                damaged[(folder / FILES).relative_to(case).as_posix()] = f"unreadable ({exc})"
        for path in [folder / "video.json"] + video_files(case, folder.name):
            rel = path.relative_to(case).as_posix()
            verified += 1
            unchecked += rel not in listing and path.name != "video.json"  # the record itself, as a manifest
            try:
                if rel in listing:
                    read_checked(path, listing[rel])
                else:
                    check_structure(path)
            except DamagedFile as exc:
                damaged[rel] = exc.problem
        for rel, check in listing.items():  # listed but gone
            if not (case / rel).exists():
                verified += 1
                damaged[rel] = "missing"
    return damaged, verified, unchecked


def crop_paths(folder: Path) -> list[Path]:
    """The ``crop-K.jpg`` files of a sighting's folder, in the order of K (best first)."""
    found = []
    for p in Path(folder).glob("crop-*.jpg"):
        k = p.stem[len("crop-"):]
        if k.isdigit():
            found.append((int(k), p))
    return [p for _, p in sorted(found)]


def sighting_details(case: str | Path, row: dict) -> dict:
    """A sighting row's extra detail: its crops (file names and measures), key frame, frame and time span."""
    if not is_sighting_key(row.get("path", "")):
        raise ValueError(f"row {row.get('id')} ({row.get('path')}) is not a sighting")
    folder = sighting_folder(case, row["path"])
    try:
        crops = json.loads((folder / "crops.json").read_text())
    except (OSError, ValueError):
        crops = []
    for k, c in enumerate(crops):
        c["file"] = f"crop-{k}.jpg"
    return {"id": row.get("id"), "camera": row.get("camera"), "video": row.get("video"),
            "start": row.get("time"), "end": row.get("end") or None,
            "frames": [int(row.get("frame_start", 0)), int(row.get("frame_end", 0))],
            "offsets": [float(row.get("offset_start", "nan")), float(row.get("offset_end", "nan"))],
            "crops": crops, "keyframe": (folder / "keyframe.jpg").is_file(), "frame": (folder / "frame.jpg").is_file(),
            "frame_number": crops[0]["frame"] if crops else None}


def timeline(rows: list[dict]) -> dict:
    """The timeline of sighting rows: one lane per camera (sorted), each sighting a bar from its
    start to its end. Times are ISO 8601 where the footage's start is known; else the bars use the
    offsets within their video (``"relative": true``)."""
    from xreid.index.metadata import parse_time

    items = []
    relative = any(not r.get("time") for r in rows)
    for r in rows:
        if not is_sighting_key(r.get("path", "")):
            continue
        o0, o1 = float(r.get("offset_start", "nan")), float(r.get("offset_end", "nan"))
        if relative:
            t0, t1 = o0, o1
        else:
            t0 = parse_time(r["time"])
            t1 = parse_time(r["end"]) if r.get("end") else t0 + (o1 - o0)
        if math.isnan(t0):
            continue
        items.append({"id": r.get("id"), "camera": r.get("camera") or "?", "video": r.get("video"),
                      "start": t0, "end": max(t1, t0), "probability": r.get("probability")})
    lanes = sorted({i["camera"] for i in items})
    items.sort(key=lambda i: (i["camera"], i["start"], i["end"]))
    rows = {lane: pack_rows([i for i in items if i["camera"] == lane]) for lane in lanes}
    return {"relative": relative, "lanes": lanes, "rows": rows, "items": items}


def pack_rows(items: list[dict]) -> int:
    """Give each item (sorted by start) a ``row`` within its lane so that items on one row do not
    overlap in time (greedy: the first row free at its start); returns the number of rows."""
    ends: list[float] = []
    for item in items:
        row = next((k for k, end in enumerate(ends) if end < item["start"]), len(ends))
        if row == len(ends):
            ends.append(item["end"])
        else:
            ends[row] = item["end"]
        item["row"] = row
    return max(1, len(ends))
