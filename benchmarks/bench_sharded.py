"""Sharded gallery (``xreid.index.sharded``) and distributed indexing (``xreid index build --ray``):
what sharding and Ray cost and give on this machine.

    python benchmarks/bench_sharded.py [--sizes 10000 100000] [--shards 1 2 4] [--queries 100]
                                       [--images 400] [--out STEM]

Part 1, sharded search: synthetic galleries at the default model's dimension (3,072), people seen
several times (one identity per 5 rows, views at cosine ~0.6 to their centre, so neighbours exist
as in real embeddings), written through ``IndexWriter`` into 1, 2 or 4 shards (a row's shard is
``shard_of(key)``), each shard as ``xreid index build`` leaves it (one segment; an ANN structure
from 50,000 rows per shard, exact search below). Build time: writing and finishing every shard
from the vectors (embedding excluded). Memory per shard: its float32 vectors, uint8 attribute codes
and ANN file. Latency: one query at a time, k = 10, shard-parallel threads, p50 / p99 over
``--queries`` queries (perturbed views of gallery identities). Recall@10 against exact search
(numpy, float32, over all rows).

Part 2, Ray's overhead: ``--images`` synthetic crops indexed with the bundled model, once in one
process and once with ``--ray`` on a local two-node cluster (``ray.cluster_utils.Cluster``, head
and one worker, 1 CPU each, two model actors), on the same two cores. Throughput counts the
build (model loading in each actor included); the cluster's own start is reported apart.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import Report, parse, parser
from xreid.distance import l2_normalise
from xreid.index.gallery import GalleryIndex, IndexWriter, Rows
from xreid.index.sharded import finish_sharded, shard_of, start_sharded

DIM, N_ATTR = 3072, 57
IDENTITY = {"model": "synthetic", "fingerprint": "0" * 16, "preprocess": {}, "flip": False}
HEAD = {"head": "synthetic", "head_fingerprint": "0"}


def identities(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors, 5 views per identity on average, and each row's identity."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, max(1, n // 5), n)
    centres = rng.standard_normal((max(1, n // 5), dim)).astype(np.float32)
    x = centres[ids] + 1.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return l2_normalise(x).astype(np.float32), ids


def write_case(case: Path, x: np.ndarray, shards: int, batch: int = 20_000) -> float:
    t0 = time.perf_counter()
    keys = np.array([f"p/{i:08d}.jpg" for i in range(len(x))])
    where = np.array([shard_of(k, shards) for k in keys]) if shards > 1 else np.zeros(len(x), int)
    probs = np.full((len(x), N_ATTR), 0.3)
    names = [f"a{j}" for j in range(N_ATTR)]
    dirs = start_sharded(case, shards, IDENTITY, names, HEAD, x.shape[1]) if shards > 1 else [case]
    for s, d in enumerate(dirs):
        mine = np.flatnonzero(where == s)
        with IndexWriter.create(d, IDENTITY, names, HEAD, x.shape[1]) as w:
            for a in range(0, len(mine), batch):
                rows = mine[a:a + batch]
                w.commit(Rows(keys[rows].tolist(), x[rows], probs[rows]))
            w.finish()
    if shards > 1:
        finish_sharded(case)
    return time.perf_counter() - t0


def shard_memory(g: GalleryIndex) -> list[float]:
    """MB per shard: vectors, attribute codes and ANN file."""
    parts = getattr(g, "shards", [g])
    out = []
    for s in parts:
        ann = (s.case / s.manifest["ann"]["file"]).stat().st_size if s.manifest.get("ann") else 0
        out.append((s.vectors.nbytes + s.attribute_codes.nbytes + ann) / 2**20)
    return out


def part_search(report: Report, sizes: list[int], shard_counts: list[int], n_queries: int) -> list[dict]:
    figures = []
    rows = []
    for n in sizes:
        x, ids = identities(n, DIM)
        rng = np.random.default_rng(1)
        picks = rng.integers(0, n, n_queries)
        noise = 0.5 * rng.standard_normal((n_queries, DIM)).astype(np.float32) / np.sqrt(DIM)
        queries = l2_normalise(x[picks] + noise).astype(np.float32)
        exact = [set(np.argpartition(-(x @ q), 10)[:10].tolist()) for q in queries]
        for shards in shard_counts:
            tmp = Path(tempfile.mkdtemp(prefix="xreid-shard-"))
            try:
                report.progress(f"n={n} shards={shards}: building")
                build_s = write_case(tmp / "case", x, shards)
                g = GalleryIndex.open(tmp / "case")
                row_of = {k: int(k[2:10]) for k in g.keys.tolist()}
                g.search(queries[0], 10)
                lat, recall = [], []
                for q, truth in zip(queries, exact):
                    t0 = time.perf_counter()
                    hits = g.search(q, 10)
                    lat.append((time.perf_counter() - t0) * 1000)
                    recall.append(len({row_of[k] for k in hits.keys} & truth) / 10)
                mem = shard_memory(g)
                fig = {"rows": n, "shards": shards, "build_s": round(build_s, 2),
                       "shard_mb": [round(m, 1) for m in mem], "p50_ms": round(float(np.percentile(lat, 50)), 2),
                       "p99_ms": round(float(np.percentile(lat, 99)), 2), "recall10": round(float(np.mean(recall)), 4),
                       "method": hits.method}
                figures.append(fig)
                rows.append([f"{n:,}", shards, f"{build_s:.1f}", f"{max(mem):.0f}", f"{fig['p50_ms']:.1f}",
                             f"{fig['p99_ms']:.1f}", f"{fig['recall10']:.3f}", hits.method])
                del g
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    report.print(f"Sharded search, {DIM}-d synthetic identities, k = 10, {n_queries} queries, one at a time")
    report.table(["rows", "shards", "build s", "MB per shard (max)", "p50 ms", "p99 ms", "recall@10", "search"], rows)
    return figures


def part_ray(report: Report, n_images: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from xreid.cli import ModelOptions, _model_and_head
    from xreid.workflows.index import build_index

    tmp = Path(tempfile.mkdtemp(prefix="xreid-ray-"))
    try:
        from PIL import Image

        rng = np.random.default_rng(0)
        root = tmp / "data"
        (root / "crops").mkdir(parents=True)
        for i in range(n_images):
            Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(root / "crops" / f"c{i:04d}.jpg")
        opts = ModelOptions()
        embedder, head = _model_and_head(opts, None)
        t0 = time.perf_counter()
        build_index(embedder, head, root, tmp / "one", images=root / "crops", batch_size=8, progress=False)
        single = time.perf_counter() - t0
        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20,
                                                                "include_dashboard": False})
        cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            build_index(embedder, head, root, tmp / "ray", images=root / "crops", batch_size=8, progress=False,
                        shards=2, ray={"make": functools.partial(_model_and_head, opts, None), "concurrency": 2})
            distributed = time.perf_counter() - t0
        finally:
            ray.shutdown()
            cluster.shutdown()
        a, b = GalleryIndex.open(tmp / "one"), GalleryIndex.open(tmp / "ray")
        same = sorted(a.keys.tolist()) == sorted(b.keys.tolist())
        fig = {"images": n_images, "single_s": round(single, 2), "ray_s": round(distributed, 2),
               "cluster_start_s": round(start, 2), "single_img_s": round(n_images / single, 1),
               "ray_img_s": round(n_images / distributed, 1), "same_keys": same}
        report.print(f"\nRay overhead: {n_images} crops, bundled model, batch 8; local cluster of 2 nodes x 1 CPU, "
                     f"2 actors, 2 shards")
        report.table(["build", "seconds", "images/s"],
                     [["one process", f"{single:.1f}", f"{fig['single_img_s']:.1f}"],
                      ["Ray, 2 nodes", f"{distributed:.1f}", f"{fig['ray_img_s']:.1f}"],
                      ["(cluster start, apart)", f"{start:.1f}", ""]])
        report.print(f"Ray throughput / one process: {fig['ray_img_s'] / fig['single_img_s']:.2f} (same keys: {same})")
        return fig
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="gallery sizes (none: skip part 1)")
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--images", type=int, default=400, help="crops for the Ray overhead run (0: skip it)")
    args = parse(ap, argv)
    report = Report(args.out)
    figures = {"search": part_search(report, args.sizes, args.shards, args.queries)} if args.sizes else {}
    if args.images:
        figures["ray"] = part_ray(report, args.images)
    report.save(figures)


if __name__ == "__main__":
    main()
