"""A per-model cache of embeddings, so commands that fit on many images (``xreid fuse fit``, the
fusion benchmark) embed each image once per model set-up.

One ``.npz`` per embedder identity (``xreid embed``'s format, identity recorded) in the cache folder;
images not yet in it are embedded with ``embed_to_file`` (progress bar, resumable after Ctrl-C) and
merged in atomically. A concatenation of models (``--model a,b``) is cached per part and
concatenated on reading, so it reuses its parts' caches. ``CachedEmbedder`` lets code that embeds
image files (``fit_head``) read the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xreid.binding import check_binding
from xreid.data.images import ImageError
from xreid.index.features import embed_to_file, load_features_with_identity, save_features
from xreid.models.concat import ConcatEmbedder, concatenate_embeddings
from xreid.models.embedders import Embedder, EmbedResult


def cache_file(embedder: Embedder, cache_dir: Path) -> Path:
    """``cache_dir/NAME-HASH.npz``: one file per embedder identity (model, preprocessing, flip, ...)."""
    identity = embedder.identity()
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(identity.get("model", "model")))[:40]
    return Path(cache_dir) / f"{name}-{digest}.npz"


def cached_embeddings(embedder: Embedder, root: Path, keys: Sequence[str], cache_dir: Path,
                      progress: bool = True) -> tuple[np.ndarray, list[str], list[str]]:
    """(features K x D, the keys embedded in that order, keys skipped as unreadable) for ``root/key``,
    reusing and extending the embedder's cache file in ``cache_dir`` (a concatenation: its parts' files)."""
    if isinstance(embedder, ConcatEmbedder):
        parts = [cached_embeddings(part, root, keys, cache_dir, progress) for part in embedder.parts]
        rows = [dict(zip(kept, range(len(kept)))) for _, kept, _ in parts]
        kept = [k for k in dict.fromkeys(keys) if all(k in r for r in rows)]
        feats = concatenate_embeddings([f[[r[k] for k in kept]] for (f, _, _), r in zip(parts, rows)])
        return feats, kept, sorted({s for _, _, skipped in parts for s in skipped})
    path = cache_file(embedder, cache_dir)
    identity = embedder.identity()
    store: dict[str, np.ndarray] = {}
    if path.is_file():
        store, stored = load_features_with_identity(path)
        check_binding(path, stored, identity, fields=None, remedy=f"Delete {path} to rebuild the cache.")
    missing = list(dict.fromkeys(k for k in keys if k not in store))
    skipped: list[str] = []
    if missing:
        new = path.with_name(path.stem + ".new.npz")
        report = embed_to_file(embedder, root, missing, new, progress=progress)
        skipped = report.skipped
        fresh, _ = load_features_with_identity(new)
        store.update(fresh)
        save_features(path, store, identity)
        new.unlink(missing_ok=True)
    kept = [k for k in dict.fromkeys(keys) if k in store]
    dim = next(iter(store.values())).shape[-1] if store else 0
    feats = np.stack([store[k] for k in kept]) if kept else np.zeros((0, dim), np.float32)
    return feats, kept, skipped


class CachedEmbedder(Embedder):
    """``embedder`` whose ``embed_paths`` reads and extends its cache in ``cache_dir`` (images under
    ``root``, keyed by their path relative to it); everything else is ``embedder``'s."""

    def __init__(self, embedder: Embedder, root: Path, cache_dir: Path, progress: bool = True):
        self.inner, self.root, self.cache_dir, self.progress = embedder, Path(root), Path(cache_dir), progress
        self.name, self.preprocess, self.fingerprint = embedder.name, embedder.preprocess, embedder.fingerprint
        self.backend, self.precision, self.flip_average = embedder.backend, embedder.precision, embedder.flip_average

    def identity(self) -> dict:
        return self.inner.identity()

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self.inner.run(inputs)

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        return self.inner.embed_inputs(inputs)  # the inner model's own rules (flip, camera routing)

    def embed_arrays(self, images) -> np.ndarray:
        return self.inner.embed_arrays(images)

    def camera_names(self) -> tuple[str, ...]:
        return self.inner.camera_names()

    def embed_paths(self, paths: Sequence[str | Path], batch_size: int = 64, progress: bool = False,
                    on_batch=None, cameras=None) -> EmbedResult:
        if cameras is not None and self.camera_names():
            raise ValueError(f"{self.cache_dir}: the embedding cache keeps one embedding per image, and this model "
                             f"embeds each camera's crops with its own statistics; embed without --cache")
        keys = []
        for p in paths:
            try:
                keys.append(Path(p).relative_to(self.root).as_posix())
            except ValueError:
                raise ValueError(f"{p}: not under {self.root}, the folder the embedding cache is keyed by") from None
        feats, kept, skipped = cached_embeddings(self.inner, self.root, keys, self.cache_dir, self.progress)
        position = {k: i for i, k in enumerate(keys)}
        if on_batch:
            on_batch(len(keys))
        return EmbedResult(feats, [position[k] for k in kept],
                           [ImageError(*s.split(": ", 1)) if ": " in s else ImageError(s, "unreadable") for s in skipped])
