"""Embedding a set of images to an ``.npz`` file (key = image path relative to the data root).

Long jobs are resumable: finished chunks are saved to ``OUT.partial.npz`` (atomically), an
interrupted run continues from there, and the final file appears only when everything is done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.io import atomic_write
from xreid.models.embedders import Embedder

log = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    out: Path
    embedded: int
    reused: int
    skipped: list[str] = field(default_factory=list)


def partial_path(out: Path) -> Path:
    return out.with_name(out.stem + ".partial.npz")


def save_features(path: Path, features: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda fh: np.savez(fh, **features))


def load_features(path: str | Path) -> dict[str, np.ndarray]:
    """{relative image path: float32 vector} from an npz written by ``xreid embed``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: features file not found")
    try:
        with np.load(path) as data:
            return {k: data[k].astype(np.float32) for k in data.files}
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a readable features file ({exc})") from None


def embed_to_file(embedder: Embedder, root: Path, keys: Sequence[str], out: str | Path, resume: bool = True,
                  chunk: int = 1024, batch_size: int = 64, progress: bool = True) -> EmbedReport:
    """Embed ``root/key`` for every key and write ``{key: vector}`` to ``out`` (npz, float32)."""
    from tqdm import tqdm

    out = Path(out)
    part = partial_path(out)
    done: dict[str, np.ndarray] = load_features(part) if resume and part.is_file() else {}
    reused = len(done)
    todo = [k for k in keys if k not in done]
    skipped: list[str] = []
    bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc=f"embedding ({embedder.name})", unit="img",
               disable=not progress)
    for start in range(0, len(todo), chunk):
        part_keys = todo[start:start + chunk]
        res = embedder.embed_paths([root / k for k in part_keys], batch_size=batch_size)
        for row, i in enumerate(res.kept):
            done[part_keys[i]] = res.features[row]
        for err in res.skipped:
            log.warning("skipped %s", err)
            skipped.append(str(err))
        save_features(part, done)
        bar.update(len(part_keys))
    bar.close()
    save_features(out, done)
    part.unlink(missing_ok=True)
    return EmbedReport(out, len(done) - reused, reused, skipped)
