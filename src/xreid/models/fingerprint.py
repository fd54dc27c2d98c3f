"""Model identity by content: a short sha256 of the file(s) a model is loaded from.

Two embeddings files, or an embeddings file and a model, belong together only if the same weights
made them; a file name says nothing about that, its bytes do. Hashes are cached per file path, size
and modification time, so the bundled model is hashed once per process however often it is loaded,
and a file rewritten in place (a run's ``model.pt``) is hashed again.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

FINGERPRINT_CHARS = 16
_CHUNK = 1 << 20


def model_files(path: str | Path) -> list[Path]:
    """The files whose bytes are the model: an OpenVINO IR is its ``.xml`` and its ``.bin`` (when present)."""
    path = Path(path)
    weights = path.with_suffix(".bin")
    return [path, weights] if path.suffix == ".xml" and weights.is_file() else [path]


@lru_cache(maxsize=64)
def _sha256(files: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 hex of the files' bytes, concatenated; ``files`` holds (path, size, mtime_ns) so that a
    changed file misses the cache."""
    digest = hashlib.sha256()
    for name, _, _ in files:
        with open(name, "rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def files_sha256(paths: list[Path]) -> str:
    """Full sha256 hex of ``paths``' bytes in order (cached while the files are unchanged)."""
    stats = []
    for p in paths:
        st = Path(p).stat()
        stats.append((str(Path(p).resolve()), st.st_size, st.st_mtime_ns))
    return _sha256(tuple(stats))


def fingerprint(path: str | Path) -> str:
    """The model's fingerprint: the first 16 hex digits of the sha256 of its source file(s)."""
    return files_sha256(model_files(path))[:FINGERPRINT_CHARS]

