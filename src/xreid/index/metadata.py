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
from pathlib import Path

from xreid.data.times import format_time, parse_time  # noqa: F401  (the index reads and writes times)

#: the columns every index has, beside its string fields (named as the list reader names them)
from xreid.data.lists import CAMERA, PID, RESERVED, TIME, check_column_name, read_list  # noqa: F401


@dataclass
class Entry:
    """One image to index: its key (path relative to the data root) and its metadata (``camera``,
    ``pid`` and other fields as strings, ``time`` as seconds or NaN)."""

    key: str
    fields: dict[str, str] = field(default_factory=dict)
    time: float = math.nan


def fields_from_name(key: str) -> dict[str, str]:
    """Camera and person id a file name states under a registered dataset's convention
    (``xreid.data.registry.parse_name``: ``VIPeR/archive/001_45_1.jpg`` -> camera ``VIPeR/1``, pid
    ``VIPeR/001``; ``0002_c1s1_000451_03.jpg`` -> camera ``market/1``, pid ``market/0002``); {} when no
    convention applies (folder names are never read)."""
    from xreid.data.registry import parse_name

    found = parse_name(key) if key else None
    return {} if found is None else {CAMERA: found[1], PID: found[0]}


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
