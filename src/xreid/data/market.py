"""Market-1501: folder layout and the 27 annotated attributes (Lin et al.) as 30 binary ones.

Layout: ``bounding_box_train/``, ``bounding_box_test/``, ``query/``; names like
``0002_c1s1_000451_03.jpg`` (person id, camera ``c<k>``). Person id -1 marks junk images
(ignored in evaluation), 0000 distractors (kept as negatives).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from xreid.data.images import is_image_file
from xreid.data.peta import LoadReport
from xreid.data.records import ImageRecord
from xreid.data.registry import Dataset, register

MARKET_SPLITS = ("bounding_box_train", "bounding_box_test", "query")
_NAME = re.compile(r"^(-1|\d+)_c(\d+)")

#: binary attribute name -> (field in market_attribute.mat, value meaning "present").
#: Codes are 1 = no / 2 = yes, except: gender 2 = female, hair 2 = long, up 2 = short sleeve,
#: down 2 = short lower-body clothing, clothes 1 = dress (2 = pants).
MARKET_BINARY = {
    "backpack": ("backpack", 2), "bag": ("bag", 2), "handbag": ("handbag", 2), "hat": ("hat", 2),
    "female": ("gender", 2), "longHair": ("hair", 2), "shortSleeve": ("up", 2),
    "shortLowerBody": ("down", 2), "dress": ("clothes", 1),
    **{f"up{c.capitalize()}": (f"up{c}", 2) for c in ("black", "blue", "green", "gray", "purple", "red", "white", "yellow")},
    **{f"down{c.capitalize()}": (f"down{c}", 2)
       for c in ("black", "blue", "brown", "gray", "green", "pink", "purple", "white", "yellow")},
}
AGE_CLASSES = ("ageYoung", "ageTeenager", "ageAdult", "ageOld")  # age codes 1..4, one-hot
MARKET_ATTRIBUTES: tuple[str, ...] = tuple(MARKET_BINARY) + AGE_CLASSES


def parse_market_name(filename: str) -> tuple[str, str]:
    m = _NAME.match(Path(filename).name)
    if m is None:
        raise ValueError(f"{filename}: not a Market-1501 file name (expected PPPP_cK...)")
    return f"market/{m.group(1)}", f"market/{m.group(2)}"


def load_market_attributes(mat_path: str | Path) -> dict[str, frozenset[str]]:
    """``market_attribute.mat`` -> {4-digit person id: set of the 30 binary attribute names present}."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise FileNotFoundError(f"{mat_path}: Market-1501 attribute file not found")
    try:
        root = loadmat(str(mat_path))["market_attribute"]
    except (KeyError, ValueError, OSError, MatReadError) as exc:
        raise ValueError(f"{mat_path}: not a Market-1501 attribute file ({exc})") from None
    labels: dict[str, frozenset[str]] = {}
    for split in ("train", "test"):
        s = root[split][0, 0]
        ids = [str(np.ravel(x)[0]) for x in s["image_index"][0, 0].ravel()]
        columns = {name: s[name][0, 0].ravel() for name in s.dtype.names if name != "image_index"}
        for j, pid in enumerate(ids):
            present = {attr for attr, (col, yes) in MARKET_BINARY.items() if int(columns[col][j]) == yes}
            age = int(columns["age"][j])
            if 1 <= age <= 4:
                present.add(AGE_CLASSES[age - 1])
            labels[pid] = frozenset(present)
    return labels


def load_market(root: str | Path, split: str, attributes: dict[str, frozenset[str]] | None = None,
                report: LoadReport | None = None) -> list[ImageRecord]:
    """Records of one Market split (paths relative to ``root``); attribute labels per identity."""
    root = Path(root)
    report = report or LoadReport()
    if split not in MARKET_SPLITS:
        raise ValueError(f"unknown Market split {split!r}; choose from {MARKET_SPLITS}")
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: missing; a Market-1501 root holds {', '.join(MARKET_SPLITS)}")
    records = []
    for path in sorted(p for p in folder.iterdir() if is_image_file(p)):
        try:
            pid, cam = parse_market_name(path.name)
        except ValueError as exc:
            report.add(f"{path}: {exc}; skipped")
            continue
        attrs = attributes.get(pid.split("/")[1]) if attributes else None
        records.append(ImageRecord(path.relative_to(root).as_posix(), pid, cam, attrs))
    return records


def load_market_all(root: str | Path, report: LoadReport | None = None) -> list[ImageRecord]:
    """Every split of a Market-1501 root (train, test, query), without attribute labels."""
    return [r for split in MARKET_SPLITS for r in load_market(root, split, report=report)]


register(Dataset("market-1501", "Market-1501", "Market-1501", load=load_market_all, parse_name=parse_market_name))
