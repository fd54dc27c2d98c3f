"""Atomic file output: write to a temporary file beside the target, then rename over it.

An interrupted job therefore leaves either the previous complete file or the new complete file,
never a truncated one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[BinaryIO]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(fh)`` on a temporary file and move it to ``path`` when it succeeded."""
    with atomic_open(path) as fh:
        write(fh)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(data, indent=2).encode()))


def save_torch(obj: Any, path: str | Path) -> None:
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))
