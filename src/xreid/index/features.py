"""Embedding a set of images to an ``.npz`` file (key = image path relative to the data root).

Every file records the embedder's ``identity()`` (model fingerprint, backend, preprocessing, flip,
precision) as a JSON string array under ``IDENTITY_KEY`` (no pickle), so embeddings of two different
models are never mixed: a resumed run must have the partial file's identity, and a gallery can be
checked against the model that ranks it (``load_features_with_identity``).

Long jobs are resumable: the work done is saved to ``OUT.partial.npz`` (atomically) every
``save_every`` images and at least every ``save_seconds``, and on Ctrl-C; an interrupted run
continues from there, and the final file appears only when everything is done. The partial file
keeps all vectors in one matrix (``KEYS_KEY``, ``MATRIX_KEY``), so saving it often stays cheap; the
final file keeps one array per image, as it always has.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.binding import MODEL_FIELDS, IdentityMismatch, check_binding  # noqa: F401  (the two names kept here too)
from xreid.io import atomic_write
from xreid.models.embedders import Embedder

log = logging.getLogger(__name__)

IDENTITY_KEY = "__xreid_identity__"
KEYS_KEY, MATRIX_KEY = "__keys__", "__features__"


@dataclass
class EmbedReport:
    out: Path
    embedded: int
    reused: int
    skipped: list[str] = field(default_factory=list)


def partial_path(out: Path) -> Path:
    return out.with_name(out.stem + ".partial.npz")


def _identity_array(identity: dict | None) -> dict[str, np.ndarray]:
    return {} if identity is None else {IDENTITY_KEY: np.array([json.dumps(identity, sort_keys=True)])}


def save_features(path: Path, features: dict[str, np.ndarray], identity: dict | None = None) -> None:
    """The final layout: one float32 array per image key, plus the identity when given."""
    atomic_write(path, lambda fh: np.savez(fh, **features, **_identity_array(identity)))


def save_partial(path: Path, features: dict[str, np.ndarray], identity: dict | None) -> None:
    """The partial layout: the keys, one N x D float32 matrix and the identity (one write per save)."""
    keys = list(features)
    matrix = np.stack([features[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)
    atomic_write(path, lambda fh: np.savez(fh, **{KEYS_KEY: np.array(keys, dtype=str), MATRIX_KEY: matrix},
                                           **_identity_array(identity)))


def load_features_with_identity(path: str | Path) -> tuple[dict[str, np.ndarray], dict | None]:
    """({relative image path: float32 vector}, identity of the embedder that made them, or None for
    files written before identities were recorded), from either layout, without unpickling."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: features file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            identity = json.loads(str(data[IDENTITY_KEY][0])) if IDENTITY_KEY in data.files else None
            if KEYS_KEY in data.files:
                features = dict(zip(data[KEYS_KEY].tolist(), data[MATRIX_KEY].astype(np.float32)))
            else:
                features = {k: data[k].astype(np.float32) for k in data.files if k != IDENTITY_KEY}
    except (ValueError, OSError, KeyError, IndexError) as exc:
        raise ValueError(f"{path}: not a readable features file ({exc})") from None
    return features, identity


def _resume(part: Path, identity: dict) -> dict[str, np.ndarray]:
    """The embeddings an interrupted run saved, after checking it used the same embedder."""
    done, stored = load_features_with_identity(part)
    check_binding(part, stored, identity, fields=None, remedy=f"Resuming would mix two models' embeddings in one file: "
                                                    f"delete {part} or run with --no-resume to start over.")
    return done


def embed_to_file(embedder: Embedder, root: Path, keys: Sequence[str], out: str | Path, resume: bool = True,
                  batch_size: int = 64, progress: bool = True, save_every: int = 256,
                  save_seconds: float = 30.0) -> EmbedReport:
    """Embed ``root/key`` for every key and write ``{key: vector}`` plus the embedder's identity to
    ``out`` (npz, float32). The partial file is saved every ``save_every`` images (batches are cut
    at those points) and whenever ``save_seconds`` have passed, so a killed run loses at most that much;
    on Ctrl-C what is done is saved and KeyboardInterrupt raised with how to resume."""
    from tqdm import tqdm

    out = Path(out)
    part = partial_path(out)
    identity = embedder.identity()
    done = _resume(part, identity) if resume and part.is_file() else {}
    reused = len(done)
    todo = [k for k in keys if k not in done]
    skipped: list[str] = []
    bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc=f"embedding ({embedder.name})", unit="img",
               disable=not progress)
    unsaved, last_save, start = 0, time.monotonic(), 0

    def save() -> None:
        nonlocal unsaved, last_save
        save_partial(part, done, identity)
        unsaved, last_save = 0, time.monotonic()

    try:
        while start < len(todo):
            batch = todo[start:start + min(batch_size, save_every - unsaved)]
            res = embedder.embed_paths([root / k for k in batch], batch_size=batch_size)
            for row, i in enumerate(res.kept):
                done[batch[i]] = res.features[row]
            for err in res.skipped:
                log.warning("skipped %s", err)
                skipped.append(str(err))
            start, unsaved = start + len(batch), unsaved + len(batch)
            bar.update(len(batch))
            if unsaved >= save_every or time.monotonic() - last_save >= save_seconds:
                save()
    except KeyboardInterrupt:
        if unsaved:
            save()
        raise KeyboardInterrupt(f"interrupted: {len(done)} of {len(keys)} embeddings saved to {part}; "
                                f"run the same command again to resume") from None
    except Exception:
        if unsaved:  # keep the finished work; the error still propagates
            save()
        raise
    finally:
        bar.close()
    save_features(out, done, identity)
    part.unlink(missing_ok=True)
    return EmbedReport(out, len(done) - reused, reused, skipped)
