"""File output and the artefact readers.

Output is atomic: written to a temporary file beside the target, then renamed over it, so an
interrupted job leaves either the previous complete file or the new complete file, never a
truncated one. The readers (``read_arrays``, ``read_json``) are how fitted artefacts (attribute
heads, fusions, match calibrations) are read: ``.npz`` files are never unpickled, and a missing or
unreadable file is an error naming it.
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


def write_json(path: str | Path, data: Any, indent: int = 2, allow_nan: bool = True) -> None:
    """JSON, written atomically (``allow_nan=False``: NaN is refused, never written)."""
    text = json.dumps(data, indent=indent, allow_nan=allow_nan)  # refused before the file is touched
    atomic_write(path, lambda fh: fh.write(text.encode()))


def save_torch(obj: Any, path: str | Path) -> None:
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


def write_arrays(path: str | Path, arrays: dict) -> None:
    """An ``.npz`` of named arrays, written atomically (what a fitted artefact's ``to_arrays`` gives)."""
    import numpy as np

    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def read_arrays(path: str | Path, what: str, hint: str = "", made_by: str = "") -> dict:
    """The named arrays of an ``.npz`` (never unpickled). FileNotFoundError "PATH: WHAT not found",
    ValueError "PATH: not an xreid WHAT (why)"."""
    import numpy as np

    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found{hint}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # not an .npz: say what the file should be (never a hint about pickles)
        raise ValueError(f"{path}: not an xreid {what}: expected the .npz{made_by and f' that {made_by} writes'}, "
                         f"this file is not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not an xreid {what} ({exc})") from None


def read_json(path: str | Path, what: str) -> Any:
    """A JSON file's content. FileNotFoundError "PATH: WHAT not found", ValueError when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a JSON {what} ({exc})") from None
