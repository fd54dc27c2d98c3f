"""A large index's vector file (``xreid.index.vector_file``): its unit vectors, memory-mapped when it
opens, left out of the segments read into memory; searches answer as from the segments; damage is
named, worked around, found by `index check` and repaired."""

import logging

import numpy as np
import pytest

from xreid.index.gallery import GalleryIndex, IndexWriter, Rows, read_manifest
from xreid.index.integrity import DamagedFile, load_npz
from xreid.index.sharded import finish_sharded, shard_of, start_sharded
from xreid.index.vector_file import map_vector_file, verify_vector_file, wants_file, write_vector_file
from xreid.workflows.index import check_index

NAMES = ["personalMale", "hat"]
IDENTITY = {"model": "synthetic", "fingerprint": "f" * 16, "preprocess": {}, "flip": False}
HEAD = {"head": "h", "head_fingerprint": "0"}


def _rows(n=1500, dim=8, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((n, dim))).astype(np.float32)  # not unit: the file holds them normalised


def _write(case, x, map_min_bytes=0, first=0, batch=500, append=False):
    open_ = IndexWriter.append if append else IndexWriter.create
    args = (case, IDENTITY, NAMES, HEAD) if append else (case, IDENTITY, NAMES, HEAD, x.shape[1])
    with open_(*args) as w:
        for s in range(0, len(x), batch):
            e = min(len(x), s + batch)
            ids = range(first + s, first + e)
            w.commit(Rows([f"p/{i}.jpg" for i in ids], x[s:e], np.full((e - s, 2), 0.7),
                          [{"camera": f"c{i % 3}"} for i in ids], np.arange(first + s, first + e) * 1.0))
        w.finish(ann_min_rows=1000, map_min_bytes=map_min_bytes)


def test_which_indexes_keep_a_vector_file():
    assert wants_file(500_000, 256) and not wants_file(499_999, 256)  # 512 MB of float32
    assert wants_file(41_667, 3072) and not wants_file(41_666, 3072)
    assert not wants_file(0, 256, min_bytes=0)


def test_the_file_holds_unit_rows_in_id_order_and_its_header_is_checked(tmp_path):
    x = _rows(10, 4)
    info = write_vector_file(tmp_path / "v.npy", [x[:3], x[3:]], 10, 4)
    v = map_vector_file(tmp_path / "v.npy", info)
    assert isinstance(v, np.memmap) and v.shape == (10, 4) and not v.flags.writeable
    np.testing.assert_allclose(v, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), v)  # a plain .npy
    verify_vector_file(tmp_path / "v.npy", info)
    with pytest.raises(DamagedFile, match="says \\(11, 4\\)"):
        map_vector_file(tmp_path / "v.npy", {**info, "rows": 11})
    with pytest.raises(ValueError, match="3 rows written, 10 expected"):
        write_vector_file(tmp_path / "w.npy", [x[:3]], 10, 4)
    assert not (tmp_path / "w.npy").exists()  # nothing half-written


def test_a_large_index_maps_its_vectors_and_searches_as_from_the_segments(tmp_path):
    x = _rows()
    _write(tmp_path / "mapped", x)
    _write(tmp_path / "plain", x, map_min_bytes=2**40)
    info = read_manifest(tmp_path / "mapped")["vectors"]
    assert info["rows"] == len(x) and info["dim"] == 8 and info["file"].startswith("vec-")
    assert "vectors" not in read_manifest(tmp_path / "plain")
    a, b = GalleryIndex.open(tmp_path / "mapped"), GalleryIndex.open(tmp_path / "plain")
    assert isinstance(a.vectors, np.memmap) and not isinstance(b.vectors, np.memmap)
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
    for q in x[:5]:
        for exact in (False, True):
            ra, rb = a.search(q, 10, exact=exact), b.search(q, 10, exact=exact)
            assert ra.keys == rb.keys and ra.method == rb.method
            np.testing.assert_allclose(ra.distances, rb.distances, atol=1e-5)
    np.testing.assert_allclose(a.vectors_of([3, 1]), b.vectors_of([3, 1]), atol=1e-6)


