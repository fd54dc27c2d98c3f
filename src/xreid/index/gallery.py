"""A persistent gallery index on disk: embeddings, calibrated attribute probabilities, thumbnails
and metadata of many person crops, searched with filters applied inside the vector search.

Layout of an index folder ``CASE/``::

    manifest.json          what the index holds: format version, model identity, attribute names and
                           head fingerprint, metadata columns, the committed segments, the ANN file
    segments/seg-NNNNNN.npz  rows of one commit: vectors (float32, as the model gave them), attribute
                           probabilities (uint8), keys, time, string columns (dictionary-encoded),
                           where each thumbnail lies
    segments/t-NNNNNN.bin    thumbnails of one commit (JPEG, 128 px high), never rewritten
    ann-GGGGGG.faiss       the approximate search structure (``xreid.index.ann``), derived from the
                           vectors; absent for small indexes, where every search is exact
    vec-GGGGGG.npy         every row's unit vector, memory-mapped when the index opens; only in indexes
                           whose vectors reach ``MAP_MIN_BYTES`` (``xreid.index.vector_file``)
    near-GGGGGG.npz        each row's look-alikes (nearest rows) and its attribute codes smoothed over
                           them, which a description search ranks by (``xreid.index.lookalikes``);
                           derived from the vectors and codes when a build or add finishes

Each commit writes its segment files (atomically: temporary file, fsync, rename), then replaces
``manifest.json`` (the same way) with one that lists them. The manifest is the only thing readers
trust, so a crash at any point leaves the previous committed state: files no manifest lists are
removed by the next writer. Writers hold ``CASE/.lock``; readers need no lock.

Row ids are integers 0..N-1 in the order rows were committed and never change; thumbnails are
served by id (``GalleryIndex.thumbnail``), never by path.

Attribute probabilities are stored as ``floor(256 p)`` clipped to 255 (uint8), so the filter
"attribute present" (p >= 0.5) is exactly ``code >= 128``; other thresholds t act as p >= ceil(256 t) / 256,
and the probabilities returned are the code's bin centres (within 1/512 of the calibrated value).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from xreid.binding import HEAD_FIELDS, check_binding
from xreid.distance import cosine_distance, l2_normalise
from xreid.index.ann import SCAN_FLOOR, AnnIndex, scan_nprobe
from xreid.index.base import Gallery, Hits
from xreid.index.features import save_features
from xreid.index.filters import Filter, _as_list, check_attribute_names
from xreid.index.integrity import DamagedFile, file_check, load_npz, npz_bytes, read_checked
from xreid.index.metadata import CAMERA, PID, TIME, check_column_name, format_time, parse_time
from xreid.index.sightings import crop_paths, is_sighting_key
from xreid.index.vector_file import VECTORS_KEY, map_vector_file, wants_file, write_vector_file
from xreid.io import atomic_write

log = logging.getLogger(__name__)

FORMAT, VERSION = "xreid-gallery-index", 1
MANIFEST, SEGMENTS, LOCK = "manifest.json", "segments", ".lock"
THUMB_HEIGHT = 128
#: a filtered search keeping at most this many rows scans them exactly (faster than the ANN then)
EXACT_LIMIT = 20_000
#: indexes with fewer rows get no ANN structure: every search is exact
ANN_MIN_ROWS = 50_000
#: more segments than this are merged into one at the end of a build or add
MAX_SEGMENTS = 16
BUILDING, READY = "building", "ready"
#: the manifest's entry for the look-alikes file
LOOKALIKES_KEY = "lookalikes"
_SEGMENT = re.compile(r"^(seg|t)-(\d{6})\.(npz|bin)$")
_ANN = re.compile(r"^ann-(\d{6})\.faiss$")
_NEAR = re.compile(r"^near-(\d{6})\.npz$")
_VEC = re.compile(r"^vec-(\d{6})\.npy$")


class GalleryIndexError(ValueError):
    """An index folder that cannot be used as asked (missing, another format, another model...)."""


# --- probabilities -----------------------------------------------------------------------------------

def encode_probabilities(p: np.ndarray) -> np.ndarray:
    """Calibrated probabilities -> uint8 codes floor(256 p), clipped to [0, 255]."""
    return np.clip(np.floor(np.asarray(p, np.float64) * 256.0), 0, 255).astype(np.uint8)


def decode_probabilities(codes: np.ndarray) -> np.ndarray:
    """uint8 codes -> the centre of each code's probability bin."""
    return (np.asarray(codes, np.float32) + 0.5) / 256.0


