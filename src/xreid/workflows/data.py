"""``xreid data prepare`` end to end: extract or link a registered dataset into the data root
(``xreid.data.registry``) and check it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xreid.data.registry import get_dataset
from xreid.errors import InvalidInput


@dataclass
class PreparedDataset:
    title: str
    folder: Path
    images: int
    identities: int
    problems: list[str] = field(default_factory=list)
    protocol: Path | None = None  # PETA: the re-id protocol found beside the source, if any


def prepare_dataset(dataset: str, source: Path, data_root: Path) -> PreparedDataset:
    """Prepare ``dataset`` from ``source`` (an archive or an extracted folder) in ``data_root``."""
    from xreid.data.peta import LoadReport

    ds = get_dataset(dataset)
    if ds.prepare is None:
        raise InvalidInput(f"{ds.title} needs no preparation: give its folder where a command asks for it")
    folder = ds.prepare(source, data_root)
    report = LoadReport()
    records = ds.load(folder, report)
    protocol = folder.parent / "peta_reid_protocol.json"
    return PreparedDataset(ds.title, folder, len(records), len({r.pid for r in records if r.pid}),
                           list(report.problems), protocol if protocol.is_file() else None)
