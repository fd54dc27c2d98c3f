"""A user's own crops: a folder of images, or a CSV listing ``path[,person_id[,camera]]``."""

from __future__ import annotations

import csv
from pathlib import Path

from xreid.data.images import is_image_file
from xreid.data.peta import LoadReport
from xreid.data.records import ImageRecord


def load_folder(folder: str | Path, root: str | Path | None = None) -> list[ImageRecord]:
    """Every image under ``folder`` (recursively). Images in sub-folders take the sub-folder's name
    as person id (``gallery/<id>/img.jpg``). Paths are relative to ``root`` (default: ``folder``)."""
    folder = Path(folder)
    root = Path(root) if root else folder
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: image folder not found")
    records = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)):
        rel = path.relative_to(folder)
        pid = rel.parts[0] if len(rel.parts) > 1 else None
        try:
            key = path.relative_to(root).as_posix()
        except ValueError:
            key = path.resolve().as_posix()
        records.append(ImageRecord(key, pid, None))
    if not records:
        raise ValueError(f"{folder}: no image files found (looked for jpg, png, bmp, ...)")
    return records


def load_list(list_file: str | Path, report: LoadReport | None = None) -> list[ImageRecord]:
    """A text/CSV file of ``path[,person_id[,camera]]`` lines (paths relative to the data root).

    A header line starting with ``path`` is skipped; blank lines and ``#`` comments too.
    """
    list_file = Path(list_file)
    report = report or LoadReport()
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: list file not found")
    records = []
    with list_file.open(newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#") or (lineno == 1 and row[0].lower() == "path"):
                continue
            if len(row) > 3:
                report.add(f"{list_file}:{lineno}: expected path[,person_id[,camera]], got {len(row)} columns; skipped")
                continue
            records.append(ImageRecord(row[0], row[1] if len(row) > 1 and row[1] else None,
                                       row[2] if len(row) > 2 and row[2] else None))
    if not records:
        raise ValueError(f"{list_file}: no image paths listed")
    return records
