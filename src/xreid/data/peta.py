"""PETA: file-name parsing per subset, the 105-name attribute vocabulary, label files, preparation.

Layout (the official download): ``PETA dataset/<subset>/archive/{images..., Label.txt}``.
Labels of the re-id subsets are per identity (key = person id); CUHK keys are image file names
and MIT keys 5-digit image numbers, both matched to images by stem, whatever the image extension.
"""

from __future__ import annotations

import logging
import re
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from xreid.data.images import is_image_file
from xreid.data.records import ImageRecord
from xreid.data.registry import Dataset, register

log = logging.getLogger(__name__)

PETA_DIRNAME = "PETA dataset"

#: The 61 binary attributes of PETA (dataset ReadMe), spelled as in the Label.txt files.
BINARY_ATTRIBUTES: tuple[str, ...] = (
    "accessoryHeadphone", "personalLess15", "personalLess30", "personalLess45", "personalLess60",
    "personalLarger60", "carryingBabyBuggy", "carryingBackpack", "hairBald", "footwearBoots",
    "lowerBodyCapri", "carryingOther", "carryingShoppingTro", "carryingUmbrella", "lowerBodyCasual",
    "upperBodyCasual", "personalFemale", "carryingFolder", "lowerBodyFormal", "upperBodyFormal",
    "accessoryHairBand", "accessoryHat", "lowerBodyHotPants", "upperBodyJacket", "lowerBodyJeans",
    "accessoryKerchief", "footwearLeatherShoes", "upperBodyLogo", "hairLong", "lowerBodyLongSkirt",
    "upperBodyLongSleeve", "lowerBodyPlaid", "lowerBodyThinStripes", "carryingLuggageCase",
    "personalMale", "carryingMessengerBag", "accessoryMuffler", "accessoryNothing",
    "carryingNothing", "upperBodyNoSleeve", "upperBodyPlaid", "carryingPlasticBags",
    "footwearSandals", "footwearShoes", "hairShort", "lowerBodyShorts", "upperBodyShortSleeve",
    "lowerBodyShortSkirt", "footwearSneakers", "footwearStocking", "upperBodyThinStripes",
    "upperBodySuit", "carryingSuitcase", "lowerBodySuits", "accessorySunglasses",
    "upperBodySweater", "upperBodyThickStripes", "lowerBodyTrousers", "upperBodyTshirt",
    "upperBodyOther", "upperBodyVNeck",
)
COLOURS: tuple[str, ...] = (
    "Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple", "Red", "White", "Yellow",
)
COLOUR_PARTS: tuple[str, ...] = ("upperBody", "lowerBody", "hair", "footwear")
#: The full 105-name vocabulary: 61 binary attributes + 4 x 11 colours.
VOCABULARY: tuple[str, ...] = BINARY_ATTRIBUTES + tuple(p + c for p in COLOUR_PARTS for c in COLOURS)
#: The 35 attributes the attribute-recognition literature evaluates on PETA (PETA-ReID's list).
EVALUATION_ATTRIBUTES: tuple[str, ...] = (
    "accessoryHat", "accessoryMuffler", "accessoryNothing", "accessorySunglasses", "hairLong",
    "upperBodyCasual", "upperBodyFormal", "upperBodyJacket", "upperBodyLogo", "upperBodyPlaid",
    "upperBodyShortSleeve", "upperBodyThinStripes", "upperBodyTshirt", "upperBodyOther", "upperBodyVNeck",
    "lowerBodyCasual", "lowerBodyFormal", "lowerBodyJeans", "lowerBodyShorts", "lowerBodyShortSkirt",
    "lowerBodyTrousers", "footwearLeatherShoes", "footwearSandals", "footwearShoes", "footwearSneakers",
    "carryingBackpack", "carryingOther", "carryingMessengerBag", "carryingNothing", "carryingPlasticBags",
    "personalLess30", "personalLess45", "personalLess60", "personalLarger60", "personalMale",
)
#: What xreid explains with on PETA: the 35 evaluation attributes plus upper- and lower-body colours
#: (an analyst's first words for a person: "man in a red top and blue jeans").
EXPLANATION_ATTRIBUTES: tuple[str, ...] = EVALUATION_ATTRIBUTES + tuple(
    p + c for p in ("upperBody", "lowerBody") for c in COLOURS)
