"""Times of images and footage: parsed from ISO 8601 or seconds, stored as seconds since 1970 UTC,
shown as ISO 8601 (UTC)."""

from __future__ import annotations

import math
from datetime import datetime, timezone


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
