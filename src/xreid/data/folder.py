"""A user's own crops: a folder of images, or a CSV list with named columns (``xreid.data.lists``)."""

from __future__ import annotations

from pathlib import Path

from xreid.data.images import is_image_file
from xreid.data.peta import LoadReport
from xreid.data.records import ImageRecord


def load_folder(folder: str | Path, root: str | Path | None = None,
                report: LoadReport | None = None) -> list[ImageRecord]:
    """Every image under ``folder`` (recursively), paths relative to ``root`` (default: ``folder``).

    Folder names are not taken for person ids (identities must be known, not guessed: see
    ``xreid.data.pids``); give a CSV list for that. Entries that cannot be followed (a symbolic-link
    loop, a dangling link) are added to ``report``, never skipped silently.
    """
    folder = Path(folder)
    root = Path(root) if root else folder
    report = report if report is not None else LoadReport()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: image folder not found")
    records = []
    for path in sorted(folder.rglob("*")):
        if not is_image_file(path):
            continue
        problem = _unusable_entry(path)
        if problem:
            report.add(f"{path}: {problem}; skipped")
            continue
        if not path.is_file():
            continue
        try:
            key = path.relative_to(root).as_posix()
        except ValueError:
            key = path.absolute().as_posix()
        records.append(ImageRecord(key, None, None))
    if not records:
        raise ValueError(f"{folder}: no image files found (looked for jpg, png, bmp, ...)")
    return records


def _unusable_entry(path: Path) -> str | None:
    """Why a directory entry cannot be read as a file (symbolic-link loop, dangling link), or None."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:
        return "symbolic-link loop"
    except OSError as exc:
        return "symbolic-link loop" if "loop" in str(exc).lower() else f"broken symbolic link ({exc.strerror or exc})"
    return None


def load_list(list_file: str | Path, report: LoadReport | None = None) -> list[ImageRecord]:
    """The images of a list file (``xreid.data.lists``: a CSV whose header row names a ``path``
    column, relative to the data root, and optionally ``pid`` / ``person_id`` and ``camera`` /
    ``cam``), read by name, never by position."""
    from xreid.data.lists import CAMERA, PID, read_list

    rows, _ = read_list(list_file)
    return [ImageRecord(r.key, r.cells.get(PID), r.cells.get(CAMERA)) for r in rows]