def test_the_segments_are_read_without_their_vectors(tmp_path, monkeypatch):
    _write(tmp_path / "case", _rows())
    seen = []
    real = load_npz

    def spy(path, check, skip=(), only=None):
        if path.parent.name == "segments":
            seen.append(skip)
        return real(path, check, skip, only)

    monkeypatch.setattr("xreid.index.gallery.load_npz", spy)
    whole = []
    monkeypatch.setattr("xreid.index.integrity.read_checked", lambda path, check: whole.append(path))
    GalleryIndex.open(tmp_path / "case")
    assert seen and all(s == ("vectors",) for s in seen)
    assert not [p for p in whole if p.parent.name == "segments"]  # no segment read whole into memory
    monkeypatch.undo()
    seg = read_manifest(tmp_path / "case")["segments"][0]
    path = tmp_path / "case" / "segments" / seg["file"]
    assert "vectors" not in real(path, seg["checks"][seg["file"]], ("vectors",))
    raw = bytearray(path.read_bytes())  # a flipped bit is found by the hash read in blocks
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedFile, match="SHA-256 differs"):
        real(path, seg["checks"][seg["file"]], ("vectors",))


def test_an_add_writes_the_file_again_for_every_row(tmp_path):
    x = _rows(2000)
    case = tmp_path / "case"
    _write(case, x[:1500])
    first = read_manifest(case)["vectors"]["file"]
    _write(case, x[1500:], first=1500, append=True)
    info = read_manifest(case)["vectors"]
    assert info["rows"] == 2000 and info["file"] != first
    assert not (case / first).exists()  # the superseded file is removed
    g = GalleryIndex.open(case)
    assert isinstance(g.vectors, np.memmap)
    np.testing.assert_allclose(g.vectors[1999], x[1999] / np.linalg.norm(x[1999]), rtol=1e-6)


def test_a_damaged_file_is_named_worked_around_found_and_repaired(tmp_path, caplog):
    x = _rows()
    case = tmp_path / "case"
    _write(case, x)
    info = read_manifest(case)["vectors"]
    path = case / info["file"]
    with path.open("r+b") as fh:  # truncated
        fh.truncate(info["bytes"] - 8)
    with caplog.at_level(logging.WARNING):
        g = GalleryIndex.open(case)
    assert f"{path}: truncated" in caplog.text and "reading the vectors from the segments" in caplog.text
    assert not isinstance(g.vectors, np.memmap)
    assert g.search(x[7], 1).keys == ["p/7.jpg"]
    report, _ = check_index(case)
    assert report.vectors and info["file"] in report.vectors and not report.clean
    report, done = check_index(case, repair=True)
    assert any("dropped the vector file" in d for d in done) and any("wrote the vector file again" in d for d in done)
    assert (case / "damaged" / info["file"]).exists()
    assert check_index(case)[0].clean
    g = GalleryIndex.open(case)
    assert isinstance(g.vectors, np.memmap) and g.search(x[7], 1).keys == ["p/7.jpg"]
    # a bit flipped inside: opening checks size and header only; `index check` reads it all
    new = read_manifest(case)["vectors"]
    raw = bytearray((case / new["file"]).read_bytes())
    raw[-3] ^= 1
    (case / new["file"]).write_bytes(bytes(raw))
    assert "SHA-256 differs" in check_index(case)[0].vectors


def test_a_sharded_index_with_mapped_shards_holds_no_concatenated_vectors(tmp_path):
    x = _rows(3000)
    keys = [f"p/{i}.jpg" for i in range(len(x))]
    case = tmp_path / "case"
    dirs = start_sharded(case, 2, IDENTITY, NAMES, HEAD, x.shape[1])
    where = np.array([shard_of(k, 2) for k in keys])
    for s, d in enumerate(dirs):
        mine = np.flatnonzero(where == s)
        with IndexWriter.create(d, IDENTITY, NAMES, HEAD, x.shape[1]) as w:
            w.commit(Rows([keys[i] for i in mine], x[mine], np.full((len(mine), 2), 0.6)))
            w.finish(ann_min_rows=1000, map_min_bytes=0)
    finish_sharded(case)
    g = GalleryIndex.open(case)
    assert g.vectors.size == 0 and all(isinstance(s.vectors, np.memmap) for s in g.shards)
    ids = [5, 2999, 0, 1700]
    want = x[[int(g.keys[i][2:-4]) for i in ids]]
    np.testing.assert_allclose(g.vectors_of(ids), want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-5)
    hit = g.search(x[42], 1)
    assert hit.keys == ["p/42.jpg"] and g.vectors_of(hit.ids).shape == (1, 8)
    with pytest.raises(IndexError):
        g.vectors_of([3000])


