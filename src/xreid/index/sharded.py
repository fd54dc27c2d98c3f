"""A sharded gallery: N ordinary gallery indexes searched in parallel and merged as one.

Layout of a sharded case ``CASE/``::

    manifest.json        the index manifest (same format and version as ``xreid.index.gallery``) with
                         ``shards``: the shard folder names, and the model identity, attribute head,
                         embedding size and state of the whole; it holds no segments itself
    shard-NNN/           one normal ``GalleryIndex`` folder per shard (its own manifest, segments, ANN)

A row goes to shard ``shard_of(key, N)`` (a stable hash of its key), so a rerun of an interrupted
build sends every image to the shard it went to before and each shard's own resume skips what it
committed. ``GalleryIndex.open(CASE)`` returns a ``ShardedGallery`` when the manifest names shards,
so ``xreid serve`` and ``xreid index search`` open a sharded case unchanged.

Row ids of the whole are the shards' ids laid end to end (shard 0's rows first). ``search`` asks
every shard for its own top k (threads in one process; numpy and faiss release the GIL; each thread
runs faiss on itself alone, ``xreid.index.ann.one_thread_per_scan``), with the
filter applied inside each shard, and keeps the k smallest distances over all of them, ties broken
by id: the top k of the whole is among the union of the shards' top k, so with exact search the
result is the one a single index over all rows gives (up to ties between equal distances).
Everything else (rows, facets, filter masks, probabilities) reads the whole's arrays, which are the
shards' arrays concatenated once at open (the shards then hold slices of them: no second copy).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from xreid.index.ann import one_thread_per_scan
from xreid.index.filters import Filter
from xreid.index.gallery import (BUILDING, FORMAT, MANIFEST, READY, VERSION, GalleryIndex, GalleryIndexError,
                                 SearchResult, _top_k, _write_manifest, read_manifest)

SHARD = "shard-{:03d}"


class ShardHits(NamedTuple):
    """One shard's answer to a search: its top k as shard-local ids and distances, how it searched
    ('exact' or 'ann') and how many of its rows the filter kept."""

    ids: np.ndarray
    distances: np.ndarray
    method: str
    candidates: int


def shard_answer(shard: GalleryIndex, query: np.ndarray, k: int, where: Filter | None, exact: bool) -> ShardHits:
    """One shard's top ``k``, without metadata rows (the merge reads those of the whole's top k)."""
    r = shard.search(query, k, where, exact=exact, rows=False)
    return ShardHits(r.ids, r.distances, r.method, r.candidates)


def shard_of(key: str, shards: int) -> int:
    """The shard of ``key``: the first 8 bytes of its SHA-1, modulo ``shards`` (stable across runs,
    processes and machines, unlike Python's ``hash``)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % shards


def shard_dirs(case: str | Path, shards: int) -> list[Path]:
    return [Path(case) / SHARD.format(s) for s in range(shards)]


def is_sharded(case: str | Path) -> bool:
    try:
        return bool(read_manifest(Path(case)).get("shards"))
    except (OSError, ValueError):
        return False


def start_sharded(case: str | Path, shards: int, identity: dict, attribute_names: Sequence[str], head: dict,
                  embedding_dim: int, source: str = "") -> list[Path]:
    """Write (or, for an interrupted build of the same shard count, keep) the sharded manifest in
    state "building"; returns the shard folders. A finished index, a non-sharded one or another
    shard count there is an error."""
    case = Path(case)
    if (case / MANIFEST).is_file():
        manifest = read_manifest(case)
        if not manifest.get("shards"):
            raise GalleryIndexError(f"{case}: holds an index that is not sharded; choose another --out")
        if manifest["state"] != BUILDING:
            raise GalleryIndexError(f"{case}: already holds a finished sharded index; choose another --out")
        if len(manifest["shards"]) != shards:
            raise GalleryIndexError(f"{case}: an interrupted build with {len(manifest['shards'])} shards; resume it "
                                    f"with --shards {len(manifest['shards'])} or delete {case}")
        return [case / s for s in manifest["shards"]]
    case.mkdir(parents=True, exist_ok=True)
    extra = [p.name for p in case.iterdir()]
    if extra:
        raise GalleryIndexError(f"{case}: folder is not empty and holds no index ({', '.join(sorted(extra)[:5])}); "
                                f"choose an empty or new folder")
    dirs = shard_dirs(case, shards)
    _write_manifest(case, {"format": FORMAT, "version": VERSION, "state": BUILDING, "identity": identity,
                           "embedding_dim": int(embedding_dim),
                           "attributes": {"names": list(attribute_names), **head}, "segments": [],
                           "shards": [d.name for d in dirs], "count": 0, "source": source, "ann": None})
    return dirs


def finish_sharded(case: str | Path) -> dict:
    """Mark the sharded case ready once every shard is; returns its manifest (count: all rows)."""
    case = Path(case)
    manifest = read_manifest(case)
    parts = [read_manifest(case / s) for s in manifest["shards"]]
    unfinished = [s for s, m in zip(manifest["shards"], parts) if m["state"] != READY]
    if unfinished:
        raise GalleryIndexError(f"{case}: shards not finished: {', '.join(unfinished)}")
    columns: dict = {}
    for m in parts:
        columns.update(m["columns"])
    anns = [m["ann"] for m in parts if m.get("ann")]
    manifest = {**manifest, "state": READY, "count": sum(m["count"] for m in parts), "columns": columns,
                "shard_counts": [m["count"] for m in parts],
                "ann": anns[0] if len(anns) == len(parts) else None}
    _write_manifest(case, manifest)
    return manifest


class ShardedGallery(GalleryIndex):
    """A sharded case read into memory (see the module docstring); a ``GalleryIndex`` whose search
    runs shard-parallel."""

    def __init__(self, case: Path, manifest: dict, shards: list[GalleryIndex], image_root: Path | None = None):
        self.shards = shards
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in shards])]).astype(np.int64)
        dim, n_attr = manifest["embedding_dim"], len(manifest["attributes"]["names"])
        # shards whose vectors are mapped from their vector files keep them (``vectors_of`` asks them):
        # a concatenation would read every one into memory
        mapped = any(isinstance(s.vectors, np.memmap) for s in shards)
        vectors = (np.concatenate([s.vectors for s in shards]) if shards and not mapped
                   else np.zeros((0, dim), np.float32))
        attributes = (np.concatenate([s.attribute_codes for s in shards], axis=1) if shards
                      else np.zeros((n_attr, 0), np.uint8))
        keys = np.concatenate([s.keys for s in shards])
        times = np.concatenate([s.times for s in shards])
        for s, a, b in zip(shards, self.offsets[:-1], self.offsets[1:]):  # shards keep views of the whole
            s.attribute_codes = attributes[:, a:b]
            if not mapped:
                s.vectors = vectors[a:b]
        names = sorted({n for s in shards for n in s.columns})
        columns = {}
        for name in names:
            parts = [s.columns.get(name, (np.array([""]), np.zeros(len(s), np.int32))) for s in shards]
            vocab = np.unique(np.concatenate([v for v, _ in parts]))
            columns[name] = (vocab, np.concatenate([np.searchsorted(vocab, v)[c].astype(np.int32) for v, c in parts]))
        thumbs = {"pack": np.zeros(0, np.int32), "offset": np.zeros(0, np.int64), "length": np.zeros(0, np.int64)}
        manifest = {**manifest, "columns": {**manifest.get("columns", {}), **{n: "string" for n in names}},
                    "segments": []}
        super().__init__(case, manifest, vectors, attributes, keys, times, columns, thumbs, None, image_root)
        self.damaged = {f"{s.case.name}/{f}": why for s in shards for f, why in s.damaged.items()}
        if shards and all(s.lookalike_codes is not None for s in shards):  # look-alikes within each shard
            self.lookalike_codes = np.concatenate([s.lookalike_codes for s in shards], axis=1)
            self.lookalikes = np.concatenate([np.where(s.lookalikes >= 0, s.lookalikes + off, -1)
                                              for s, off in zip(shards, self.offsets[:-1])])
        if any(s.dead is not None for s in shards):  # rows of damaged segments, never returned
            self.dead = np.concatenate([s.dead if s.dead is not None else np.zeros(len(s), bool) for s in shards])
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(shards)), thread_name_prefix="shard",
                                        initializer=one_thread_per_scan)

    @classmethod
    def open(cls, case: str | Path, ann: bool = True, image_root: str | Path | None = None) -> "ShardedGallery":
        case = Path(case)
        manifest = read_manifest(case)
        if not manifest.get("shards"):
            raise GalleryIndexError(f"{case}: not a sharded index")
        shards = [GalleryIndex.open(case / s, ann=ann, image_root=image_root) for s in manifest["shards"]]
        for name, s in zip(manifest["shards"], shards):
            if s.identity != manifest["identity"] or s.attribute_names != manifest["attributes"]["names"]:
                raise GalleryIndexError(f"{case / name}: built with another model or attribute head than {case}")
        return cls(case, manifest, shards, None if image_root is None else Path(image_root))

    def _locate(self, i: int) -> tuple[GalleryIndex, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} not in the index (0..{len(self) - 1})")
        s = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.shards[s], i - int(self.offsets[s])

    def search(self, query: np.ndarray, k: int = 10, where: Filter | None = None, exact: bool = False, *,
               rows: bool = True) -> SearchResult:
        """The ``k`` rows nearest ``query`` among those ``where`` keeps: each shard's top k (filter
        applied inside it, no metadata read), merged by distance then id; ``rows`` as
        ``GalleryIndex.search``."""
        if k < 1:
            raise ValueError(f"k must be at least 1 (got {k})")
        return self._merge(self._shard_hits(query, k, where, exact), k, rows)

    def _shard_hits(self, query: np.ndarray, k: int, where: Filter | None, exact: bool) -> list[ShardHits]:
        """Each shard's own top ``k`` (shard-local ids), asked in parallel."""
        return list(self._pool.map(lambda s: shard_answer(s, query, k, where, exact), self.shards))

    def _merge(self, parts: list[ShardHits], k: int, rows: bool = True) -> SearchResult:
        """The ``k`` nearest of the shards' hits (distance, then id of the whole)."""
        ids = np.concatenate([p.ids + off for p, off in zip(parts, self.offsets)]) if parts else np.zeros(0, np.int64)
        dist = (np.concatenate([p.distances for p in parts]) if parts else np.zeros(0, np.float32)).astype(np.float32)
        top = _top_k(dist, ids, min(k, len(ids))) if len(ids) else np.zeros(0, np.int64)
        ids, dist = ids[top].astype(np.int64), dist[top]
        method = "ann" if any(p.method == "ann" for p in parts) else "exact"
        return SearchResult(ids, [str(self.keys[i]) for i in ids], dist, method=method,
                            candidates=sum(p.candidates for p in parts), size=len(self),
                            rows=[self.row(int(i)) for i in ids] if rows else [])

    def vectors_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Embeddings of ``ids`` (L2-normalised float32): from the whole when this process holds it,
        else asked of the shards holding them (``_ask_vectors``), all asks sent before any answer is read."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"rows {ids.tolist()} not all in the index (0..{len(self) - 1})")
        if len(self.vectors) == len(self):
            return self.vectors[ids]
        shard = np.searchsorted(self.offsets, ids, side="right") - 1
        out = np.zeros((len(ids), self.manifest["embedding_dim"]), np.float32)
        asks = {int(s): self._ask_vectors(int(s), ids[shard == s] - self.offsets[s]) for s in np.unique(shard)}
        for s, ask in asks.items():
            out[shard == s] = self._answer(ask)
        return out

    def _ask_vectors(self, shard: int, ids: np.ndarray):
        """Ask shard ``shard`` for the vectors of its rows ``ids`` (its own ids); ``_answer`` reads the reply."""
        return self.shards[shard].vectors_of(ids)

    def _answer(self, ask) -> np.ndarray:
        return ask

    def thumbnail(self, i: int) -> bytes | None:
        shard, j = self._locate(int(i))
        return shard.thumbnail(j)

    def export_features(self, out: str | Path) -> int:
        raise GalleryIndexError(f"{self.case}: export a sharded index shard by shard "
                                f"(`xreid index export {self.case}/shard-000 ...`)")
