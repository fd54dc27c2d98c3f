"""Sharded galleries (``xreid.index.sharded``): the same top k as one index, built and served unchanged."""

import numpy as np
import pytest

from xreid.index.base import BACKENDS, backend
from xreid.index.gallery import Filter, GalleryIndex, GalleryIndexError, IndexWriter, Rows
from xreid.index.sharded import ShardedGallery, finish_sharded, shard_of, start_sharded

NAMES = ["personalMale", "carryingBackpack", "hairLong"]
IDENTITY = {"model": "synthetic", "fingerprint": "f" * 16, "preprocess": {}, "flip": False}
HEAD = {"head": "h", "head_fingerprint": "0"}


def _rows(n=600, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    probs = rng.random((n, 3))
    cams = rng.integers(1, 5, n)
    keys = [f"p/{i}.jpg" for i in range(n)]
    fields = [{"camera": f"c{cams[i]}", **({"site": "north"} if i % 3 == 0 else {})} for i in range(n)]
    return Rows(keys, x, probs, fields, np.arange(n) * 1.0)


def _take(rows, idx):
    return Rows([rows.keys[i] for i in idx], rows.vectors[idx], rows.probabilities[idx],
                [rows.fields[i] for i in idx], rows.times[idx])


def _write(case, rows, shards, batch=150):
    dirs = start_sharded(case, shards, IDENTITY, NAMES, HEAD, rows.vectors.shape[1]) if shards > 1 else [case]
    for s, d in enumerate(dirs):
        with IndexWriter.create(d, IDENTITY, NAMES, HEAD, rows.vectors.shape[1]) as w:
            mine = [i for i, k in enumerate(rows.keys) if shards == 1 or shard_of(k, shards) == s]
            for a in range(0, len(mine), batch):
                w.commit(_take(rows, mine[a:a + batch]))
            w.finish(ann_min_rows=10**9)
    if shards > 1:
        finish_sharded(case)


def test_shard_of_is_stable_and_spreads_keys():
    assert shard_of("gallery/img00.jpg", 4) == shard_of("gallery/img00.jpg", 4)
    counts = np.bincount([shard_of(f"k{i}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 850  # about 1000 each


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_search_equals_one_index(tmp_path, shards, monkeypatch):
    rows = _rows()
    _write(tmp_path / "one", rows, 1)
    _write(tmp_path / "sh", rows, shards)
    one, sh = GalleryIndex.open(tmp_path / "one"), GalleryIndex.open(tmp_path / "sh")
    assert isinstance(sh, ShardedGallery) and len(sh) == len(one) == 600
    assert sorted(sh.keys.tolist()) == sorted(one.keys.tolist())
    assert all(len(s) < 600 for s in sh.shards)
    rng = np.random.default_rng(1)
    filters = [None, Filter(camera="c2"), Filter(attributes={"carryingBackpack": True}, after="100"),
               Filter(fields={"site": "north"}, camera=["c1", "c3"])]
    for where in filters:
        for k in (1, 5, 10, 50, 1000):
            q = rng.standard_normal(16).astype(np.float32)
            a, b = one.search(q, k, where), sh.search(q, k, where)
            assert b.keys == a.keys, (where, k)
            np.testing.assert_allclose(b.distances, a.distances, atol=1e-6)
            assert b.candidates == a.candidates
            # rows of the whole read through the sharded ids: the same metadata and vectors
            assert [r["path"] for r in b.rows] == a.keys and b.rows == [{**r, "id": i} for r, i in zip(a.rows, b.ids)]
            bare = sh.search(q, k, where, rows=False)
            assert bare.keys == a.keys and bare.rows == []
            np.testing.assert_allclose(sh.vectors_of(b.ids), one.vectors_of(a.ids), atol=1e-6)
            np.testing.assert_allclose(sh.probabilities(b.ids), one.probabilities(a.ids))
    assert sh.facets()["attributes"] == one.facets()["attributes"]
    # the shards answer without metadata: only the merged top k's rows are read
    read = []
    original = GalleryIndex.row
    monkeypatch.setattr(GalleryIndex, "row", lambda self, i, attributes=True: read.append(i) or original(self, i, attributes))
    hits = sh.search(rng.standard_normal(16).astype(np.float32), 5)
    assert len(hits.rows) == 5 and len(read) == 5


def test_sharded_backend_is_registered_and_refuses_add(tmp_path):
    assert backend("sharded") is ShardedGallery and "sharded" in BACKENDS
    _write(tmp_path / "sh", _rows(60), 2)
    with pytest.raises(GalleryIndexError, match="sharded"):
        IndexWriter.append(tmp_path / "sh", IDENTITY, NAMES, HEAD)
    with pytest.raises(GalleryIndexError, match="finished sharded"):
        start_sharded(tmp_path / "sh", 3, IDENTITY, NAMES, HEAD, 16)


def server_answers_as(session, root, key: str, index) -> None:
    """The server on ``session`` answers a search by the image ``key`` with ``index``'s top 3 (the
    image itself first) and serves the best one's thumbnail."""
    from fastapi.testclient import TestClient

    from xreid.serve.app import create_app

    client = TestClient(create_app(session))
    up = client.post("/api/uploads?name=q.jpg", content=(root / key).read_bytes(),
                     headers={"content-type": "application/octet-stream"})
    assert up.status_code == 201, up.text
    res = client.post("/api/search", json={"uploads": [up.json()["id"]], "k": 3})
    assert res.status_code == 200, res.text
    got = res.json()["results"]
    assert got[0]["key"] == key
    assert [r["key"] for r in got] == index.search(index.vectors[list(index.keys).index(key)], 3).keys
    assert client.get(f"/api/items/{got[0]['id']}/thumbnail").status_code == 200


def test_build_with_shards_equals_one_index_and_the_server_answers(tiny_model, tmp_path):
    """`xreid index build --shards 3` and `xreid index search` / the server on the sharded case."""
    from typer.testing import CliRunner

    from conftest import write_image
    from xreid.cli import app
    from xreid.explain.attribute_head import AttributeHead

    root = tmp_path / "data"
    for i in range(8):
        write_image(root / "gallery" / f"img{i:02d}.jpg", seed=i, colour=(40 * i, 200 - 20 * i, 90))
    head = tmp_path / "head.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {}).save(head)
    model = ["--model", str(tiny_model), "--backend", "torch", "--head", str(head), "--data-root", str(root)]
    runner = CliRunner()
    for out, extra in (("one", []), ("sh", ["--shards", "3"])):
        res = runner.invoke(app, ["index", "build", *model, "--images", str(root / "gallery"),
                                  "--out", str(tmp_path / out), "--batch-size", "3", *extra])
        assert res.exit_code == 0 and "8 images indexed (8 added)" in res.output, res.output
    one, sh = GalleryIndex.open(tmp_path / "one"), GalleryIndex.open(tmp_path / "sh")
    assert isinstance(sh, ShardedGallery) and sum(len(s) > 0 for s in sh.shards) >= 2
    q = one.vectors[0]
    a, b = one.search(q, 5), sh.search(q, 5)
    assert a.keys == b.keys and np.allclose(a.distances, b.distances, atol=1e-6)
    assert sh.thumbnail(int(b.ids[0])) == one.thumbnail(int(a.ids[0]))
    res = runner.invoke(app, ["index", "search", str(tmp_path / "sh"), *model[:4], "--query",
                              str(root / "gallery" / "img03.jpg"), "--top-k", "3"])
    assert res.exit_code == 0 and "gallery/img03.jpg" in res.output.splitlines()[1] + res.output, res.output

    from xreid.models.loading import load_embedder
    from xreid.serve.case import CaseSession

    session = CaseSession(tmp_path / "sh", load_embedder(tiny_model, backend="torch"), AttributeHead.load(head), root)
    try:
        server_answers_as(session, root, "gallery/img03.jpg", sh)
    finally:
        session.close()


def test_index_check_covers_every_shard(tmp_path):
    """`xreid index check` on a sharded case verifies each shard's files; a damaged segment in one
    shard is named with its shard, and --repair drops it there."""
    from typer.testing import CliRunner

    from xreid.cli import app
    from xreid.index.gallery import read_manifest

    runner = CliRunner()
    case = tmp_path / "sh"
    _write(case, _rows(300), 3)
    out = runner.invoke(app, ["index", "check", str(case)])
    files = sum(1 + len([p for p in seg["packs"] if p]) for s in ("shard-000", "shard-001", "shard-002")
                for seg in read_manifest(case / s)["segments"])
    files += sum(bool(read_manifest(case / s).get("lookalikes")) for s in ("shard-000", "shard-001", "shard-002"))
    assert out.exit_code == 0 and "intact" in out.output, out.output
    assert files >= 3 and f"{case}: {files} file(s) checked" in out.output  # every shard's segments and packs
    seg = case / "shard-001" / "segments" / read_manifest(case / "shard-001")["segments"][0]["file"]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x04
    seg.write_bytes(bytes(data))
    out = runner.invoke(app, ["index", "check", str(case)])
    assert out.exit_code == 1 and f"damaged: {seg}: content changed" in out.output, out.output
    out = runner.invoke(app, ["index", "check", str(case), "--repair"])
    assert out.exit_code == 0 and f"shard-001: dropped {seg.name}" in out.output, out.output
    assert (case / "shard-001" / "damaged" / seg.name).is_file()
    assert runner.invoke(app, ["index", "check", str(case)]).exit_code == 0
    g = GalleryIndex.open(case)
    assert g.dead is not None and g.dead.sum() == read_manifest(case / "shard-001")["segments"][0]["rows"]


def test_shard_threads_run_faiss_on_one_thread_each(tmp_path):
    """faiss's OpenMP thread count is set per thread: the sharded search's own threads set it to one,
    so shards scanned side by side do not wake pools of OpenMP / BLAS threads on the same cores."""
    import threading

    from xreid.index.ann import _faiss

    _write(tmp_path / "sh", _rows(n=60), 2)
    sh = GalleryIndex.open(tmp_path / "sh")
    faiss = _faiss()
    assert set(sh._pool.map(lambda _: faiss.omp_get_max_threads(), range(4))) == {1}
    plain = []
    thread = threading.Thread(target=lambda: plain.append(faiss.omp_get_max_threads()))
    thread.start()
    thread.join()
    if plain[0] == 1:
        pytest.skip("faiss runs one OpenMP thread by default on this machine: nothing to tell apart")
