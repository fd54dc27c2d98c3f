"""What the interpreter is fitted on, computed once and cached: the frozen trunk's maps of the crops
(float16, in shards written atomically, so an interrupted run keeps every finished shard) and the
target model's embeddings (``xreid.index.features.embed_to_file``: resumable, identity-checked).

The cache folder records who made it (``index.json``: the trunk's fingerprint and input size); a
cache made by another trunk is refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from xreid.io import atomic_write, write_json

log = logging.getLogger(__name__)

SHARD = 512  # images per cached shard


def _keys_digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def cache_trunk_maps(trunk: torch.nn.Module, identity: dict, root: Path, keys: Sequence[str], folder: Path,
                     progress: bool = True, batch_size: int = 32) -> np.ndarray:
    """The trunk's maps of ``root/key`` for every key (N x C x H x W float16), computed shard by
    shard into ``folder`` (each shard written atomically; finished shards are reused on the next
    call). ``identity`` (the trunk's fingerprint and input size) must match the folder's. A crop
    that cannot be read is a ValueError naming it (every training crop needs a map)."""
    from tqdm import tqdm

    from xreid.data.dataset import load_resized

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(keys)
    index_file = folder / "index.json"
    wanted = {"identity": identity, "keys": _keys_digest(keys), "count": len(keys), "shard": SHARD}
    if index_file.is_file():
        try:
            stored = json.loads(index_file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{index_file}: unreadable map cache index ({exc}); delete {folder}") from None
        if stored != wanted:
            raise ValueError(f"{folder}: a map cache of another trunk or image list "
                             f"({json.dumps(stored.get('identity'))}, {stored.get('count')} images); "
                             f"delete it or choose another cache folder")
    else:
        write_json(index_file, wanted)
    shards = [(s, keys[s:s + SHARD]) for s in range(0, len(keys), SHARD)]
    size = trunk.input_size
    todo = [(s, chunk) for s, chunk in shards if not (folder / f"maps_{s // SHARD:05d}.npy").is_file()]
    bar = tqdm(total=len(keys), initial=len(keys) - sum(len(c) for _, c in todo), desc="interpreter: trunk maps",
               unit="img", disable=not progress)
    for s, chunk in todo:
        out = []
        for b in range(0, len(chunk), batch_size):
            images, errors = load_resized([root / k for k in chunk[b:b + batch_size]], size)
            if errors:
                raise ValueError(f"cannot read a training crop: {errors[0]}")
            x = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
            out.append(trunk(x).numpy().astype(np.float16))
            bar.update(len(images))
        maps = np.concatenate(out)
        atomic_write(folder / f"maps_{s // SHARD:05d}.npy", lambda fh, m=maps: np.save(fh, m))
    bar.close()
    return np.concatenate([np.load(folder / f"maps_{s // SHARD:05d}.npy") for s, _ in shards])


def target_embeddings(embedder, root: Path, keys: Sequence[str], path: Path, progress: bool = True) -> np.ndarray:
    """The target model's embeddings of ``root/key`` (N x D float32, rows in ``keys`` order), cached in
    ``path`` (resumable; refused if another model set-up made it)."""
    from xreid.binding import check_binding
    from xreid.index.features import embed_to_file, load_features_with_identity

    path = Path(path)
    if path.is_file():
        feats, stored = load_features_with_identity(path)
        check_binding(path, stored, embedder.identity(),
                      remedy=f"delete {path} (or choose another cache folder) to embed with this model")
    if not path.is_file() or any(k not in feats for k in keys):
        report = embed_to_file(embedder, root, keys, path, progress=progress)
        if report.skipped:
            raise ValueError(f"cannot embed a training crop: {report.skipped[0]}")
        feats, _ = load_features_with_identity(path)
    return np.stack([feats[k] for k in keys]).astype(np.float32)
