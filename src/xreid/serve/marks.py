"""The analyst's marks, kept durably with the case: ``WORKDIR/marks.json`` (written atomically after
every change, read when the server starts). A mark belongs to a query (``upload:HASH`` or
``item:ID``, see ``Search.case_query``) and a gallery row; the row's key is stored beside its id, so
the file reads on its own and a report can name the image."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from xreid.io import atomic_write

log = logging.getLogger(__name__)

FORMAT, VERSION = "xreid-marks", 1


class MarkStoreError(OSError):
    """The marks file cannot be written (its path and the reason in the message)."""


def load_marks(path: Path) -> tuple[dict[str, dict[int, str]], dict[str, dict[int, str]]]:
    """({query: {row id: mark}}, {query: {row id: key}}) from ``path``; empty when there is none. A
    damaged file is an error naming it (marks are evidence: never silently dropped)."""
    if not path.is_file():
        return {}, {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError("not an xreid marks file")
        marks, keys = {}, {}
        for query, rows in data["marks"].items():
            marks[query] = {int(i): str(r["mark"]) for i, r in rows.items()}
            keys[query] = {int(i): str(r.get("key", "")) for i, r in rows.items()}
        return marks, keys
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable marks file ({exc}); move it aside to start without the marks, "
                         f"or restore it (every mark is also in the audit log)") from None


def save_marks(path: Path, marks: dict[str, dict[int, str]], keys: dict[str, dict[int, str]]) -> None:
    data = {"format": FORMAT, "version": VERSION,
            "marks": {q: {str(i): {"mark": m, "key": keys.get(q, {}).get(i, "")} for i, m in sorted(rows.items())}
                      for q, rows in marks.items() if rows}}
    try:
        atomic_write(path, lambda fh: fh.write(json.dumps(data, indent=1).encode()))
    except OSError as exc:
        err = MarkStoreError(exc.errno, f"{path}: cannot save the marks ({exc.strerror})")
        err.reason = exc.strerror or str(exc)
        raise err from None
