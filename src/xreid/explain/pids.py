"""Guess a person id from an image path, for marking true / false matches in reports."""

from __future__ import annotations

from pathlib import PurePosixPath


def infer_pid(key: str) -> str | None:
    """PETA paths (``VIPeR/archive/001_45_1.jpg``), Market names (``0002_c1s1_...``) or an identity
    sub-folder (``gallery/<id>/img.jpg``); None when nothing applies."""
    from xreid.data.market import parse_market_name
    from xreid.data.peta import REID_SUBSETS, parse_reid_name

    parts = PurePosixPath(key.replace("\\", "/")).parts
    for part in parts[:-1]:
        if part in REID_SUBSETS:
            try:
                return parse_reid_name(part, parts[-1])[0]
            except ValueError:
                return None
    try:
        return parse_market_name(parts[-1])[0]
    except ValueError:
        pass
    return parts[-2] if len(parts) >= 2 else None
