"""The one reader of image lists (CSV with a header row), used by ``xreid index build/add --list``,
``xreid embed --list`` and ``xreid explain --gallery X.csv``.

The first non-blank row names the columns, by name and in any order (case-insensitive):

- ``path`` (required): the image file, relative to the data root, ``/`` or ``\\`` separated. A path
  that is absolute (``/x``, ``C:\\x``, ``\\\\server\\x``) or climbs out of the data root (a ``..``
  component) is refused, naming the file and line: what a list names is always inside the root.
- ``camera`` / ``cam``, ``time`` / ``timestamp``, ``pid`` / ``person_id`` (the person's identity);
- any other column: a string field, its name a letter then letters, digits, ``_ . -``.

Blank lines and lines starting with ``#`` are skipped. A missing ``path`` column, a row with more cells than the header, an empty
or unsafe path, or a path listed twice is a ValueError naming the file and line. Cells are returned
as text (``ListRow.cells``: role -> text); what a role means (parsing times, say) is the caller's.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

CAMERA, TIME, PID = "camera", "time", "pid"
#: header names read as the known columns (case-insensitive)
CAMERA_ALIASES, TIME_ALIASES, PID_ALIASES = ("camera", "cam"), ("time", "timestamp"), ("pid", "person_id")
#: names no column may take (they name other things in a search result)
RESERVED = ("id", "distance", "attributes", "key")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
FORMAT_HELP = ("a CSV with a header row naming its columns: 'path' (relative to the data root) and optionally "
               "camera (or cam), time (or timestamp), pid (or person_id) and other fields")


@dataclass
class ListRow:
    key: str  # the path, relative to the data root, '/'-separated
    line: int
    cells: dict[str, str] = field(default_factory=dict)  # role (camera, time, pid, other column) -> text


def check_column_name(name: str, where: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{where}: column name {name!r} must start with a letter and hold only letters, "
                         f"digits, '_', '.' or '-'")
    if name.lower() in RESERVED:
        raise ValueError(f"{where}: column name {name!r} is reserved ({', '.join(RESERVED)} name other things)")


def safe_key(path: str) -> str | None:
    """``path`` as a key relative to the data root ('/'-separated, '.' parts removed), or None when it
    is absolute or climbs out of the root."""
    text = path.replace("\\", "/")
    if text.startswith("/") or PureWindowsPath(path).drive or PureWindowsPath(path).root:
        return None
    parts = [p for p in PurePosixPath(text).parts if p != "."]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _role(name: str) -> str:
    low = name.lower()
    if low == "path":
        return "path"
    for role, aliases in ((CAMERA, CAMERA_ALIASES), (TIME, TIME_ALIASES), (PID, PID_ALIASES)):
        if low in aliases:
            return role
    return name


def read_list(path: str | Path) -> tuple[list[ListRow], list[str]]:
    """The rows of a list file and its column roles other than path, in header order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: list file not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        header = next((r for r in rows if any(c.strip() for c in r)), None)
        if header is None:
            raise ValueError(f"{path}: empty list file ({FORMAT_HELP} is required)")
        header_line = rows.line_num
        names = [c.strip() for c in header]
        if "path" not in [n.lower() for n in names]:
            raise ValueError(f"{path}:{header_line}: header row has no 'path' column (got: {', '.join(names)}); "
                             f"the first row must name the columns, e.g. path,camera,time ({FORMAT_HELP})")
        roles: list[str] = []
        for n in names:
            if not n:
                raise ValueError(f"{path}:{header_line}: a header cell is empty")
            role = _role(n)
            if role not in ("path", CAMERA, TIME, PID):
                check_column_name(n, f"{path}:{header_line}")
            if role in roles:
                raise ValueError(f"{path}:{header_line}: column {n!r} appears twice (or with an alias of it)")
            roles.append(role)
        out: list[ListRow] = []
        seen: dict[str, int] = {}
        for row in rows:
            line = rows.line_num
            if not any(c.strip() for c in row) or row[0].strip().startswith("#"):  # blank or a comment
                continue
            if len(row) > len(roles):
                raise ValueError(f"{path}:{line}: {len(row)} cells but the header names {len(roles)} columns")
            item = ListRow("", line)
            for role, cell in zip(roles, row):
                cell = cell.strip()
                if role == "path":
                    if not cell:
                        raise ValueError(f"{path}:{line}: empty path")
                    key = safe_key(cell)
                    if key is None:
                        raise ValueError(f"{path}:{line}: {cell!r} is not a path inside the data root (paths are "
                                         f"relative to it, with no '..' and not absolute)")
                    item.key = key
                elif cell:
                    item.cells[role] = cell
            if not item.key:
                raise ValueError(f"{path}:{line}: empty path")
            if item.key in seen:
                raise ValueError(f"{path}:{line}: {item.key} is listed twice (first on line {seen[item.key]})")
            seen[item.key] = line
            out.append(item)
    if not out:
        raise ValueError(f"{path}: no image paths listed")
    return out, [r for r in roles if r != "path"]
