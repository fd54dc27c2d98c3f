"""The append-only audit log of a search session: one JSON object per line (searches with their
query, filters and the results shown; marks; explanations opened; exports), flushed and synced to
disk before the request that caused it is answered."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from xreid.serve.redact import redact


class AuditError(OSError):
    """The audit log cannot be written (disk full, read-only): the request that needed it fails."""


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # O_APPEND: every write lands at the end, whatever else has the file open; lines are never rewritten
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, event: str, **fields) -> dict:
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event, **fields}
        line = (redact(json.dumps(record, allow_nan=False, separators=(",", ":"))) + "\n").encode()
        with self._lock:
            try:
                os.write(self._fd, line)
                os.fsync(self._fd)
            except OSError as exc:
                err = AuditError(exc.errno, f"{self.path}: cannot write the audit log ({exc.strerror})")
                err.reason = exc.strerror or str(exc)
                raise err from None
        return record

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_audit(path: str | Path) -> list[dict]:
    """Every record of an audit log, oldest first (a last line cut by a crash is left out)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
