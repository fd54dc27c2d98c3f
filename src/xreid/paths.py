"""Where data lives: ``--data-root``, else ``$XREID_DATA_ROOT``, else a per-user cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    env = os.environ.get("XREID_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "xreid"


def resolve_data_root(data_root: str | Path | None) -> Path:
    return Path(data_root).expanduser() if data_root else default_data_root()