#: Names that occur in some Label.txt files but that PETA itself discards (fewer than 10 samples).
DISCARDED_ATTRIBUTES = frozenset({"accessoryFaceMask", "lowerBodyLogo", "accessoryShawl", "lowerBodyThickStripes"})

#: The protocols xreid knows by name, and their files (kept beside ``PETA dataset/`` in the data root):
#: PETA-ReID for reporting, PETA-ReID-val (carved from its training identities) for every choice.
PROTOCOL_FILES = {"peta-reid": "peta_reid_protocol.json", "peta-reid-val": "peta_reid_val.json"}

REID_SUBSETS = ("VIPeR", "PRID", "GRID", "3DPeS", "CAVIAR4REID", "i-LID", "SARC3D", "TownCentre")
ATTRIBUTE_ONLY_SUBSETS = ("CUHK", "MIT")
SUBSETS = REID_SUBSETS + ATTRIBUTE_ONLY_SUBSETS

# subset -> (regex on the file stem, group of the person id, group of the camera or None)
_NAME_PATTERNS: dict[str, tuple[re.Pattern[str], int, int | None]] = {
    "VIPeR": (re.compile(r"^(\d+)_(\d+)_(\d+)"), 1, 3),
    "PRID": (re.compile(r"^(\d+)_([ab])"), 1, 2),
    "GRID": (re.compile(r"^(\d+)_(\d+)_"), 1, 2),
    "3DPeS": (re.compile(r"^(\d+)_([0-9A-Za-z]+)_"), 1, 2),
    "CAVIAR4REID": (re.compile(r"^(\d+)_\d+"), 1, None),
    "i-LID": (re.compile(r"^(\d+)_\d+"), 1, None),
    "SARC3D": (re.compile(r"^(\d+)_"), 1, None),
    "TownCentre": (re.compile(r"^(\d+)_\d+"), 1, None),
}


def parse_reid_name(subset: str, filename: str) -> tuple[str, str]:
    """Person id and camera of a PETA re-id image, both prefixed by the subset (``VIPeR/000``).

    Subsets with no reliable camera get camera ``0``. Raises ValueError for a name that does not
    follow the subset's convention.
    """
    pattern, pid_group, cam_group = _NAME_PATTERNS[subset]
    m = pattern.match(Path(filename).stem)
    if m is None:
        raise ValueError(f"{subset}/{filename}: file name does not follow the {subset} naming convention")
    cam = m.group(cam_group) if cam_group else "0"
    return f"{subset}/{m.group(pid_group)}", f"{subset}/{cam}"


def label_key(subset: str, filename: str) -> str:
    """The Label.txt key an image's labels are stored under."""
    stem = Path(filename).stem
    if subset == "CUHK":
        return stem
    if subset == "MIT":
        return stem.split("_")[0]
    pid, _ = parse_reid_name(subset, filename)
    return pid.split("/", 1)[1]


def _normalise_key(subset: str, key: str) -> str:
    key = Path(key).stem if subset == "CUHK" else key
    # 3DPeS keys carry no zero padding while some tools pad them; compare ids numerically there.
    return str(int(key)) if subset == "3DPeS" and key.isdigit() else key


@dataclass
class LoadReport:
    """What a loader skipped, so a user can see it instead of losing it silently."""

    problems: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.problems.append(message)
        log.info(message)


def read_label_file(path: Path, report: LoadReport | None = None) -> dict[str, frozenset[str]]:
    """Parse one ``Label.txt``: key -> set of attribute names present. Unknown names are reported."""
    report = report or LoadReport()
    labels: dict[str, frozenset[str]] = {}
    vocab = set(VOCABULARY)
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        key, names = parts[0], parts[1:]
        unknown = [n for n in names if n not in vocab and n not in DISCARDED_ATTRIBUTES]
        if unknown:
            report.add(f"{path}:{lineno}: unknown attribute name(s) {unknown} ignored")
        labels[key] = frozenset(n for n in names if n in vocab)
    return labels


