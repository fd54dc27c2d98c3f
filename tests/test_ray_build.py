"""Distributed indexing with Ray Data (``xreid index build --ray``) on a real two-node local cluster."""

import functools

import numpy as np
import pytest

from conftest import write_image
from xreid.workflows.loading import ModelOptions
from xreid.workflows.loading import model_and_head as _model_and_head
from xreid.explain.attribute_head import AttributeHead
from xreid.index.gallery import GalleryIndex
from xreid.models.loading import load_embedder
from xreid.workflows.index import build_index

ray = pytest.importorskip("ray")
NAMES = ["personalMale", "carryingBackpack", "hairLong"]


@pytest.fixture()
def cluster(ray_cluster):
    """The session's two-node local cluster (conftest ``ray_cluster``)."""
    return ray_cluster


def _case(case):
    g = GalleryIndex.open(case)
    order = np.argsort(g.keys)
    return g.keys[order].tolist(), g.vectors[order], g.attribute_codes[:, order]


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 2])
def test_ray_build_equals_the_single_process_build(cluster, tiny_model, tmp_path, shards):
    """Also with a model holding two cameras' statistics and a list naming each image's camera: the
    workers embed each image with its camera's, as one process does."""
    import torch

    from xreid.models.checkpoint import load_model_file, save_model_file
    from xreid.models.reid_net import ModelSpec
    from xreid.training.camera_norm import estimate_camera_norms

    root = tmp_path / "data"
    for i in range(12):
        write_image(root / "gallery" / f"img{i:02d}.jpg", seed=i, colour=(20 * i, 200 - 15 * i, 90))
    (tmp_path / "list.csv").write_text("path,camera\n" + "".join(f"gallery/img{i:02d}.jpg,c{i % 3}\n" for i in range(12)))
    net, ckpt = load_model_file(tiny_model)
    crops = np.random.default_rng(0).integers(0, 256, (16, 64, 32, 3), dtype=np.uint8)
    norms, _ = estimate_camera_norms(net, crops, ["c0"] * 8 + ["c1"] * 8)  # c2: the network's own
    model = tmp_path / "cn.pt"
    save_model_file(net, ModelSpec.from_dict(ckpt["spec"]), model, {}, camera_norms=norms)
    head = tmp_path / "head.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {}).save(head)
    embedder, attr = load_embedder(model, backend="torch"), AttributeHead.load(head)
    torch.set_num_threads(1)
    build_index(embedder, attr, root, tmp_path / "one", list_file=tmp_path / "list.csv", batch_size=4, progress=False)
    make = functools.partial(_model_and_head, ModelOptions(model=str(model), backend="torch"), head)
    report = build_index(embedder, attr, root, tmp_path / "ray", list_file=tmp_path / "list.csv", batch_size=4,
                         progress=False, shards=shards, ray={"make": make, "concurrency": 2})
    assert report.added == report.count == 12
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    (k1, v1, c1), (k2, v2, c2) = _case(tmp_path / "one"), _case(tmp_path / "ray")
    assert k1 == k2
    np.testing.assert_allclose(v1, v2, atol=1e-5)
    assert np.abs(c1.astype(int) - c2.astype(int)).max() <= 1


def test_a_batch_delivered_twice_is_written_once(tiny_model, tmp_path):
    """``commit_batch`` leaves out keys a shard holds: a retried batch adds no row."""
    from xreid.index.gallery import IndexWriter
    from xreid.index.metadata import Entry
    from xreid.binding import head_binding as head_info
    from xreid.workflows.index import BatchEmbedder, commit_batch

    root = tmp_path / "data"
    for i in range(5):
        write_image(root / f"img{i}.jpg", seed=i)
    head = tmp_path / "head.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {}).save(head)
    embedder, attr = load_embedder(tiny_model, backend="torch"), AttributeHead.load(head)
    (root / "img4.jpg").write_bytes(b"not an image")
    out = BatchEmbedder(root, embedder, attr)({"key": [f"img{i}.jpg" for i in range(5)]})
    assert out["ok"].tolist() == [True] * 4 + [False] and "img4.jpg" in out["error"][4]
    entries = {f"img{i}.jpg": Entry(f"img{i}.jpg") for i in range(5)}
    writers = [IndexWriter.create(tmp_path / f"s{j}", embedder.identity(), attr.names, head_info(attr, "h"),
                                  attr.embedding_dim) for j in range(2)]
    try:
        assert commit_batch(writers, entries, out)[0] == 4
        assert commit_batch(writers, entries, out)[0] == 0
        assert sum(w.count for w in writers) == 4
    finally:
        for w in writers:
            w.close()


class _DyingEmbedder:
    """An embedder whose worker process dies at its first batch (while ``marker`` is absent)."""

    def __init__(self, inner, marker):
        self.inner, self.marker = inner, marker

    def embed_paths(self, paths, batch_size):
        import os

        if not self.marker.exists():
            self.marker.touch()
            os._exit(1)  # the actor's process is killed mid-build
        return self.inner.embed_paths(paths, batch_size=batch_size)


