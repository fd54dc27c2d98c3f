"""A large index's unit vectors in one uncompressed ``.npy`` file, memory-mapped when the index opens.

A gallery searched through its ANN structure touches only the few hundred float32 rows it re-ranks
per query, yet a segment's vectors are read into memory when it opens: 10 GB for 10,000,000 x 256-d
rows. An index whose vectors reach ``MAP_MIN_BYTES`` therefore keeps, beside its segments (which stay
the record: the vectors as the model gave them), a derived file ``vec-GGGGGG.npy`` holding every
row's unit vector in id order (zeros for dropped rows), written when a build or add finishes. The
index maps it read-only: the operating system pages in the rows a search reads and may drop them
again, so the memory a search process holds is the ANN codes, attribute codes and keys.

The manifest records the file like the ANN file (``vectors``: file, rows, dim, bytes, SHA-256).
Opening checks its size and header only (its SHA-256 would mean reading it whole at every open; the
segments are still hashed, in blocks, so an open reads the segment files once but holds none of their
vectors); ``xreid index check`` verifies the SHA-256 and ``--repair`` writes it again, as does the
next build or add finishing. A file that does not match (missing, truncated, another shape) is named
in the log and the vectors are read from the segments as for a small index. Rows of a segment a
repair dropped keep their vectors in the file until it is written again (with zeros for them); they
are never returned either way.

Limits: the file covers the rows committed when it was written, so while an add runs (or after one
was interrupted), a reader that opens the index reads every vector from the segments into memory,
as for a small index, until the add finishes; and each add writes the whole file again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from xreid.distance import l2_normalise
from xreid.index.integrity import DamagedFile, size_problem, verify_file
from xreid.io import atomic_write

#: the manifest's entry for the vector file
VECTORS_KEY = "vectors"
#: an index whose float32 vectors take at least this many bytes keeps them in a mapped file
#: (512 MB: 500,000 rows at 256-d, 41,667 at 3,072-d)
MAP_MIN_BYTES = 512 * 10**6
#: rows normalised and written at a time
WRITE_ROWS = 65_536


def wants_file(rows: int, dim: int, min_bytes: int | None = None) -> bool:
    """Whether an index of ``rows`` x ``dim`` float32 vectors keeps them in a mapped file (from
    ``min_bytes``, default ``MAP_MIN_BYTES``)."""
    return rows > 0 and rows * dim * 4 >= (MAP_MIN_BYTES if min_bytes is None else min_bytes)


def _header(rows: int, dim: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                              "fortran_order": False, "shape": (rows, dim)})
    return buf.getvalue()


def write_vector_file(path: Path, parts: Iterable[np.ndarray], rows: int, dim: int) -> dict:
    """Write ``parts`` (blocks of rows in id order, as the model gave them; ``rows`` in all) unit-normalised
    as one float32 ``.npy`` at ``path``, atomically; returns the manifest entry (without ``file``)."""
    digest, written = hashlib.sha256(), [0]

    def write(fh) -> None:
        head = _header(rows, dim)
        fh.write(head)
        digest.update(head)
        for block in parts:
            block = np.asarray(block, np.float32).reshape(-1, dim)
            for a in range(0, len(block), WRITE_ROWS):  # normalised a piece at a time: no second copy of a block
                data = np.ascontiguousarray(l2_normalise(block[a:a + WRITE_ROWS]), np.float32)
                raw = memoryview(data).cast("B")
                fh.write(raw)
                digest.update(raw)
            written[0] += len(block)
        if written[0] != rows:
            raise ValueError(f"{path}: {written[0]} rows written, {rows} expected")

    atomic_write(path, write)
    return {"rows": int(rows), "dim": int(dim), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def map_vector_file(path: Path, info: dict) -> np.memmap:
    """The vectors of the file the manifest entry ``info`` describes, mapped read-only; DamagedFile when
    the file is missing, not its recorded size, or its header is not ``rows x dim`` float32."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DamagedFile(path, "missing") from None
    if size != info["bytes"]:
        raise DamagedFile(path, size_problem(size, info["bytes"]))
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
    except (OSError, ValueError) as exc:
        raise DamagedFile(path, f"unreadable vector file ({exc})") from None
    if shape != (info["rows"], info["dim"]) or fortran or dtype != np.float32:
        raise DamagedFile(path, f"holds {shape} {dtype} vectors, the manifest says ({info['rows']}, {info['dim']}) "
                                f"float32")
    if info["rows"] == 0:
        return np.zeros((0, info["dim"]), np.float32)
    try:
        return np.memmap(path, np.float32, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError) as exc:
        raise DamagedFile(path, f"cannot be mapped ({exc})") from None


def verify_vector_file(path: Path, info: dict) -> None:
    """DamagedFile unless the file is exactly what was written (size, header, SHA-256, read in full)."""
    map_vector_file(path, info)
    verify_file(path, info)
