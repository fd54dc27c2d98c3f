"""A per-model cache of embeddings, so commands that fit on many images (``xreid fuse fit``, the
fusion benchmark) embed each image once per model set-up.

One ``.npz`` per embedder identity (``xreid embed``'s format, identity recorded) in the cache folder;
images not yet in it are embedded with ``embed_to_file`` (progress bar, resumable after Ctrl-C) and
merged in atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xreid.index.features import check_same_model, embed_to_file, load_features_with_identity, save_features
from xreid.models.embedders import Embedder


def cache_file(embedder: Embedder, cache_dir: Path) -> Path:
    """``cache_dir/NAME-HASH.npz``: one file per embedder identity (model, preprocessing, flip, ...)."""
    identity = embedder.identity()
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(identity.get("model", "model")))[:40]
    return Path(cache_dir) / f"{name}-{digest}.npz"


def cached_embeddings(embedder: Embedder, root: Path, keys: Sequence[str], cache_dir: Path,
                      progress: bool = True) -> tuple[np.ndarray, list[str], list[str]]:
    """(features K x D, the keys embedded in that order, keys skipped as unreadable) for ``root/key``,
    reusing and extending the embedder's cache file in ``cache_dir``."""
    path = cache_file(embedder, cache_dir)
    identity = embedder.identity()
    store: dict[str, np.ndarray] = {}
    if path.is_file():
        store, stored = load_features_with_identity(path)
        check_same_model(path, stored, identity, remedy=f"Delete {path} to rebuild the cache.")
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
