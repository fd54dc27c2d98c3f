"""Checksums of an index's files: a damaged file (truncated, a bit flipped, gone) is found and named,
never read as data.

Every file a commit writes (segment, thumbnail pack, ANN structure) is recorded in the manifest with
its size and SHA-256 (``checks``: ``{name: {"bytes": n, "sha256": hex}}`` on its segment entry, and
on the ``ann`` entry). Readers check them: a segment when it is opened, a thumbnail pack the first
time a thumbnail is read from it, the ANN file before it is loaded. Indexes written before checksums
were recorded are read as before (structure checked only).

``xreid index check CASE`` verifies every file; ``--repair`` drops what is damaged:

- a segment: its rows stay in the index as dropped rows (their ids are kept, so the ids of later rows,
  the marks and the audit log still name the same images); they are never returned by a search, and
  ``xreid index add`` indexes their images again (under new ids);
- a thumbnail pack: its rows have no stored thumbnail (the server draws one from the image);
- the ANN file: removed, and built again when the index is large enough (searches are exact until then);
- the look-alikes file: built again (a description search reads each image alone until then);
- the vector file of a large index: written again from the segments (they are read instead until then).

Footage (``xreid index build --video``) adds files beside the segments: per video ``footage/VIDEO/``
(chunk files, ``tracks.npz``, ``video.json``) and ``sightings/VIDEO/SSSSS/`` (crops, key frame,
frame, ``crops.json``). When a video's sightings are committed, their sizes and SHA-256 are recorded
in ``footage/VIDEO/files.json`` (``xreid.index.sightings.footage_checks``); ``check`` verifies them
(files of a video not finished, or of a case written before, are checked for structure: the JPEG
decodes, the JSON and ``.npz`` read). ``--repair`` moves the damaged files to ``CASE/damaged/`` (a
damaged chunk takes the later chunks of its video with it: they cannot be replayed without it) and
marks the video not done, so that ``xreid index add CASE --video PATH`` makes its files again from
its committed chunks (frames after a damaged chunk are detected again); its rows stay in the index.

A sharded case is checked shard by shard (``shards``), each as an index of its own.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: segment entries' key: a dropped segment (``xreid index check --repair``) has ``file: None`` and this
DROPPED = "dropped"


class DamagedFile(ValueError):
    """A file of an index that does not hold what the manifest recorded (the message names it)."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}; the index is damaged (run `xreid index check "
                         f"{path.parent.parent if path.parent.name == 'segments' else path.parent} --repair`)")
        self.path, self.problem = path, problem


#: the problem of a file whose bytes are not those written
CHANGED = "content changed since it was written (SHA-256 differs)"


def file_check(data: bytes) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def size_problem(size: int, written: int) -> str:
    """What a file of ``size`` bytes is, when ``written`` were written."""
    return f"{'truncated' if size < written else 'longer than written'} ({size:,} bytes, {written:,} were written)"


def verify_bytes(path: Path, data: bytes, check: dict | None) -> None:
    """Raise DamagedFile when ``data`` (read from ``path``) is not what ``check`` recorded."""
    if not check:
        return
    if len(data) != check["bytes"]:
        raise DamagedFile(path, size_problem(len(data), check["bytes"]))
    if hashlib.sha256(data).hexdigest() != check["sha256"]:
        raise DamagedFile(path, CHANGED)


