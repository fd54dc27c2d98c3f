"""Shards held by Ray actors (``xreid.index.ray_sharded``) on a real two-node local cluster: the same
top k as the in-process sharded search, and the server answers from it."""

import numpy as np
import pytest

from test_sharded import NAMES, _rows, _write, server_answers_as
from xreid.index.base import backend
from xreid.index.gallery import Filter, GalleryIndex, GalleryIndexError

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_actor_shards_search_as_the_in_process_sharded_gallery(ray_cluster, tmp_path):
    rows = _rows()
    _write(tmp_path / "sh", rows, 3)
    _write(tmp_path / "one", rows, 1)
    local, one = GalleryIndex.open(tmp_path / "sh"), GalleryIndex.open(tmp_path / "one")
    remote = backend("ray-sharded").open(tmp_path / "sh", address="auto")
    try:
        assert len(remote) == len(local) == 600 and remote.vectors.size == 0  # the driver holds no vectors
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        assert len(nodes) == 2 and [p["node"] for p in remote.placement] == [nodes[0], nodes[1], nodes[0]]  # round robin
        assert [p["rows"] for p in remote.placement] == [len(s) for s in local.shards]
        rng = np.random.default_rng(1)
        for where in (None, Filter(camera="c2"), Filter(attributes={"carryingBackpack": True}, after="100"),
                      Filter(fields={"site": "north"}, camera=["c1", "c3"])):
            for k in (1, 10, 1000):
                q = rng.standard_normal(16).astype(np.float32)
                a, b, c = local.search(q, k, where), remote.search(q, k, where), one.search(q, k, where)
                assert b.keys == a.keys == c.keys and b.ids.tolist() == a.ids.tolist(), (where, k)
                np.testing.assert_allclose(b.distances, a.distances, atol=1e-6)
                assert b.candidates == a.candidates and [r["path"] for r in b.rows] == a.keys
                np.testing.assert_allclose(remote.vectors_of(b.ids), local.vectors_of(a.ids), atol=1e-6)
                np.testing.assert_allclose(remote.probabilities(b.ids), local.probabilities(a.ids))
        with pytest.raises(ValueError, match="dims"):
            remote.search(np.ones(5, np.float32), 3)
    finally:
        remote.close()
    _write(tmp_path / "flat", _rows(60), 1)
    with pytest.raises(GalleryIndexError, match="not a sharded index"):
        backend("ray-sharded").open(tmp_path / "flat", address="auto")


@pytest.mark.slow
def test_the_server_and_search_answer_from_actor_shards(ray_cluster, tiny_model, tmp_path):
    from typer.testing import CliRunner

    from conftest import write_image
    from xreid.cli import app
    from xreid.explain.attribute_head import AttributeHead
    from xreid.index.ray_sharded import RayShardedGallery
    from xreid.models.loading import load_embedder
    from xreid.serve.case import CaseSession
    from xreid.workflows.index import build_index

    root = tmp_path / "data"
    for i in range(8):
        write_image(root / "gallery" / f"img{i:02d}.jpg", seed=i, colour=(40 * i, 200 - 20 * i, 90))
    head = tmp_path / "head.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {}).save(head)
    embedder, attr = load_embedder(tiny_model, backend="torch"), AttributeHead.load(head)
    build_index(embedder, attr, root, tmp_path / "sh", images=root / "gallery", batch_size=4, progress=False, shards=2)
    local = GalleryIndex.open(tmp_path / "sh")
    session = CaseSession(tmp_path / "sh", embedder, attr, root, ray="auto")
    try:
        assert isinstance(session.index, RayShardedGallery)
        server_answers_as(session, root, "gallery/img03.jpg", local)  # the in-process sharded search's answer
    finally:
        session.close()  # ends the actors too
    model = ["--model", str(tiny_model), "--backend", "torch"]
    res = CliRunner().invoke(app, ["index", "search", str(tmp_path / "sh"), *model, "--ray", "auto", "--query",
                                   str(root / "gallery" / "img03.jpg"), "--top-k", "3"])
    assert res.exit_code == 0, res.output
    assert "1. id" in res.output and "gallery/img03.jpg" in res.output.splitlines()[1]
