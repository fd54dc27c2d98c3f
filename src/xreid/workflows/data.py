"""``xreid data prepare`` end to end: extract or link a dataset into the data root and check it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xreid.errors import InvalidInput


@dataclass
class PreparedDataset:
    folder: Path
    images: int
    identities: int
    problems: list[str] = field(default_factory=list)
    protocol: Path | None = None  # the re-id protocol found beside the source, if any


def prepare_dataset(dataset: str, source: Path, data_root: Path) -> PreparedDataset:
    """Prepare ``dataset`` from ``source`` (an archive or an extracted folder) in ``data_root``."""
    from xreid.data.peta import LoadReport, load_peta, prepare_peta

    if dataset.lower() != "peta":
        raise InvalidInput(f"unknown dataset {dataset!r}; supported: peta (Market-1501 and plain folders need no "
                           f"preparation)")
    folder = prepare_peta(source, data_root)
    report = LoadReport()
    records = load_peta(folder, report=report)
    protocol = folder.parent / "peta_reid_protocol.json"
    return PreparedDataset(folder, len(records), len({r.pid for r in records if r.pid}), list(report.problems),
                           protocol if protocol.is_file() else None)