def read_checked(path: Path, check: dict | None) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedFile(path, "missing") from None
    except OSError as exc:
        raise DamagedFile(path, f"unreadable ({exc.strerror})") from None
    verify_bytes(path, data, check)
    return data


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` of ``arrays`` in memory (written with its checksum by the caller)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def verify_file(path: Path, check: dict | None) -> None:
    """As ``read_checked``, reading the file in blocks (never whole in memory)."""
    try:
        size = path.stat().st_size
        if check and size != check["bytes"]:
            raise DamagedFile(path, size_problem(size, check["bytes"]))
        if check:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
            if digest.hexdigest() != check["sha256"]:
                raise DamagedFile(path, CHANGED)
    except FileNotFoundError:
        raise DamagedFile(path, "missing") from None
    except OSError as exc:
        raise DamagedFile(path, f"unreadable ({exc.strerror})") from None


def load_npz(path: Path, check: dict | None, skip: tuple[str, ...] = (),
             only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (those named in ``only``, if given) but those named in
    ``skip``, checked against ``check``; DamagedFile otherwise (also for an unchecked file whose zip
    structure or CRC is broken). With ``skip`` or ``only`` the file is hashed in blocks and only the
    arrays kept are read (a large segment's vectors are never in memory when they are not wanted)."""
    if skip or only is not None:
        verify_file(path, check)
        source = path
    else:
        source = io.BytesIO(read_checked(path, check))
    try:
        with np.load(source, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files if k not in skip and (only is None or k in only)}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DamagedFile(path, f"unreadable segment ({type(exc).__name__}: {exc})") from None


@dataclass
class CheckReport:
    """What ``check_files`` found: damaged files by kind, and what was verified."""

    segments: dict[str, str] = field(default_factory=dict)  # file -> problem
    packs: dict[str, str] = field(default_factory=dict)
    ann: str | None = None  # problem of the ANN file
    lookalikes: str | None = None  # problem of the look-alikes file
    vectors: str | None = None  # problem of the vector file (``xreid.index.vector_file``)
    verified: int = 0
    unchecked: int = 0  # files with no recorded checksum (older indexes): structure checked only
    dropped_rows: int = 0  # rows of segments an earlier repair dropped
    footage: dict[str, str] = field(default_factory=dict)  # footage file (relative to the case) -> problem
    shards: dict[str, "CheckReport"] = field(default_factory=dict)  # a sharded case: each shard's report

    @property
    def clean(self) -> bool:
        return (not self.segments and not self.packs and self.ann is None and self.lookalikes is None
                and self.vectors is None
                and not self.footage and all(r.clean for r in self.shards.values()))

    def problems(self, case: Path) -> list[str]:
        """Each damaged file as 'PATH: problem', shards' included."""
        out = [f"{case / 'segments' / n}: {p}" for n, p in {**self.segments, **self.packs}.items()]
        out += [f"{case / self.ann}"] if self.ann else []
        out += [f"{case / self.lookalikes}"] if self.lookalikes else []
        out += [f"{case / self.vectors}"] if self.vectors else []
        out += [f"{case / n}: {p}" for n, p in self.footage.items()]
        for name, r in self.shards.items():
            out += r.problems(case / name)
        return out

    def add_shard(self, name: str, report: "CheckReport") -> None:
        self.shards[name] = report
        self.verified += report.verified
        self.unchecked += report.unchecked
        self.dropped_rows += report.dropped_rows


def check_structure(path: Path) -> None:
    """DamagedFile unless ``path`` (a file with no recorded checksum) reads as what its name says: a
    JPEG that decodes, JSON that parses, an ``.npz`` whose arrays load."""
    if path.suffix == ".npz":
        load_npz(path, None)
        return
    data = read_checked(path, None)
    try:
        if path.suffix == ".json":
            import json

            json.loads(data)
        elif path.suffix in (".jpg", ".jpeg"):
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.load()
    except (ValueError, OSError, SyntaxError) as exc:
        raise DamagedFile(path, f"unreadable ({type(exc).__name__}: {exc})") from None


def check_files(case: Path, manifest: dict) -> CheckReport:
    """Verify every file the manifest lists."""
    seg_dir = case / "segments"
    report = CheckReport()
    for seg in manifest["segments"]:
        if seg.get("file") is None:
            report.dropped_rows += int(seg["rows"])
            continue
        checks = seg.get("checks", {})
        for name in [seg["file"]] + [p for p in seg["packs"] if p]:
            kind = report.segments if name == seg["file"] else report.packs
            report.verified += 1
            report.unchecked += name not in checks
            try:
                if name == seg["file"]:  # the checksum covers the vectors: they need not be read as arrays
                    data = load_npz(seg_dir / name, checks.get(name), ("vectors",) if name in checks else ())
                    if len(data.get("keys", ())) != seg["rows"]:
                        raise DamagedFile(seg_dir / name, f"holds {len(data.get('keys', ()))} rows, the manifest "
                                                          f"says {seg['rows']}")
                else:
                    read_checked(seg_dir / name, checks.get(name))
            except DamagedFile as exc:
                kind[name] = exc.problem
    from xreid.index.vector_file import verify_vector_file, wants_file

    if (manifest.get("state") == "ready" and not manifest.get("vectors")
            and wants_file(int(manifest.get("count", 0)), int(manifest.get("embedding_dim", 0)))):
        report.vectors = "vec-*.npy: missing (the index's vectors reach the size kept in a vector file)"
    # the derived files (the report's field of the same name as the manifest's entry)
    for key, verify in (("ann", lambda path, info: read_checked(path, info if "sha256" in info else None)),
                        ("lookalikes", load_npz), ("vectors", verify_vector_file)):
        info = manifest.get(key)
        if not info:
            continue
        report.verified += 1
        report.unchecked += "sha256" not in info
        try:
            verify(case / info["file"], info)
        except DamagedFile as exc:
            setattr(report, key, f"{info['file']}: {exc.problem}")
    return report
