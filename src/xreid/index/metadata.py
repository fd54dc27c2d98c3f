"""What a gallery index knows about each image besides its embedding: camera, time, person id and
any other column of a CSV list, kept as searchable string fields.

Sources, in order: a CSV list with a header row (``path`` column required; ``camera`` / ``cam`` and
``time`` / ``timestamp`` recognised, every other column kept as a string field), else the file name
when it follows the Market-1501 or PETA re-id convention (camera, and the person id as the known
identity field ``pid``: see ``xreid.data.pids``), else nothing.

Times are stored as seconds since 1970-01-01 UTC (float; NaN = unknown). A CSV time is ISO 8601
(``2024-05-01T12:30:00``, with or without an offset; without one it is taken as UTC) or a number of
seconds. Cameras are strings (``"3"``, or ``"market/3"`` for a Market-1501 file name, namespaced like
the rest of xreid so two data sets' camera 1 stay apart); a camera filter ``"3"`` matches both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

#: the columns every index has, beside its string fields (named as the list reader names them)
from xreid.data.lists import CAMERA, PID, RESERVED, TIME, check_column_name, read_list  # noqa: F401


@dataclass
class Entry:
    """One image to index: its key (path relative to the data root) and its metadata (``camera``,
    ``pid`` and other fields as strings, ``time`` as seconds or NaN)."""

    key: str
    fields: dict[str, str] = field(default_factory=dict)
    time: float = math.nan


def parse_time(value: str | float | int | datetime) -> float:
    """Seconds since 1970-01-01 UTC of an ISO 8601 string (no offset = UTC), a number of seconds
    (as a number or a string) or a datetime. Raises ValueError saying what was expected."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"time {value!r} is not a finite number of seconds")
        return float(value)
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(f"time {text!r} is neither ISO 8601 (e.g. 2024-05-01T12:30:00) nor a number of "
                         f"seconds") from None
    return parse_time(dt)


def format_time(seconds: float) -> str | None:
    """ISO 8601 (UTC) of a stored time, None when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def fields_from_name(key: str) -> dict[str, str]:
    """Camera and person id a file name states: PETA re-id subsets (``VIPeR/archive/001_45_1.jpg`` ->
    camera ``VIPeR/1``, pid ``VIPeR/001``) and Market-1501 (``0002_c1s1_000451_03.jpg`` -> camera
    ``market/1``, pid ``market/0002``); {} when no convention applies (folder names are never read)."""
    from xreid.data.market import parse_market_name
    from xreid.data.peta import REID_SUBSETS, parse_reid_name

    parts = PurePosixPath(key.replace("\\", "/")).parts
    if not parts:
        return {}
    try:
        subset = next((p for p in parts[:-1] if p in REID_SUBSETS), None)
        pid, cam = parse_reid_name(subset, parts[-1]) if subset else parse_market_name(parts[-1])
    except ValueError:
        return {}
    return {CAMERA: cam, PID: pid}


def read_gallery_csv(path: str | Path) -> tuple[list[Entry], list[str]]:
    """The entries of a gallery CSV and its string-field column names (camera and pid included when
    present), read by the one list reader (``xreid.data.lists``: header row with a ``path`` column
    required, paths inside the data root). A time that does not parse is a ValueError naming the file
    and line."""
    rows, roles = read_list(path)
    entries = []
    for row in rows:
        entry = Entry(row.key)
        for role, cell in row.cells.items():
            if role == TIME:
                try:
                    entry.time = parse_time(cell)
                except ValueError as exc:
                    raise ValueError(f"{path}:{row.line}: {exc}") from None
            else:
                entry.fields[role] = cell
        entries.append(entry)
    return entries, [r for r in roles if r != TIME]