def _dying_make(model, head, marker):
    embedder, attr = _model_and_head(ModelOptions(model=str(model), backend="torch"), head)
    return _DyingEmbedder(embedder, marker), attr


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(cluster, tiny_model, tmp_path):
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    root = tmp_path / "data"
    for i in range(8):
        write_image(root / "gallery" / f"img{i:02d}.jpg", seed=i)
    head = tmp_path / "head.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {}).save(head)
    embedder, attr = load_embedder(tiny_model, backend="torch"), AttributeHead.load(head)
    marker = tmp_path / "died"
    make = functools.partial(_dying_make, tiny_model, head, marker)
    report = build_index(embedder, attr, root, tmp_path / "ray", images=root / "gallery", batch_size=2,
                         progress=False, shards=2, ray={"make": make, "concurrency": 2})
    assert marker.exists()  # a worker did die
    assert report.count == report.added == 8
    build_index(embedder, attr, root, tmp_path / "one", images=root / "gallery", batch_size=8, progress=False)
    (k1, v1, _), (k2, v2, _) = _case(tmp_path / "one"), _case(tmp_path / "ray")
    assert k1 == k2
    np.testing.assert_allclose(v1, v2, atol=1e-5)


@pytest.mark.shared
@pytest.mark.slow
def test_ray_footage_build_gives_the_sightings_of_one_process(cluster, tiny_model, tmp_path):
    """`index build --video ... --ray`: one video per task on the two-node cluster; the same sightings
    (keys, embeddings, fields, tracks, crops) as one process, and a rerun adds nothing."""
    from test_footage import DETECTOR, PETS, needs_video
    from xreid.data.video import cut_video
    from xreid.workflows.footage import FootageOptions, index_footage
    from xreid.workflows.loading import embedder_and_detector

    if not (PETS.is_file() and DETECTOR.is_file()):
        pytest.skip(needs_video.kwargs["reason"])
    videos = tmp_path / "videos"
    videos.mkdir()
    assert cut_video(PETS, videos / "view1.avi", 20) == 20
    assert cut_video(PETS, videos / "view2.avi", 20, start=101) == 20
    head = tmp_path / "head.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {}).save(head)
    opts = ModelOptions(model=str(tiny_model), backend="torch")
    embedder, detector = embedder_and_detector(opts, str(DETECTOR))
    attr = AttributeHead.load(head)
    build = functools.partial(index_footage, embedder, attr, detector, videos, opts=FootageOptions(chunk_frames=10),
                              progress=False, say=lambda s: None)
    one = build(tmp_path / "one")
    ray_opts = {"make": functools.partial(embedder_and_detector, opts, str(DETECTOR)), "concurrency": 2}
    dist = build(tmp_path / "ray", ray=ray_opts)
    assert dist.added == one.added == dist.count >= 4 and not dist.skipped
    a, b = GalleryIndex.open(tmp_path / "one"), GalleryIndex.open(tmp_path / "ray")
    assert a.keys.tolist() == b.keys.tolist()  # committed in video order: the same ids too
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
    assert [a.row(i) for i in range(len(a))] == [b.row(i) for i in range(len(b))]
    for f in sorted((tmp_path / "one" / "sightings").rglob("*.*")):
        twin = tmp_path / "ray" / f.relative_to(tmp_path / "one")
        assert twin.read_bytes() == f.read_bytes(), f
    for f in sorted((tmp_path / "one" / "footage").glob("*/tracks.npz")):
        with np.load(f) as x, np.load(tmp_path / "ray" / f.relative_to(tmp_path / "one")) as y:
            np.testing.assert_array_equal(x["rows"], y["rows"])
    from xreid.workflows.index import check_index

    assert check_index(tmp_path / "ray")[0].clean  # every footage file recorded, as one process records it
    again = build(tmp_path / "ray", append=True, ray=ray_opts)
    assert again.added == 0 and again.count == dist.count
    from typer.testing import CliRunner

    from xreid.cli import app

    res = CliRunner().invoke(app, ["index", "build", "--video", str(videos / "view2.avi"), "--detector", str(DETECTOR),
                                   "--model", str(tiny_model), "--backend", "torch", "--head", str(head),
                                   "--ray", "auto", "--workers", "1", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    c = GalleryIndex.open(tmp_path / "cli")
    assert c.keys.tolist() == [k for k in a.keys.tolist() if "/view2-" in k]


def test_runtime_threads_follow_the_ray_allotment(monkeypatch):
    """$XREID_THREADS sets the runtimes' threads; outside a Ray worker claim_ray_cpus changes nothing."""
    import os

    from xreid.models.embedders import THREADS_ENV, runtime_threads
    from xreid.workflows.loading import claim_ray_cpus

    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert runtime_threads() is None
    if not ray.is_initialized():
        claim_ray_cpus()
        assert THREADS_ENV not in os.environ
    monkeypatch.setenv(THREADS_ENV, "3")
    assert runtime_threads() == 3


@pytest.mark.slow
def test_a_one_cpu_actor_claims_one_thread(cluster):
    @ray.remote(num_cpus=1)
    def threads():
        import os

        import torch

        from xreid.models.embedders import THREADS_ENV
        from xreid.workflows.loading import claim_ray_cpus

        claim_ray_cpus()
        return os.environ.get(THREADS_ENV), torch.get_num_threads()

    assert ray.get(threads.remote()) == ("1", 1)
