"""Re-id evaluation protocols: named query/gallery splits plus a training split.

The PETA-ReID protocol file (``peta_reid_protocol.json``) fixes the splits; ``--protocol
peta-reid`` finds it in ``DATA_ROOT/peta/``, ``peta-reid-val`` its validation twin (choices are made
there, never on the test sets); any other value is read as a path, from any folder.

A protocol file names its dataset (``"dataset"``, a registered name; default ``peta``) and may name
its image folder (``"images"``, relative to the protocol file). Without one, the images are the
dataset's folder beside the protocol file, else in the data root (``DATA_ROOT/peta/PETA dataset``
for PETA). The dataset's loader attaches the labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from xreid.data.peta import PROTOCOL_FILES, LoadReport
from xreid.data.records import ImageRecord
from xreid.data.registry import get_dataset


@dataclass
class TestSet:
    name: str
    query: list[ImageRecord]
    gallery: list[ImageRecord]


@dataclass
class Protocol:
    """A resolved protocol: image root, test sets, train and attribute-only images, attribute names."""

    name: str
    image_root: Path
    test_sets: list[TestSet]
    train: list[ImageRecord]
    attribute_only: list[ImageRecord]
    attributes: list[str]

    def test_images(self) -> list[ImageRecord]:
        """Query and gallery images of every test set, each once."""
        seen: dict[str, ImageRecord] = {}
        for ts in self.test_sets:
            for r in ts.query + ts.gallery:
                seen.setdefault(r.path, r)
        return list(seen.values())


def find_protocol_file(protocol: str, data_root: Path) -> Path:
    named = PROTOCOL_FILES.get(protocol.replace("_", "-"))
    if named:
        path = data_root / "peta" / named
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: {protocol} protocol file not found; run `xreid data prepare peta --source ... "
                f"--data-root {data_root}` with the protocol file beside the source, or pass --protocol PATH")
        return path
    path = Path(protocol)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: protocol file not found (use 'peta-reid' or a path to a protocol JSON)")
    return path


def _records(entries: list[dict], labels: dict[str, ImageRecord], where: str) -> list[ImageRecord]:
    out = []
    for i, e in enumerate(entries):
        if "path" not in e:
            raise ValueError(f"{where}[{i}]: entry has no 'path'")
        known = labels.get(e["path"])
        out.append(ImageRecord(e["path"], e.get("pid"), e.get("cam"), known.attributes if known else None))
    return out


def image_folder(spec: dict, path: Path, data_root: Path) -> Path:
    """Where a protocol's images are: its ``images`` entry (relative to the protocol file), else its
    dataset's folder beside the protocol file, else that folder in the data root."""
    if spec.get("images"):
        return path.parent / spec["images"]
    folder = get_dataset(spec.get("dataset", "peta")).folder
    for candidate in (path.parent / folder, Path(data_root) / "peta" / folder, Path(data_root) / folder):
        if candidate.is_dir():
            return candidate
    return path.parent / folder


def load_protocol(protocol: str, data_root: Path, image_root: Path | None = None,
                  report: LoadReport | None = None) -> Protocol:
    """Read a protocol file (by name or from any folder) and attach its dataset's labels to its images."""
    path = find_protocol_file(protocol, data_root)
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    for key in ("test", "train"):
        if key not in spec:
            raise ValueError(f"{path}: protocol has no '{key}' section")
    try:
        dataset = get_dataset(spec.get("dataset", "peta"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    root = image_root or image_folder(spec, path, data_root)
    labels = {r.path: r for r in dataset.load(root, report)} if root.is_dir() else {}
    if not labels:
        raise FileNotFoundError(f"{root}: images of protocol {path.name} not found (run `xreid data prepare "
                                f"{dataset.name}`, or name the folder in the protocol's \"images\")")
    tests = [TestSet(name, _records(t["query"], labels, f"{path}:test.{name}.query"),
                     _records(t["gallery"], labels, f"{path}:test.{name}.gallery"))
             for name, t in spec["test"].items()]
    return Protocol(spec.get("name", path.stem), root, tests, _records(spec["train"], labels, f"{path}:train"),
                    _records(spec.get("attribute_only", []), labels, f"{path}:attribute_only"),
                    list(spec.get("attributes", [])))


def without_subsets(records: list[ImageRecord], subsets: list[str], where: str = "exclude_subsets") -> list[ImageRecord]:
    """``records`` less those of the named data subsets (a record's subset is the first folder of its
    path, e.g. 'VIPeR'); a subset no record belongs to is an error naming it and the ones present."""
    present = {r.path.split("/")[0] for r in records}
    unknown = [s for s in subsets if s not in present]
    if unknown:
        raise ValueError(f"{where}: no training image from {', '.join(unknown)} (the training images come from "
                         f"{', '.join(sorted(present))})")
    return [r for r in records if r.path.split("/")[0] not in set(subsets)]