def load_peta(root: str | Path, subsets: tuple[str, ...] = SUBSETS,
              report: LoadReport | None = None) -> list[ImageRecord]:
    """All PETA images under ``root`` (the ``PETA dataset`` folder) with ids, cameras and labels.

    Paths are relative to ``root`` (``VIPeR/archive/000_45_1.jpg``), as in the PETA-ReID protocol.
    Images with no label, and label keys with no image, are reported and skipped.
    """
    root = Path(root)
    report = report or LoadReport()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: PETA folder not found (run `xreid data prepare peta`)")
    missing = [s for s in subsets if not (root / s / "archive").is_dir()]
    if len(missing) == len(subsets):
        raise ValueError(f"{root}: not a PETA folder: expected <subset>/archive/ folders such as {subsets[0]}/archive")
    records: list[ImageRecord] = []
    for subset in subsets:
        archive = root / subset / "archive"
        if not archive.is_dir():
            report.add(f"{archive}: subset folder missing, skipped")
            continue
        label_path = archive / "Label.txt"
        raw = read_label_file(label_path, report) if label_path.is_file() else {}
        if not label_path.is_file():
            report.add(f"{label_path}: no label file; images of {subset} load without attributes")
        labels = {_normalise_key(subset, k): v for k, v in raw.items()}
        used: set[str] = set()
        for image in sorted(p for p in archive.iterdir() if is_image_file(p)):
            rel = image.relative_to(root).as_posix()
            try:
                key = _normalise_key(subset, label_key(subset, image.name))
                pid, cam = (None, None) if subset in ATTRIBUTE_ONLY_SUBSETS else parse_reid_name(subset, image.name)
            except ValueError as exc:
                report.add(f"{image}: {exc}; skipped")
                continue
            attrs = labels.get(key)
            if attrs is None and label_path.is_file():
                report.add(f"{image}: no label for key {key!r} in {label_path}")
            used.add(key)
            records.append(ImageRecord(rel, pid, cam, attrs))
        for key in sorted(set(labels) - used):
            report.add(f"{label_path}: label key {key!r} matches no image")
    return records


def _extract_tar_zst(source: Path, dest: Path) -> None:
    import zstandard

    with source.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as stream:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(dest, filter="data")


def find_peta_folder(path: Path) -> Path:
    """The ``PETA dataset`` folder at or directly under ``path``."""
    for candidate in (path, path / PETA_DIRNAME):
        if (candidate / "VIPeR" / "archive").is_dir() or (candidate / "CUHK" / "archive").is_dir():
            return candidate
    raise ValueError(f"{path}: no PETA folder here (expected '{PETA_DIRNAME}/<subset>/archive/')")


def prepare_peta(source: str | Path, data_root: str | Path) -> Path:
    """Make ``data_root/peta/PETA dataset`` ready from a ``.tar.zst``/``.tar*`` archive or a folder.

    Extraction goes to a temporary folder renamed into place only when complete, so an interrupted
    run leaves nothing half-made. A protocol file found beside the source is copied too.
    Returns the PETA folder.
    """
    source, data_root = Path(source), Path(data_root)
    target = data_root / "peta"
    final = target / PETA_DIRNAME
    target.mkdir(parents=True, exist_ok=True)
    if not source.exists():
        raise FileNotFoundError(f"{source}: PETA source not found")
    if final.exists():
        log.info("%s already prepared", final)
    elif source.is_dir():
        folder = find_peta_folder(source).resolve()
        final.symlink_to(folder, target_is_directory=True)
    else:
        tmp = target / ".extracting"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            if source.name.endswith((".zst", ".zstd")):
                _extract_tar_zst(source, tmp)
            else:
                with tarfile.open(source) as tar:
                    tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, Exception) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"{source}: cannot extract ({exc})") from exc
        folder = find_peta_folder(tmp)
        folder.rename(final)
        shutil.rmtree(tmp, ignore_errors=True)
    for name in PROTOCOL_FILES.values():  # PETA-ReID and PETA-ReID-val, when found beside the source
        protocol_src = (source if source.is_dir() else source.parent) / name
        if protocol_src.is_file() and not (target / name).exists():
            shutil.copyfile(protocol_src, target / name)
    return final


def parse_peta_key(key: str) -> tuple[str, str] | None:
    """Person id and camera of an image key under a PETA re-id subset folder (``.../VIPeR/.../001_45_1.jpg``)."""
    from pathlib import PurePosixPath

    parts = PurePosixPath(key.replace("\\", "/")).parts
    for part in parts[:-1]:
        if part in REID_SUBSETS:
            try:
                return parse_reid_name(part, parts[-1])
            except ValueError:
                return None  # a PETA image whose name states no identity
    raise ValueError(f"{key}: not under a PETA re-id subset folder")


register(Dataset("peta", "PETA", PETA_DIRNAME, load=lambda folder, report=None: load_peta(folder, report=report), prepare=prepare_peta, parse_name=parse_peta_key))
