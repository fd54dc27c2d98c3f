"""Output checks made before any work starts, so a long job never ends on an unwritable path."""

from __future__ import annotations

import os
from pathlib import Path


def check_writable(*files: Path | None, folders: tuple[Path | None, ...] = ()) -> None:
    """Raise ValueError naming the first output that could not be written at the end of the job:
    a file path that is a folder (or a folder path that is a file), or one whose nearest existing
    ancestor is not a writable folder."""
    for path, is_folder in [(p, False) for p in files] + [(f, True) for f in folders]:
        if path is None:
            continue
        path = Path(path)
        if path.exists() and path.is_dir() != is_folder:
            kind = "a folder" if path.is_dir() else "a file"
            raise ValueError(f"{path}: output path is {kind}; give a {'folder' if is_folder else 'file'} path")
        ancestor = path if is_folder else path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ValueError(f"{path}: cannot be written ({ancestor} is a file, not a folder)")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ValueError(f"{path}: cannot be written (no write permission in {ancestor})")