def threshold_code(t: float) -> int:
    """The smallest code of the probabilities >= ``t`` (exact for t = j / 256, e.g. 0.5 -> 128). The
    codes stop at 255 (p = 1 is stored as 255), so t = 1 keeps the rows coded 255 (p >= 255 / 256)."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"attribute threshold {t} is not a probability in [0, 1]")
    return min(int(math.ceil(t * 256.0)), 255)


# --- files -------------------------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_manifest(case: Path) -> dict:
    path = Path(case) / MANIFEST
    if not path.is_file():
        if not Path(case).exists():
            raise FileNotFoundError(f"{case}: index not found")
        raise GalleryIndexError(f"{case}: not a gallery index (no {MANIFEST}; build one with `xreid index build`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GalleryIndexError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise GalleryIndexError(f"{path}: not an xreid gallery index manifest")
    if manifest.get("version") != VERSION:
        raise GalleryIndexError(f"{path}: index format version {manifest.get('version')}, this xreid reads "
                                f"version {VERSION}")
    return manifest


def _write_manifest(case: Path, manifest: dict) -> None:
    manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        atomic_write(case / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))
    except OSError as exc:
        raise IndexWriteError.of(case / MANIFEST, exc) from None
    _fsync_dir(case)


# --- a batch of rows -----------------------------------------------------------------------------------

@dataclass
class Rows:
    """Rows to commit: keys (image paths relative to the data root), embeddings as the model gave
    them, calibrated attribute probabilities (n x A), string fields per row, times (seconds, NaN =
    unknown) and JPEG thumbnails (or None)."""

    keys: list[str]
    vectors: np.ndarray
    probabilities: np.ndarray
    fields: list[dict[str, str]] | None = None
    times: np.ndarray | None = None
    thumbnails: list[bytes] | None = None

    def __post_init__(self) -> None:
        n = len(self.keys)
        self.vectors = np.asarray(self.vectors, np.float32).reshape(n, -1)
        self.probabilities = np.asarray(self.probabilities, np.float64).reshape(n, -1)
        self.fields = self.fields if self.fields is not None else [{} for _ in range(n)]
        self.times = np.full(n, np.nan) if self.times is None else np.asarray(self.times, np.float64)
        for what, value in (("fields", self.fields), ("times", self.times), ("thumbnails", self.thumbnails)):
            if value is not None and len(value) != n:
                raise ValueError(f"{n} keys but {len(value)} {what}")
        if len(set(self.keys)) != n:
            raise ValueError("a key appears twice in one batch")


def _encode_column(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    vocab, codes = np.unique(np.asarray(list(values), dtype=str), return_inverse=True)
    return vocab, codes.astype(np.int32)


# --- writing -------------------------------------------------------------------------------------------

class IndexWriter:
    """Commits rows to an index folder, one durable segment per ``commit``. Get one with
    ``IndexWriter.create`` (a new or interrupted build) or ``IndexWriter.append`` (``xreid index add``);
    use it as a context manager, or call ``close``, to release the folder's lock."""

    def __init__(self, case: Path, manifest: dict, lock_fd: int):
        self.case, self.manifest, self._lock_fd = case, manifest, lock_fd
        self.segments_dir = case / SEGMENTS
        self._keys: set[str] | None = None
        self._added_segments: list[str] = []

    # -- opening --

    @staticmethod
    def _lock(case: Path) -> int:
        import fcntl

        try:
            case.mkdir(parents=True, exist_ok=True)
            fd = os.open(case / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IndexWriteError.of(case / LOCK, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise GalleryIndexError(f"{case}: another xreid process is writing this index") from None
        return fd

    @classmethod
    def create(cls, case: str | Path, identity: dict, attribute_names: Sequence[str], head: dict,
               embedding_dim: int, source: str = "") -> "IndexWriter":
        """A writer for a new index at ``case``, or for the interrupted build found there (same model
        set-up and attribute head required). A finished index there is an error: add to it instead."""
        case = Path(case)
        if case.exists() and not case.is_dir():
            raise GalleryIndexError(f"{case}: exists and is not a folder")
        def prepare() -> dict:
            if (case / MANIFEST).is_file():
                manifest = read_manifest(case)
                _refuse_sharded(case, manifest)
                if manifest["state"] != BUILDING:
                    raise GalleryIndexError(f"{case}: already holds a finished index of {manifest['count']} images; "
                                            f"add images with `xreid index add {case} ...` or choose another --out")
                _check_model(case, manifest, identity, attribute_names, head,
                             remedy="Resuming would mix two models in one index: run the build with the "
                                    f"first run's model options, or delete {case} to start over.")
                log.info("%s: resuming an interrupted build (%d images committed)", case, manifest["count"])
                return manifest
            extra = [p.name for p in case.iterdir() if p.name not in (LOCK, SEGMENTS)]
            if extra:
                raise GalleryIndexError(f"{case}: folder is not empty and holds no index ({', '.join(sorted(extra)[:5])}"
                                        f"); choose an empty or new folder")
            manifest = {"format": FORMAT, "version": VERSION, "state": BUILDING, "identity": identity,
                        "embedding_dim": int(embedding_dim),
                        "attributes": {"names": list(attribute_names), **head,
                                       "encoding": "uint8 floor(256 p): p >= 0.5 exactly when code >= 128"},
                        "columns": {CAMERA: "string", TIME: "time", PID: "string"},
                        "thumbnail_height": THUMB_HEIGHT, "segments": [], "count": 0, "next_segment": 0,
                        "generation": 0, "ann": None, "source": source,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            (case / SEGMENTS).mkdir(exist_ok=True)
            _write_manifest(case, manifest)
            return manifest

        return cls._locked(case, prepare)

    @classmethod
    def _locked(cls, case: Path, prepare) -> "IndexWriter":
        """Take the writer lock, then ``prepare()`` the manifest to write to under it; the lock is
        released if that fails."""
        fd = cls._lock(case)
        try:
            writer = cls(case, prepare(), fd)
            writer.remove_orphans()
            return writer
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def append(cls, case: str | Path, identity: dict, attribute_names: Sequence[str], head: dict) -> "IndexWriter":
        """A writer that adds rows to the finished index at ``case``; refuses another model set-up or
        another attribute head (the error names both)."""
        case = Path(case)
        read_manifest(case)  # no index there: say so before taking a lock

        def prepare() -> dict:
            manifest = read_manifest(case)  # as it is now that we hold the lock
            _refuse_sharded(case, manifest)
            if manifest["state"] != READY:
                raise GalleryIndexError(f"{case}: its build was interrupted; run the same `xreid index build` "
                                        f"command again to finish it before adding images")
            _check_model(case, manifest, identity, attribute_names, head,
                         remedy="Build a separate index for this model (`xreid index build --out NEW ...`).")
            return manifest

        return cls._locked(case, prepare)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "IndexWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- state --

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def keys(self) -> set[str]:
        """The keys already committed (read from the segments once, then kept up to date)."""
        if self._keys is None:
            self._keys = set()
            for seg in self.manifest["segments"]:
                if seg.get("file"):  # a segment dropped by `xreid index check --repair` holds no keys
                    self._keys.update(_load_segment(self.segments_dir / seg["file"], _check_of(seg),
                                                    only=("keys",))["keys"].tolist())
        return self._keys

    def _files_in_use(self) -> set[str]:
        names = {MANIFEST, LOCK, SEGMENTS}
        for seg in self.manifest["segments"]:
            names.add(seg["file"])
            names.update(p for p in seg["packs"] if p)
        for derived in ("ann", LOOKALIKES_KEY, VECTORS_KEY):
            if self.manifest.get(derived):
                names.add(self.manifest[derived]["file"])
        return names

    def remove_orphans(self, superseded: bool = False) -> list[str]:
        """Delete what no manifest lists: files an interrupted writer left (segment, thumbnail and
        ANN files, temporary files), or with ``superseded`` those a merge or a new ANN file just
        replaced (not worth a message). Returns their names."""
        used = self._files_in_use()
        removed = []
        for folder in (self.case, self.segments_dir):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                orphan = (p.name.endswith(".tmp") and p.name.startswith(".")) or (
                    p.name not in used and any(r.match(p.name) for r in (_SEGMENT, _ANN, _NEAR, _VEC)))
                if orphan and p.is_file():
                    p.unlink()
                    removed.append(p.name)
        if removed and not superseded:
            log.info("%s: removed %d file(s) no manifest lists (left by an interrupted run)", self.case, len(removed))
        return removed

    # -- committing --

    def commit(self, rows: Rows) -> range:
        """Write ``rows`` as one segment and commit it; returns their ids. Keys already in the index
        are an error (the caller skips them)."""
        n = len(rows.keys)
        if n == 0:
            return range(self.count, self.count)
        dim, names = self.manifest["embedding_dim"], self.manifest["attributes"]["names"]
        if rows.vectors.shape[1] != dim:
            raise ValueError(f"{self.case}: index holds {dim}-d embeddings, got {rows.vectors.shape[1]}-d")
        if rows.probabilities.shape[1] != len(names):
            raise ValueError(f"{self.case}: index holds {len(names)} attributes, got {rows.probabilities.shape[1]}")
        dup = [k for k in rows.keys if k in self.keys]
        if dup:
            raise ValueError(f"{self.case}: already indexed: {', '.join(dup[:3])}")
        seq = int(self.manifest["next_segment"])
        self.segments_dir.mkdir(exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "keys": np.asarray(rows.keys, dtype=str), "vectors": rows.vectors,
            "attributes": encode_probabilities(rows.probabilities), TIME: rows.times.astype(np.float64)}
        columns = dict(self.manifest["columns"])
        for row in rows.fields:
            for name in row:
                if name not in columns:
                    check_column_name(name, f"{self.case}: field")
                    columns[name] = "string"
        for name, kind in columns.items():
            if kind == "string":
                arrays[f"vocab:{name}"], arrays[f"codes:{name}"] = _encode_column([r.get(name, "") for r in rows.fields])
        packs, checks = [], {}
        if rows.thumbnails is not None:
            pack = f"t-{seq:06d}.bin"
            lengths = np.array([len(t) for t in rows.thumbnails], np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            blob = b"".join(rows.thumbnails)
            checks[pack] = file_check(blob)
            self._write(self.segments_dir / pack, blob)
            arrays.update(thumb_pack=np.zeros(n, np.int32), thumb_offset=offsets, thumb_length=lengths)
            packs.append(pack)
        else:
            arrays.update(thumb_pack=np.full(n, -1, np.int32), thumb_offset=np.zeros(n, np.int64),
                          thumb_length=np.zeros(n, np.int64))
        name = f"seg-{seq:06d}.npz"
        blob = npz_bytes(arrays)
        checks[name] = file_check(blob)
        self._write(self.segments_dir / name, blob)
        _fsync_dir(self.segments_dir)
        first = self.count
        manifest = {**self.manifest, "columns": columns, "next_segment": seq + 1, "count": first + n,
                    "generation": self.manifest["generation"] + 1,
                    "segments": self.manifest["segments"] + [{"file": name, "packs": packs, "rows": n,
                                                               "first_id": first, "checks": checks}]}
        self._publish(manifest)
        self.keys.update(rows.keys)
        self._added_segments.append(name)
        return range(first, first + n)

    def _write(self, path: Path, data: bytes) -> None:
        """Write one file of the index atomically; a full disk or a read-only / forbidden folder is an
        IndexWriteError naming the path (what was committed before stays as it was)."""
        try:
            atomic_write(path, lambda fh: fh.write(data))
        except OSError as exc:
            raise IndexWriteError.of(path, exc) from None

    def _publish(self, manifest: dict) -> None:
        """Make ``manifest`` the committed state (the one atomic step of every change)."""
        _write_manifest(self.case, manifest)
        self.manifest = manifest

    def merge_segments(self, everything: bool = False) -> None:
        """Merge segments (rows, ids and thumbnail packs unchanged): all of them with ``everything``
        or when there are more than ``MAX_SEGMENTS``, else those this writer added (so each build
        or add leaves one segment)."""
        segs = self.manifest["segments"]
        if everything or len(segs) > MAX_SEGMENTS:
            group = segs
        else:
            added = set(self._added_segments)
            group = [s for s in segs if s["file"] in added]
            if group and segs[len(segs) - len(group):] != group:  # only a trailing run of segments merges
                return
        if len(group) < 2 or any(not s.get("file") for s in group):  # dropped rows keep their segment entry
            return
        parts = [_load_segment(self.segments_dir / s["file"], _check_of(s)) for s in group]
        packs: list[str] = []
        merged: dict[str, np.ndarray] = {}
        for key in ("keys", "vectors", "attributes", TIME, "thumb_offset", "thumb_length"):
            merged[key] = np.concatenate([p[key] for p in parts])
        pack_ids = []
        for seg, p in zip(group, parts):
            base = len(packs)
            packs += seg["packs"]
            pack_ids.append(np.where(p["thumb_pack"] >= 0, p["thumb_pack"] + base, -1))
        merged["thumb_pack"] = np.concatenate(pack_ids).astype(np.int32)
        for name, kind in self.manifest["columns"].items():
            if kind == "string":
                values = np.concatenate([_column_values(p, name, len(p["keys"])) for p in parts])
                merged[f"vocab:{name}"], merged[f"codes:{name}"] = _encode_column(values)
        seq = int(self.manifest["next_segment"])
        name = f"seg-{seq:06d}.npz"
        blob = npz_bytes(merged)
        checks = {p: c for s in group for p, c in s.get("checks", {}).items() if p in packs}
        checks[name] = file_check(blob)
        self._write(self.segments_dir / name, blob)
        del blob
        _fsync_dir(self.segments_dir)
        keep = segs[:len(segs) - len(group)]
        entry = {"file": name, "packs": packs, "rows": int(len(merged["keys"])), "first_id": group[0]["first_id"],
                 "checks": checks}
        self._publish({**self.manifest, "segments": keep + [entry], "next_segment": seq + 1,
                       "generation": self.manifest["generation"] + 1})
        self._added_segments = [name]
        self.remove_orphans(superseded=True)

    def update_ann(self, min_rows: int = ANN_MIN_ROWS, rebuild: bool = False,
                   scan_floor: float | None = None) -> AnnIndex | None:
        """Build (or extend with the rows it lacks) the ANN structure and commit it; none below
        ``min_rows`` rows. One trained on fewer than half the rows is trained again (its lists and
        codebooks would no longer fit the data). ``scan_floor``: the smallest fraction of its lists a
        search scans (``xreid.index.ann``); None keeps the one the index recorded, else ``SCAN_FLOOR``."""
        if self.count < min_rows:
            return None
        current = self.manifest.get("ann")
        if scan_floor is None:
            scan_floor = (current or {}).get("scan_floor", SCAN_FLOOR)
        scan_nprobe(1, 1, scan_floor)  # a floor out of range is an error before any work
        ann = None
        if current and not rebuild and current.get("trained_rows", current["rows"]) * 2 >= self.count:
            try:
                read_checked(self.case / current["file"], current if "sha256" in current else None)
                ann = AnnIndex.from_manifest(self.case / current["file"], current, scan_floor)
            except (ValueError, OSError) as exc:  # DamagedFile included
                log.warning("%s; building it again", exc)
        if ann is not None and ann.rows == self.count and current.get("scan_floor") == scan_floor:
            return ann
        if ann is not None and ann.rows == self.count:  # only the floor changed: no new file
            self._publish({**self.manifest, "generation": self.manifest["generation"] + 1,
                           "ann": {**current, **ann.manifest_entry()}})
            return ann
        vectors = self.unit_vectors()
        if ann is not None and ann.rows < self.count:
            ann.add(vectors[ann.rows:])
            trained = current.get("trained_rows", current["rows"])
        else:
            ann = AnnIndex.build(vectors, scan_floor=scan_floor)
            trained = ann.rows
        generation = self.manifest["generation"] + 1
        name = f"ann-{generation:06d}.faiss"
        try:
            ann.save(self.case / name)
            check = file_check((self.case / name).read_bytes())
        except OSError as exc:
            raise IndexWriteError.of(self.case / name, exc) from None
        self._publish({**self.manifest, "generation": generation,
                       "ann": {"file": name, **check, "rows": ann.rows, "trained_rows": trained,
                               **ann.manifest_entry()}})
        self.remove_orphans(superseded=True)
        return ann

    def update_lookalikes(self, ann: AnnIndex | None = None) -> None:
        """Find every row's look-alikes and smooth its attribute codes over them
        (``xreid.index.lookalikes``), and commit them; nothing to do when they are up to date."""
        from xreid.explain.description_score import LOOKALIKE_WEIGHT, LOOKALIKES
        from xreid.index.lookalikes import extend_nearest, lookalike_codes

        current = self.manifest.get(LOOKALIKES_KEY)
        settings = {"m": LOOKALIKES, "weight": LOOKALIKE_WEIGHT}
        same = bool(current) and all(current.get(k) == v for k, v in settings.items())
        if same and current["rows"] == self.count:
            return
        vectors = self.unit_vectors()
        codes = load_attribute_codes(self.case, self.manifest)
        usable = np.concatenate([np.full(s["rows"], bool(s.get("file"))) for s in self.manifest["segments"]]
                                ) if self.manifest["segments"] else np.zeros(0, bool)
        if ann is not None and ann.rows != len(vectors):
            ann = None
        known = np.zeros((0, LOOKALIKES), np.int32), np.zeros((0, LOOKALIKES), np.float32)
        if same and current["rows"] < self.count:  # an add: only the new rows are searched for
            try:
                data = load_npz(self.case / current["file"], current)
                if "similarity" in data:
                    known = data["neighbours"], data["similarity"]
            except DamagedFile as exc:
                log.warning("%s; finding every row's look-alikes again", exc)
        neighbours, similarity = extend_nearest(vectors, *known, usable, ann)
        smoothed = lookalike_codes(codes, neighbours, LOOKALIKE_WEIGHT)
        generation = self.manifest["generation"] + 1
        name = f"near-{generation:06d}.npz"
        blob = npz_bytes({"neighbours": neighbours, "similarity": similarity, "codes": smoothed})
        check = file_check(blob)
        self._write(self.case / name, blob)
        self._publish({**self.manifest, "generation": generation,
                       LOOKALIKES_KEY: {"file": name, **check, "rows": len(vectors), **settings}})
        self.remove_orphans(superseded=True)

    def unit_vectors(self) -> np.ndarray:
        """Every row's unit vector (N x D float32, id order): mapped from the vector file when it is up
        to date, else read from the segments."""
        mapped = mapped_vectors(self.case, self.manifest)
        if mapped is not None:
            return mapped
        return l2_normalise(load_vectors(self.case, self.manifest)).astype(np.float32, copy=False)

    def update_vector_file(self, min_bytes: int | None = None) -> None:
        """Write the vector file (``xreid.index.vector_file``) when the index's vectors reach
        ``min_bytes`` (default ``MAP_MIN_BYTES``) and the file does not cover every row (or is gone or
        damaged), and commit it; read segment by segment."""
        current, dim = self.manifest.get(VECTORS_KEY), self.manifest["embedding_dim"]
        if not wants_file(self.count, dim, min_bytes):
            return
        if current and current["rows"] == self.count:
            try:  # up to date, unless the file is gone or damaged (size and header: cheap)
                map_vector_file(self.case / current["file"], current)
                return
            except DamagedFile as exc:
                log.warning("%s: %s; writing it again", exc.path, exc.problem)

        def parts():
            for seg in self.manifest["segments"]:
                if not seg.get("file"):
                    yield np.zeros((seg["rows"], dim), np.float32)
                else:
                    yield _load_segment(self.segments_dir / seg["file"], _check_of(seg), only=("vectors",))["vectors"]

        generation = self.manifest["generation"] + 1
        name = f"vec-{generation:06d}.npy"
        try:
            entry = write_vector_file(self.case / name, parts(), self.count, dim)
        except OSError as exc:
            raise IndexWriteError.of(self.case / name, exc) from None
        self._publish({**self.manifest, "generation": generation, VECTORS_KEY: {"file": name, **entry}})
        self.remove_orphans(superseded=True)

    def finish(self, ann_min_rows: int = ANN_MIN_ROWS, scan_floor: float | None = None,
               map_min_bytes: int | None = None) -> dict:
        """End a build or add: merge segments (a build, resumed or not, ends with one), bring the vector
        file (for an index of at least ``map_min_bytes`` of vectors, ``update_vector_file``'s), the ANN
        (with ``scan_floor``, ``update_ann``'s) and the look-alikes up to date, mark the index ready."""
        self.merge_segments(everything=self.manifest["state"] == BUILDING)
        self.update_vector_file(map_min_bytes)
        ann = self.update_ann(ann_min_rows, scan_floor=scan_floor)
        self.update_lookalikes(ann)
        if self.manifest["state"] != READY:
            self._publish({**self.manifest, "state": READY})
        return self.manifest


def _refuse_sharded(case: Path, manifest: dict) -> None:
    if manifest.get("shards"):
        raise GalleryIndexError(f"{case}: a sharded index; build it with the same --shards to resume it "
                                f"(adding to a sharded index is not supported yet)")


def _check_model(case: Path, manifest: dict, identity: dict, attribute_names: Sequence[str], head: dict,
                 remedy: str) -> None:
    check_binding(case, manifest["identity"], identity, remedy=remedy)
    check_binding(case, manifest["attributes"], {**head, "names": list(attribute_names)}, remedy=remedy,
                  fields=HEAD_FIELDS, what="built with another attribute head", verb="built with head",
                  error=GalleryIndexError)


def _check_of(seg: dict) -> dict | None:
    """The recorded size and SHA-256 of a segment entry's file (None for indexes written before them)."""
    return seg.get("checks", {}).get(seg["file"])


def _load_segment(path: Path, check: dict | None = None, skip: tuple[str, ...] = (),
                  only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    try:
        return load_npz(path, check, skip, only)
    except DamagedFile as exc:
        raise DamagedSegment(str(exc), path) from None


class DamagedSegment(GalleryIndexError):
    """A segment file that is missing, truncated or changed since it was written."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


class IndexWriteError(GalleryIndexError):
    """A file of the index could not be written (disk full, read-only or forbidden folder)."""

    @classmethod
    def of(cls, path: Path, exc: OSError) -> "IndexWriteError":
        import errno

        hint = {errno.ENOSPC: "the disk is full: free space", errno.EDQUOT: "the disk quota is used up: free space",
                errno.EROFS: "the file system is read-only: remount it writable or use a copy of the index elsewhere",
                errno.EACCES: "permission denied: make the folder writable for this user",
                errno.EPERM: "permission denied: make the folder writable for this user"}.get(
            exc.errno, "fix the cause")
        return cls(f"{path}: cannot write ({exc.strerror or exc}); {hint}, then run the same command again: "
                   f"what was committed before is intact and the run continues from there")


def _dead_rows(n: int, dim: int, n_attr: int) -> dict[str, np.ndarray]:
    """Stand-in arrays for the rows of a segment that cannot be read (never returned by a search)."""
    return {"keys": np.full(n, "", dtype=str), "vectors": np.zeros((n, dim), np.float32),
            "attributes": np.zeros((n, n_attr), np.uint8), TIME: np.full(n, np.nan),
            "thumb_pack": np.full(n, -1, np.int32), "thumb_offset": np.zeros(n, np.int64),
            "thumb_length": np.zeros(n, np.int64)}


def _column_values(seg: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    if f"codes:{name}" in seg:
        return seg[f"vocab:{name}"][seg[f"codes:{name}"]]
    return np.full(n, "", dtype=str)


def load_attribute_codes(case: Path, manifest: dict) -> np.ndarray:
    """All attribute codes (A x N uint8), in id order; zeros for dropped rows."""
    n_attr = len(manifest["attributes"]["names"])
    parts = [_load_segment(Path(case) / SEGMENTS / s["file"], _check_of(s), only=("attributes",))["attributes"]
             if s.get("file")
             else np.zeros((s["rows"], n_attr), np.uint8) for s in manifest["segments"]]
    return np.ascontiguousarray(np.concatenate(parts).T) if parts else np.zeros((n_attr, 0), np.uint8)


def load_lookalikes(case: Path, manifest: dict, rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(neighbours N x m, smoothed codes A x N) of an index, or None when it has none up to date
    (built before them, or an add not finished) or the file is damaged (said in the log)."""
    from xreid.explain.description_score import LOOKALIKE_WEIGHT, LOOKALIKES

    info = manifest.get(LOOKALIKES_KEY)
    if not info or info["rows"] != rows or info.get("m") != LOOKALIKES or info.get("weight") != LOOKALIKE_WEIGHT:
        return None
    try:
        data = load_npz(Path(case) / info["file"], info)
    except DamagedFile as exc:
        log.warning("%s; a description search reads each image alone", exc)
        return None
    return data["neighbours"], np.ascontiguousarray(data["codes"])


def mapped_vectors(case: Path, manifest: dict) -> np.ndarray | None:
    """A large index's unit vectors mapped from its vector file when that covers every committed row;
    None when it has none up to date, or when the file is damaged (said in the log)."""
    info = manifest.get(VECTORS_KEY)
    if not info or info["rows"] != sum(s["rows"] for s in manifest["segments"]):
        return None
    try:
        return map_vector_file(Path(case) / info["file"], info)
    except DamagedFile as exc:
        log.warning("%s; reading the vectors from the segments", exc)
        return None


def load_vectors(case: Path, manifest: dict) -> np.ndarray:
    """All embeddings (N x D float32, as the model gave them), in id order."""
    parts = []
    for seg in manifest["segments"]:
        if not seg.get("file"):  # dropped rows: zero vectors keep the ids in place
            parts.append(np.zeros((seg["rows"], manifest["embedding_dim"]), np.float32))
            continue
        data = _load_segment(Path(case) / SEGMENTS / seg["file"], _check_of(seg), only=("vectors",))
        if "vectors" not in data:
            raise DamagedSegment(f"{case}: segment {seg['file']} holds no vectors; the index is damaged",
                                 Path(case) / SEGMENTS / seg["file"])
        parts.append(data["vectors"])
    return np.concatenate(parts) if parts else np.zeros((0, manifest["embedding_dim"]), np.float32)


# --- searching -----------------------------------------------------------------------------------------

@dataclass
class SearchResult(Hits):
    """``Hits`` of the index (nearest first: row ids, exact cosine distances from ``xreid.distance``,
    how the search ran, 'exact' or 'ann', and how many rows the filter kept) with one metadata row
    per result (``GalleryIndex.row``)."""

    rows: list[dict] = field(default_factory=list)


def _codes_in(codes: np.ndarray, hits: list[int], vocab_size: int) -> np.ndarray:
    """Rows whose code is one of ``hits``: a comparison per value for a few values, one lookup
    table for many."""
    if len(hits) <= 8:
        out = np.zeros(len(codes), bool)
        for h in hits:
            out |= codes == h
        return out
    table = np.zeros(vocab_size, bool)
    table[hits] = True
    return table[codes]


def _top_k(dist: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest distances, ties broken by id (as ``rank_gallery``'s stable sort)."""
    if len(dist) > 4 * k:
        kth = dist[np.argpartition(dist, k - 1)[:k]].max()
        pos = np.flatnonzero(dist <= kth)
    else:
        pos = np.arange(len(dist))
    return pos[np.lexsort((ids[pos], dist[pos]))][:k]


class GalleryIndex(Gallery):
    """A committed index, read into memory: ``GalleryIndex.open(CASE).search(vector, k, where=Filter(...))``.
    Holds the unit-normalised vectors (float32), attribute codes (one contiguous array per
    attribute), times and dictionary-encoded string columns; reopen to see later commits. Implements
    ``xreid.index.base.Gallery``; its images are read under ``image_root`` (the data root)."""

    def __init__(self, case: Path, manifest: dict, vectors: np.ndarray, attributes: np.ndarray, keys: np.ndarray,
                 times: np.ndarray, columns: dict[str, tuple[np.ndarray, np.ndarray]], thumbs: dict[str, np.ndarray],
                 ann: AnnIndex | None, image_root: Path | None = None):
        super().__init__()
        self.case, self.manifest, self.image_root = case, manifest, image_root
        self.vectors, self.attribute_codes, self.keys, self.times = vectors, attributes, keys, times
        self.columns, self._thumbs, self.ann = columns, thumbs, ann
        #: damaged segment files found on opening ({file: problem}); their rows are never returned
        self.damaged: dict[str, str] = {}
        #: rows that cannot be served (damaged or dropped segments), None when there are none
        self.dead: np.ndarray | None = None
        #: each row's look-alikes (N x m row ids) and its attribute codes smoothed over them (A x N),
        #: what a description search ranks by; None for an index without them up to date
        self.lookalikes: np.ndarray | None = None
        self.lookalike_codes: np.ndarray | None = None
        self._pack_checked: dict[str, str | None] = {}  # pack -> problem (None: verified)
        self.attribute_names: list[str] = list(manifest["attributes"]["names"])
        self._attr_pos = {n: i for i, n in enumerate(self.attribute_names)}
        self._packs = [p for seg in manifest["segments"] for p in seg["packs"]]
        self._pack_checks = {p: c for seg in manifest["segments"] for p, c in seg.get("checks", {}).items()}

    @classmethod
    def open(cls, case: str | Path, ann: bool = True, image_root: str | Path | None = None) -> "GalleryIndex":
        """Read the committed state of ``case`` (an interrupted build is readable too: its committed
        rows). ``ann=False`` skips the ANN structure (every search exact); ``image_root``: where the
        images of its keys lie (the data root), for ``image``."""
        case = Path(case)
        manifest = read_manifest(case)
        if manifest.get("shards"):  # a sharded case: its own backend (xreid.index.sharded)
            from xreid.index.sharded import ShardedGallery

            return ShardedGallery.open(case, ann=ann, image_root=image_root)
        n_attr, dim = len(manifest["attributes"]["names"]), manifest["embedding_dim"]
        mapped = mapped_vectors(case, manifest)  # then left out of the segments
        skip = ("vectors",) if mapped is not None else ()
        # a damaged segment is named and left out (its rows kept as dead rows, so later ids stay right);
        # the intact ones are served
        segs, damaged, dead = [], {}, []
        for s in manifest["segments"]:
            data = None
            if s.get("file"):
                try:
                    data = _load_segment(case / SEGMENTS / s["file"], _check_of(s), skip)
                    if len(data.get("keys", ())) != s["rows"]:
                        raise DamagedSegment(f"{case / SEGMENTS / s['file']}: holds {len(data.get('keys', ()))} rows, "
                                             f"the manifest says {s['rows']}; the index is damaged",
                                             case / SEGMENTS / s["file"])
                except DamagedSegment as exc:
                    log.warning("%s; its %d rows are left out of every search", exc, s["rows"])
                    damaged[s["file"]], data = str(exc), None
            dead.append(np.full(s["rows"], data is None))
            segs.append(data if data is not None else _dead_rows(s["rows"], dim, n_attr))
        cat = (lambda key, empty: np.concatenate([d[key] for d in segs]) if segs else empty)
        vectors = mapped if mapped is not None else l2_normalise(
            cat("vectors", np.zeros((0, dim), np.float32)).astype(np.float32, copy=False))
        attributes = np.ascontiguousarray(cat("attributes", np.zeros((0, n_attr), np.uint8)).T)
        keys = cat("keys", np.zeros(0, dtype=str))
        times = cat(TIME, np.zeros(0))
        columns = {}
        for name, kind in manifest["columns"].items():
            if kind != "string":
                continue
            parts = [(d[f"vocab:{name}"], d[f"codes:{name}"]) if f"codes:{name}" in d
                     else (np.array([""]), np.zeros(len(d["keys"]), np.int32)) for d in segs]
            vocab = np.unique(np.concatenate([v for v, _ in parts])) if parts else np.array([""])
            codes = (np.concatenate([np.searchsorted(vocab, v)[c].astype(np.int32) for v, c in parts]) if parts
                     else np.zeros(0, np.int32))
            columns[name] = (vocab, codes)
        pack_base, thumb_pack = 0, []
        for s, d in zip(manifest["segments"], segs):
            thumb_pack.append(np.where(d["thumb_pack"] >= 0, d["thumb_pack"] + pack_base, -1))
            pack_base += len(s["packs"])
        thumbs = {"pack": np.concatenate(thumb_pack) if segs else np.zeros(0, np.int32),
                  "offset": cat("thumb_offset", np.zeros(0, np.int64)),
                  "length": cat("thumb_length", np.zeros(0, np.int64))}
        index = None
        if ann and manifest.get("ann") and len(vectors):
            info = manifest["ann"]
            try:
                read_checked(case / info["file"], info if "sha256" in info else None)
                index = AnnIndex.from_manifest(case / info["file"], info)
            except (ValueError, OSError) as exc:
                log.warning("%s: %s; searching exactly", case, exc)
            if index is not None and index.rows > len(vectors):
                log.warning("%s: ANN file covers more rows than committed; searching exactly", case)
                index = None
            elif index is not None and index.rows < len(vectors):  # rows added since: add them in memory
                index.add(vectors[index.rows:])
        out = cls(case, manifest, vectors, attributes, keys, times, columns, thumbs, index,
                  None if image_root is None else Path(image_root))
        out.damaged = damaged
        dead_rows = np.concatenate(dead) if dead else np.zeros(0, bool)
        out.dead = dead_rows if dead_rows.any() else None
        near = load_lookalikes(case, manifest, len(vectors))
        if near is not None:
            out.lookalikes, out.lookalike_codes = near
        return out

    def description_codes(self) -> np.ndarray:
        """The attribute codes a description search ranks by (A x N): smoothed over each row's
        look-alikes where the index has them, else each row's own."""
        return self.attribute_codes if self.lookalike_codes is None else self.lookalike_codes

    def description_code_range(self) -> np.ndarray:
        """A x 2: the smallest and largest of each attribute's ``description_codes`` (computed once)."""
        codes = self.description_codes()
        cached = getattr(self, "_description_range", None)
        if cached is None or cached[0] is not codes:
            rng = (np.stack([codes.min(1), codes.max(1)], 1) if codes.shape[1]
                   else np.tile(np.array([0, 255], np.uint8), (len(codes), 1)))
            self._description_range = cached = (codes, rng)
        return cached[1]

    def is_dead(self, i: int) -> bool:
        """Row ``i`` lies in a damaged or dropped segment (nothing of it can be served)."""
        return self.dead is not None and bool(self.dead[i])

    def __len__(self) -> int:
        return len(self.keys)  # (not the vectors: a gallery whose vectors live elsewhere holds none here)

    @property
    def identity(self) -> dict:
        return self.manifest["identity"]

    @property
    def field_names(self) -> list[str]:
        return [n for n, kind in self.manifest["columns"].items() if kind == "string"]

    # -- filters --

    def mask(self, where: Filter | None) -> np.ndarray | None:
        """The rows ``where`` keeps (bool array), or None for no condition. Rows of damaged or dropped
        segments are never kept."""
        if where is None or where.is_empty():
            return None if self.dead is None else ~self.dead
        m = np.ones(len(self), bool) if self.dead is None else ~self.dead
        if where.camera is not None:
            wanted = {str(c) for c in _as_list(where.camera)}
            vocab, codes = self.columns[CAMERA]
            hits = [i for i, v in enumerate(vocab.tolist()) if v in wanted or v.rsplit("/", 1)[-1] in wanted]
            m &= _codes_in(codes, hits, len(vocab))
        if where.after is not None:
            m &= self.times >= parse_time(where.after)
        if where.before is not None:
            m &= self.times < parse_time(where.before)
        if where.attributes and where.mode != "keep":
            raise ValueError(f"an index applies attribute filters inside the search: mode 'keep' only "
                             f"(got {where.mode!r})")
        check_attribute_names(list(where.attributes), self.attribute_names)
        for name, want in where.attributes.items():
            col = self.attribute_codes[self._attr_pos[name]]
            if isinstance(want, (bool, np.bool_)):
                m &= (col >= 128) if want else (col < 128)
            else:
                m &= col >= threshold_code(float(want))
        for name, values in where.fields.items():
            if name not in self.columns:
                raise ValueError(f"filter: unknown field {name!r}; this index has: {', '.join(self.field_names)}")
            vocab, codes = self.columns[name]
            hits = np.flatnonzero(np.isin(vocab, [str(v) for v in _as_list(values)])).tolist()
            m &= _codes_in(codes, hits, len(vocab))
        return m

    # -- search --

    def search(self, query: np.ndarray, k: int = 10, where: Filter | None = None, exact: bool = False, *,
               rows: bool = True) -> SearchResult:
        """The ``k`` rows nearest ``query`` (an embedding from the index's model) among those ``where``
        keeps. The filter acts inside the search: the exact path scores only kept rows, the ANN path
        passes them as a bitmap that faiss checks before scoring. Small indexes, ``exact=True`` and
        filters keeping at most ``EXACT_LIMIT`` rows search exactly. ``rows=False`` leaves the
        results' metadata rows out (a shard's answer: most of it is dropped by the merge)."""
        if k < 1:
            raise ValueError(f"k must be at least 1 (got {k})")
        q = np.asarray(query, np.float32).reshape(-1)
        if q.shape[0] != self.vectors.shape[1]:
            raise ValueError(f"query has {q.shape[0]} dims, the index {self.vectors.shape[1]} "
                             f"(was it embedded by another model?)")
        q = l2_normalise(q).astype(np.float32)
        mask = self.mask(where)  # rows of damaged or dropped segments never among them
        kept = len(self) if mask is None else int(np.count_nonzero(mask))
        k = min(k, kept)
        if k == 0:
            return SearchResult(np.zeros(0, np.int64), [], np.zeros(0, np.float32), method="exact", candidates=kept,
                                size=len(self))
        if exact or self.ann is None or kept <= EXACT_LIMIT:
            ids = np.arange(len(self)) if mask is None else np.flatnonzero(mask)
            dist = cosine_distance(q, self.vectors if mask is None else self.vectors[ids], normalised=True)
            method = "exact"
        else:
            bitmap = None if mask is None else np.packbits(mask, bitorder="little")
            nprobe = self.ann.nprobe if mask is None else math.ceil(self.ann.nprobe * len(self) / kept)
            ids = self.ann.search(q, k, nprobe=nprobe, bitmap=bitmap)
            dist = cosine_distance(q, self.vectors[ids], normalised=True)
            method = "ann"
        top = _top_k(dist, ids, k)
        ids, dist = ids[top].astype(np.int64), dist[top].astype(np.float32)
        return SearchResult(ids, [str(self.keys[i]) for i in ids], dist, method=method, candidates=kept,
                            size=len(self), rows=[self.row(int(i)) for i in ids] if rows else [])

    # -- rows --

    def row(self, i: int, attributes: bool = True) -> dict:
        """Row ``i``'s metadata: id, path (key), camera, time (ISO 8601 UTC or None), pid, the other
        string fields (empty ones left out) and, with ``attributes``, {name: calibrated probability}."""
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} not in the index (0..{len(self) - 1})")
        out: dict = {"id": i, "path": str(self.keys[i]), TIME: format_time(float(self.times[i]))}
        for name, (vocab, codes) in self.columns.items():
            value = str(vocab[codes[i]])
            if value or name in (CAMERA, PID):
                out[name] = value or None
        if attributes:
            probs = decode_probabilities(self.attribute_codes[:, i])
            out["attributes"] = {n: round(float(p), 4) for n, p in zip(self.attribute_names, probs)}
        return out

    def thumbnail(self, i: int) -> bytes | None:
        """Row ``i``'s JPEG thumbnail (128 px high), None when the index keeps none for it."""
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} not in the index (0..{len(self) - 1})")
        pack = int(self._thumbs["pack"][i])
        if pack < 0 or not self._packs[pack]:  # none stored, or its pack dropped by a repair
            return None
        name = self._packs[pack]
        path = self.case / SEGMENTS / name
        if name not in self._pack_checked:  # the whole pack verified once, the first time it is read
            try:
                read_checked(path, self._pack_checks.get(name))
                self._pack_checked[name] = None
            except DamagedFile as exc:
                log.warning("%s", exc)
                self._pack_checked[name] = str(exc)
        if self._pack_checked[name]:
            raise DamagedSegment(self._pack_checked[name], path)
        offset, length = int(self._thumbs["offset"][i]), int(self._thumbs["length"][i])
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(length)
        except OSError as exc:
            raise DamagedSegment(f"{path}: unreadable ({exc.strerror}); the index is damaged", path) from None
        if len(data) != length or not (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")):
            raise DamagedSegment(f"{path}: thumbnail of row {i} is cut short or not a whole JPEG "
                                 f"({len(data):,} of {length:,} bytes); the index is damaged", path)
        return data

    def probabilities(self, ids: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Calibrated attribute probabilities (n x A, bin centres) of ``ids`` (default: every row)."""
        codes = self.attribute_codes if ids is None else self.attribute_codes[:, np.asarray(ids, np.int64)]
        return decode_probabilities(codes.T)

    def facets(self, most: int = 200) -> dict:
        """What a search page draws its facets from: per attribute, how many rows have it (calibrated
        probability >= 0.5); the cameras (sorted, with counts); the time range and how many rows have
        a time; the other string fields' most frequent values (``most`` at most)."""
        times = self.times[np.isfinite(self.times)]
        return {
            "attributes": {n: int(np.count_nonzero(self.attribute_codes[a] >= 128))
                           for a, n in enumerate(self.attribute_names)},
            "cameras": sorted(_value_counts(*self.columns[CAMERA], most=1000), key=lambda c: c["value"])
            if CAMERA in self.columns else [],
            "time": {"first": format_time(float(times.min())) if len(times) else None,
                     "last": format_time(float(times.max())) if len(times) else None, "known": int(len(times))},
            "fields": [{"name": n, "values": _value_counts(*self.columns[n], most=most)}
                       for n in self.field_names if n not in (CAMERA, PID)]}

    # -- the Gallery interface --

    def vectors_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Embeddings of ``ids`` (L2-normalised float32)."""
        return self.vectors[np.asarray(ids, np.int64)]

    def metadata(self, i: int) -> dict:
        return self.row(int(i), attributes=False)

    def key(self, i: int) -> str:
        return str(self.keys[i])

    def image_path(self, i: int) -> Path:
        """Where row ``i``'s image lies: in the case for a sighting of footage (``index.sightings``),
        else under ``image_root``."""
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} not in the index (0..{len(self) - 1})")
        key = str(self.keys[i])
        if is_sighting_key(key):
            return self.case / key
        if self.image_root is None:
            raise ValueError(f"{self.case}: open the index with image_root (the data root) to read its images")
        return self.image_root / key

    def view_paths(self, i: int) -> list[Path]:
        """Row ``i``'s image, or for a sighting its best crops (``crop-K.jpg`` in its folder, best first)."""
        path = self.image_path(i)
        if not is_sighting_key(str(self.keys[i])):
            return [path]
        return crop_paths(path.parent) or [path]

    def export_features(self, out: str | Path) -> int:
        """Write the embeddings in ``xreid embed``'s ``.npz`` format (see ``export_features``)."""
        return export_features(self.case, out)


def _value_counts(vocab: np.ndarray, codes: np.ndarray, most: int = 200) -> list[dict]:
    """The most frequent values of a string column (empty values left out), for a facet."""
    counts = np.bincount(codes, minlength=len(vocab))
    order = np.argsort(-counts, kind="stable")
    return [{"value": str(vocab[i]), "count": int(counts[i])} for i in order[:most] if counts[i] and vocab[i]]


def export_features(case: str | Path, out: str | Path) -> int:
    """Write the committed embeddings of ``case`` (as the model gave them, not normalised) in ``xreid
    embed``'s ``.npz`` format with the index's model identity; returns how many. Reads only keys and
    vectors."""
    case = Path(case)
    manifest = read_manifest(case)
    if manifest.get("shards"):
        raise GalleryIndexError(f"{case}: a sharded index; export it shard by shard ({case}/shard-000 ...)")
    keys, vectors = [], []
    for seg in manifest["segments"]:
        if not seg.get("file"):  # rows dropped by a repair are not exported
            continue
        data = _load_segment(case / SEGMENTS / seg["file"], _check_of(seg), only=("keys", "vectors"))
        keys += data["keys"].tolist()
        vectors.append(data["vectors"])
    raw = np.concatenate(vectors) if vectors else np.zeros((0, manifest["embedding_dim"]), np.float32)
    save_features(Path(out), dict(zip(keys, raw)), manifest["identity"])
    return len(raw)
