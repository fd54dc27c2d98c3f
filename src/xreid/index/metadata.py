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

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from xreid.data.times import format_time, parse_time  # noqa: F401  (the index reads and writes times)

#: the columns every index has, beside its string fields
CAMERA, TIME, PID = "camera", "time", "pid"
#: CSV header names read as the camera / time columns (case-insensitive)
CAMERA_ALIASES, TIME_ALIASES = ("camera", "cam"), ("time", "timestamp")
#: names no CSV column may take (they name other things in a search result)
RESERVED = ("id", "distance", "attributes", "key")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


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


def check_column_name(name: str, where: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{where}: column name {name!r} must start with a letter and hold only letters, "
                         f"digits, '_', '.' or '-'")
    if name.lower() in RESERVED:
        raise ValueError(f"{where}: column name {name!r} is reserved ({', '.join(RESERVED)} name other things)")


def read_gallery_csv(path: str | Path) -> tuple[list[Entry], list[str]]:
    """The entries of a gallery CSV and its string-field column names (camera and pid included when
    present). The header row is required and must have a ``path`` column; blank lines are skipped.
    A missing ``path`` column, a row with more cells than the header, an empty path, a path listed
    twice or a time that does not parse is a ValueError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: list file not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        header = next((r for r in rows if any(c.strip() for c in r)), None)
        if header is None:
            raise ValueError(f"{path}: empty list file (a header row with a 'path' column is required)")
        header_line = rows.line_num
        names = [c.strip() for c in header]
        lower = [n.lower() for n in names]
        if "path" not in lower:
            raise ValueError(f"{path}:{header_line}: header row has no 'path' column (got: {', '.join(names)}); "
                             f"the first row must name the columns, e.g. path,camera,time")
        roles: list[str] = []
        for n, low in zip(names, lower):
            if not n:
                raise ValueError(f"{path}:{header_line}: a header cell is empty")
            role = ("path" if low == "path" else CAMERA if low in CAMERA_ALIASES else TIME if low in TIME_ALIASES
                    else n)
            if role not in ("path", CAMERA, TIME):
                check_column_name(n, f"{path}:{header_line}")
            if role in roles:
                raise ValueError(f"{path}:{header_line}: column {n!r} appears twice (or with an alias of it)")
            roles.append(role)
        entries: list[Entry] = []
        seen: dict[str, int] = {}
        for row in rows:
            line = rows.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) > len(roles):
                raise ValueError(f"{path}:{line}: {len(row)} cells but the header names {len(roles)} columns")
            entry = Entry("")
            for role, cell in zip(roles, row):
                cell = cell.strip()
                if role == "path":
                    entry.key = cell.replace("\\", "/")
                elif role == TIME:
                    if cell:
                        try:
                            entry.time = parse_time(cell)
                        except ValueError as exc:
                            raise ValueError(f"{path}:{line}: {exc}") from None
                elif cell:
                    entry.fields[role] = cell
            if not entry.key:
                raise ValueError(f"{path}:{line}: empty path")
            if entry.key in seen:
                raise ValueError(f"{path}:{line}: {entry.key} is listed twice (first on line {seen[entry.key]})")
            seen[entry.key] = line
            entries.append(entry)
    if not entries:
        raise ValueError(f"{path}: no image paths listed")
    return entries, [r for r in roles if r not in ("path", TIME)]
