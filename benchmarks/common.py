"""What the benchmarks share: their common options, table output, result files written atomically,
paths written for the record (never absolute machine paths), and the adapters only benchmarks use
(kept out of the library).

A benchmark builds its parser with :func:`parser`, prints through a :class:`Report` and ends with
``report.save(figures)``: with ``--out benchmarks/results/NAME`` that writes ``NAME.txt`` (exactly
what was printed) and ``NAME.json`` (the figures, where the benchmark has any), each atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xreid.io import atomic_write, write_json
from xreid.paths import resolve_data_root

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: The shared data and models beside the checkout (as in tests/conftest.py).
SHARED = Path(os.environ.get("XREID_SHARED", REPO.parent / "shared")).expanduser()
SHARED_MODELS = SHARED / "models" / "openvino"


@contextlib.contextmanager
def lookalike_pass(enabled: bool = True):
    """Index builds inside this block run the look-alike pass (each row's nearest rows, for the
    description search's smoothing) only if ``enabled``: a benchmark of search or sharding can leave
    out what dominates a 1M-row build (docs/RESULTS.md, Search by description)."""
    from xreid.index.gallery import IndexWriter

    original = IndexWriter.update_lookalikes
    if not enabled:
        IndexWriter.update_lookalikes = lambda self, ann=None: None
    try:
        yield
    finally:
        IndexWriter.update_lookalikes = original


def labelled_models(items: Sequence[str], option: str) -> dict[str, str]:
    """``LABEL=MODEL`` option values as {label: model}; exits naming the option on a malformed one."""
    out = {}
    for item in items:
        label, sep, model = item.partition("=")
        if not sep or not label or not model:
            sys.exit(f"{option} {item!r}: expected LABEL=MODEL")
        out[label] = model
    return out


def omz_model(name: str) -> Path:
    """The OpenVINO IR of an Open Model Zoo model in ``SHARED/models/openvino`` (FP16 where the zoo
    ships the re-id models so, else FP32)."""
    precision = "FP16" if name.endswith(("0277", "0286")) else "FP32"
    return SHARED_MODELS / name / precision / f"{name}.xml"


M0277 = omz_model("person-reidentification-retail-0277")
M0230 = omz_model("person-attributes-recognition-crossroad-0230")


# --- options -------------------------------------------------------------------------------------

def parser(doc: str | None, data_root: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares: ``--out`` and, for benchmarks on
    the data set, ``--data-root``. ``doc`` (the module docstring) is the help text."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if data_root:
        ap.add_argument("--data-root", type=resolve_data_root, default=None,
                        help="data root with PETA prepared (default: $XREID_DATA_ROOT, else ~/.cache/xreid)")
    ap.add_argument("--out", type=Path, default=None, metavar="STEM",
                    help="also write what is printed to STEM.txt and the figures to STEM.json "
                         "(e.g. benchmarks/results/NAME; run_all.sh names each one)")
    return ap


def parse(ap: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse, resolve ``--data-root`` through the library's rule, and remember it for :func:`relative`."""
    global _data_root
    args = ap.parse_args(argv)
    if hasattr(args, "data_root"):
        args.data_root = _data_root = resolve_data_root(args.data_root)
    return args


# --- the index's codes, as a what-if ---------------------------------------------------------------

def codes_options(ap: argparse.ArgumentParser) -> None:
    """``--dims-per-code N`` and ``--rotation on|off``: the ANN codes this run's builds use (by default
    the library's ``DIMS_PER_CODE`` and ``ROTATE``), set by :func:`apply_codes` after parsing."""
    from xreid.index import ann
    ap.add_argument("--dims-per-code", type=int, default=ann.DIMS_PER_CODE,
                    help="dimensions per 4-bit PQ code of the builds (default: the library's DIMS_PER_CODE)")
    ap.add_argument("--rotation", choices=["on", "off"], default="on" if ann.ROTATE else "off",
                    help="a random rotation before the codes, up to the library's ROTATE_MAX_DIM dimensions "
                         "(default: the library's ROTATE)")


def apply_codes(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set the library's code choice to the parsed options, for this process's builds."""
    from xreid.index import ann
    if args.dims_per_code < 1:
        ap.error("--dims-per-code must be at least 1")
    ann.DIMS_PER_CODE, ann.ROTATE = args.dims_per_code, args.rotation == "on"


def codes_name(dim: int) -> str:
    """The codes a build at ``dim`` dimensions makes now, e.g. 'rotated, PQ128x4fs'."""
    from xreid.index import ann
    spec = ann.pq_spec(dim, 1)
    return ("rotated, " if spec.startswith("RR") else "") + spec.split(",")[-1]


# --- paths for the record ------------------------------------------------------------------------

_data_root: Path | None = None  # set by parse(); else the library's default


def relative(path: str | Path) -> str:
    """``path`` as it may be written in a recorded result: relative to the repository
    (``src/xreid/weights/default_head.npz``), under a symbolic root (``DATA_ROOT/...``,
    ``SHARED/models/...``, ``~/...``), or, for an absolute path elsewhere (a temporary file), its
    file name alone. Relative paths are kept as given."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return p.as_posix()
    roots = [(REPO, ""), (SHARED, "SHARED"), (_data_root or resolve_data_root(None), "DATA_ROOT"), (Path.home(), "~")]
    roots.sort(key=lambda r: len(Path(os.path.abspath(r[0])).parts), reverse=True)  # most specific first
    candidates = [Path(os.path.abspath(p)), p.resolve()]  # as written first, then with links resolved
    for root, name in roots:
        for base in (Path(os.path.abspath(root)), root.resolve()):
            for c in candidates:
                try:
                    rest = c.relative_to(base).as_posix()
                except ValueError:
                    continue
                rest = "" if rest == "." else rest
                return "/".join(s for s in (name, rest) if s) or "."
    return p.name


# --- output ---------------------------------------------------------------------------------------

def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; cells are written with ``str`` (format numbers before)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["|" + "".join(f" {c} |" if str(c) else " |" for c in row) for row in rows]
    return "\n".join(lines)


class Report:
    """What a benchmark prints, kept to be written to ``--out``: ``print`` for lines, ``table`` for
    a markdown table, ``progress`` for messages that are not part of the result (stderr only)."""

    def __init__(self, out: Path | None):
        self.out = out
        self.lines: list[str] = []

    def print(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines += text.split("\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.print(markdown_table(header, rows))

    @staticmethod
    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def save(self, figures: object = None) -> list[Path]:
        """Write ``STEM.txt`` (what was printed) and, when ``figures`` is given, ``STEM.json``;
        nothing without ``--out``. Returns the files written."""
        if self.out is None:
            return []
        stem = self.out.with_suffix("") if self.out.suffix in (".txt", ".json") else self.out
        text = stem.with_name(stem.name + ".txt")
        atomic_write(text, lambda fh: fh.write(self.text.encode()))
        written = [text]
        if figures is not None:
            written.append(stem.with_name(stem.name + ".json"))
            write_json(written[-1], figures)
        for path in written:
            self.progress(f"wrote {relative(path)}")
        return written


# --- adapters only benchmarks use -----------------------------------------------------------------

#: Open Model Zoo person-attributes-recognition-crossroad-0230 outputs mapped to PETA names;
#: a leading '!' means the output is the attribute's negation (long sleeves = not short sleeves).
OMZ_0230_TO_PETA = {
    "is_male": "personalMale", "has_bag": "carryingMessengerBag", "has_backpack": "carryingBackpack",
    "has_hat": "accessoryHat", "has_longsleeves": "!upperBodyShortSleeve", "has_longpants": "!lowerBodyShorts",
    "has_longhair": "hairLong", "has_coat_jacket": "upperBodyJacket",
}


def omz_0230_probabilities(model_xml: str | Path, root: Path, records) -> tuple[np.ndarray, list[str], list[int]]:
    """PETA-named attribute probabilities from the OMZ 0230 attribute model (its 8 binary outputs),
    the names, and the indices of the records whose image loaded."""
    from xreid.models.loading import load_embedder

    emb = load_embedder(model_xml)  # OpenVINO wrapper: first output = the 8 probabilities
    res = emb.embed_paths([root / r.path for r in records])
    names, cols = [], []
    for j, peta in enumerate(OMZ_0230_TO_PETA.values()):
        names.append(peta.lstrip("!"))
        cols.append(1 - res.features[:, j] if peta.startswith("!") else res.features[:, j])
    return np.stack(cols, axis=1), names, res.kept
