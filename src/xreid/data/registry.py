"""Datasets by name: each dataset is one module that registers a ``Dataset`` (how to prepare it in
the data root, how to read its images with their labels, and the file-name convention that states
person id and camera, if it has one). Adding a dataset is one new module plus its line in
``BUILTIN``.

File-name conventions are parsed here, in one place (``parse_name``): every registered convention
in turn, the first that applies wins; none applies to a plain folder of crops (identities are never
guessed from folder names, see ``xreid.data.pids``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xreid.data.records import ImageRecord
from xreid.errors import InvalidInput

#: the modules that register the datasets xreid ships (imported on first use)
BUILTIN = ("xreid.data.peta", "xreid.data.market", "xreid.data.folder")


@dataclass(frozen=True)
class Dataset:
    """A dataset xreid can read.

    ``folder``: its folder name in the data root (protocols find their images there);
    ``load(folder, report)``: its images with person ids, cameras and attribute labels where known
    (what it skips added to ``report``, a ``LoadReport`` or None);
    ``prepare(source, data_root) -> folder``: extract or link it into the data root (None: used in place);
    ``parse_name(key) -> (pid, camera)``: its file-name convention; None for one of its files whose
    name states no identity, ValueError for a name outside the convention (``parse_name`` None: file
    names state nothing)."""

    name: str
    title: str
    folder: str
    load: Callable[[Path, object], list[ImageRecord]]
    prepare: Callable[[Path, Path], Path] | None = None
    parse_name: Callable[[str], tuple[str, str] | None] | None = None


DATASETS: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Make ``dataset`` known by its name (a module's registration line)."""
    DATASETS[dataset.name] = dataset
    return dataset


def datasets() -> dict[str, Dataset]:
    """Every registered dataset, by name."""
    for module in BUILTIN:
        importlib.import_module(module)
    return DATASETS


def get_dataset(name: str) -> Dataset:
    """The dataset called ``name`` (case and ``_`` / ``-`` ignored); InvalidInput naming the known ones."""
    known = datasets()
    wanted = name.lower().replace("_", "-")
    for key, ds in known.items():
        if wanted in (key, ds.title.lower()):
            return ds
    raise InvalidInput(f"unknown dataset {name!r}; known: {', '.join(sorted(known))}")


def parse_name(key: str) -> tuple[str, str] | None:
    """(person id, camera) that ``key``'s file name states under a registered convention, or None."""
    for ds in datasets().values():
        if ds.parse_name is None:
            continue
        try:
            return ds.parse_name(key)  # the first convention the name belongs to decides
        except ValueError:
            continue
    return None