def test_an_interrupted_add_reads_the_segments_until_it_finishes(tmp_path, caplog):
    x = _rows(2000)
    case = tmp_path / "case"
    _write(case, x[:1500])
    w = IndexWriter.append(case, IDENTITY, NAMES, HEAD)  # committed, never finished: the file covers 1,500 rows
    w.commit(Rows([f"p/{i}.jpg" for i in range(1500, 2000)], x[1500:], np.full((500, 2), 0.7)))
    w.close()
    g = GalleryIndex.open(case)
    assert not isinstance(g.vectors, np.memmap) and len(g.vectors) == 2000
    assert g.search(x[1999], 1).keys == ["p/1999.jpg"] and g.search(x[3], 1).keys == ["p/3.jpg"]
    with IndexWriter.append(case, IDENTITY, NAMES, HEAD) as w:  # the add finishing writes it for every row
        w.finish(ann_min_rows=1000, map_min_bytes=0)
    g = GalleryIndex.open(case)
    assert isinstance(g.vectors, np.memmap) and len(g.vectors) == 2000
    assert g.search(x[1999], 1).keys == ["p/1999.jpg"]


def test_a_dropped_segment_gets_zeros_when_the_file_is_written_again(tmp_path):
    x = _rows(2000)
    case = tmp_path / "case"
    _write(case, x[:1500])
    _write(case, x[1500:], first=1500, append=True)
    manifest = read_manifest(case)
    added = manifest["segments"][-1]
    assert added["first_id"] == 1500
    (case / "segments" / added["file"]).write_bytes(b"not a segment")  # the add's segment damaged
    (case / manifest["vectors"]["file"]).unlink()  # and the vector file gone
    report, done = check_index(case, repair=True)
    assert added["file"] in report.segments and any("wrote the vector file again" in d for d in done)
    g = GalleryIndex.open(case)
    assert isinstance(g.vectors, np.memmap)
    assert not g.vectors[1500:].any() and g.vectors[:1500].any()  # dropped rows: zeros
    assert all(int(k[2:-4]) < 1500 for k in g.search(x[1600], 20).keys)  # and never returned


def test_a_large_index_without_its_vector_file_is_found_and_repaired_after_a_failed_write(tmp_path, monkeypatch):
    import errno

    from xreid.index import vector_file
    from xreid.index.gallery import IndexWriteError

    x = _rows()
    case = tmp_path / "case"
    _write(case, x)
    monkeypatch.setattr(vector_file, "MAP_MIN_BYTES", 0)  # this small index counts as large
    (case / read_manifest(case)["vectors"]["file"]).unlink()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("xreid.index.gallery.write_vector_file", full)
    with pytest.raises(IndexWriteError, match="disk is full"):
        check_index(case, repair=True)
    assert "vectors" not in read_manifest(case) or not read_manifest(case)["vectors"]
    assert GalleryIndex.open(case).search(x[9], 1).keys == ["p/9.jpg"]  # the index works without it
    report, _ = check_index(case)  # a rerun still sees what is missing
    assert report.vectors and "missing" in report.vectors
    monkeypatch.setattr("xreid.index.gallery.write_vector_file", write_vector_file)
    _, done = check_index(case, repair=True)
    assert any("wrote the vector file again" in d for d in done) and check_index(case)[0].clean
    assert isinstance(GalleryIndex.open(case).vectors, np.memmap)


def test_finishing_writes_a_missing_file_again(tmp_path, caplog):
    x = _rows()
    case = tmp_path / "case"
    _write(case, x)
    (case / read_manifest(case)["vectors"]["file"]).unlink()
    with caplog.at_level(logging.WARNING), IndexWriter.append(case, IDENTITY, NAMES, HEAD) as w:
        w.finish(ann_min_rows=1000, map_min_bytes=0)
    assert "missing; writing it again" in caplog.text
    assert isinstance(GalleryIndex.open(case).vectors, np.memmap)
