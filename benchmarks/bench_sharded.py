"""Sharded gallery (``xreid.index.sharded``) and distributed indexing (``xreid index build --ray``):
what sharding and Ray cost and give on this machine.

    python benchmarks/bench_sharded.py [--sizes 10000 100000] [--shards 1 2 4] [--queries 100] [--dim 3072]
                                       [--skip-lookalikes] [--images 400 1600] [--batch 32] [--repeats 2] [--out STEM]

Part 1, sharded search: synthetic galleries at the default model's dimension (3,072; ``--dim``: another,
e.g. 256 for OMZ 0277 or a compact model), people seen
several times (one identity per 5 rows, views at cosine ~0.6 to their centre, so neighbours exist
as in real embeddings), written through ``IndexWriter`` into 1, 2 or 4 shards (a row's shard is
``shard_of(key)``), each shard as ``xreid index build`` leaves it (one segment; an ANN structure
from 50,000 rows per shard, exact search below). Build time: writing and finishing every shard
from the vectors (embedding excluded). Memory per shard: its float32 vectors, uint8 attribute codes
and ANN file. Latency: one query at a time, k = 10, shard-parallel threads, p50 / p99 over
``--queries`` queries (perturbed views of gallery identities). Recall@10 against exact search
(numpy, float32, over all rows).

Part 2, Ray's overhead: synthetic crops indexed with the bundled model into 2 shards, once in one
process and once with ``--ray`` on a local two-node cluster (``ray.cluster_utils.Cluster``, head
and one worker, 1 CPU each, two model actors whose runtimes run on the one CPU Ray gave each), on
the same two cores. The two arms run interleaved (back to back, alternating which goes first), at
two folder sizes (``--images 400 1600``), ``--repeats`` times: the machine is shared, so only
side-by-side figures compare. Throughput counts the whole build (model loading in each actor
included); the marginal throughput ((n2 - n1) / (t2 - t1)) leaves out what a build pays once. The
cluster's own start is reported apart. Prints the ratios (Ray / one process).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import Report, lookalike_pass, parse, parser
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


def write_case(case: Path, x: np.ndarray, shards: int, batch: int = 20_000, lookalikes: bool = True) -> float:
    """Seconds to write ``x`` into ``shards`` shards as a build does; without ``lookalikes`` the
    build's look-alike pass (each row's nearest rows, for attribute smoothing) is left out."""
    if not lookalikes:
        with lookalike_pass(False):
            return write_case(case, x, shards, batch)
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


def part_search(report: Report, sizes: list[int], shard_counts: list[int], n_queries: int,
                dim: int = DIM, lookalikes: bool = True) -> list[dict]:
    figures = []
    rows = []
    for n in sizes:
        x, ids = identities(n, dim)
        rng = np.random.default_rng(1)
        picks = rng.integers(0, n, n_queries)
        noise = 0.5 * rng.standard_normal((n_queries, dim)).astype(np.float32) / np.sqrt(dim)
        queries = l2_normalise(x[picks] + noise).astype(np.float32)
        exact = [set(np.argpartition(-(x @ q), 10)[:10].tolist()) for q in queries]
        for shards in shard_counts:
            tmp = Path(tempfile.mkdtemp(prefix="xreid-shard-"))
            try:
                report.progress(f"n={n} shards={shards}: building")
                build_s = write_case(tmp / "case", x, shards, lookalikes=lookalikes)
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
                       "method": hits.method, "lookalikes": lookalikes,
                       "nprobe": [s.manifest["ann"]["nprobe"] if s.manifest.get("ann") else None
                                  for s in getattr(g, "shards", [g])],
                       "nlist": [s.manifest["ann"]["nlist"] if s.manifest.get("ann") else None
                                 for s in getattr(g, "shards", [g])]}
                figures.append(fig)
                rows.append([f"{n:,}", shards, f"{build_s:.1f}", f"{max(mem):.0f}", f"{fig['p50_ms']:.1f}",
                             f"{fig['p99_ms']:.1f}", f"{fig['recall10']:.3f}", hits.method,
                             " ".join(f"{a}/{b}" for a, b in zip(fig["nprobe"], fig["nlist"]) if a)])
                del g
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    report.print(f"Sharded search, {dim}-d synthetic identities, k = 10, {n_queries} queries, one at a time"
                 + ("" if lookalikes else "; builds without the look-alike pass (--skip-lookalikes)"))
    report.table(["rows", "shards", "build s", "MB per shard (max)", "p50 ms", "p99 ms", "recall@10", "search",
                  "lists scanned / nlist"], rows)
    return figures


def _timed_build(embedder, head, root: Path, folder: str, out: Path, batch: int, ray: dict | None) -> dict:
    """One build of ``root/folder`` into 2 shards: wall seconds, images per second and the time of
    its first committed batch (``commit_batch`` wrapped)."""
    import xreid.workflows.index as idx
    from xreid.workflows.index import build_index

    commit, stamps = idx.commit_batch, []

    def timed(writers, entries, o):
        got = commit(writers, entries, o)
        stamps.append(time.perf_counter())
        return got

    idx.commit_batch = timed
    try:
        t0 = time.perf_counter()
        report = build_index(embedder, head, root, out, images=root / folder, batch_size=batch, progress=False,
                             shards=2, ray=ray)
        total = time.perf_counter() - t0
    finally:
        idx.commit_batch = commit
    return {"s": round(total, 2), "img_s": round(report.count / total, 1), "first_batch_s": round(stamps[0] - t0, 2),
            "count": report.count}


def part_ray(report: Report, sizes: list[int], batch: int, repeats: int) -> dict:
    """One process against Ray (2 one-CPU actors) on the same 2 cores, interleaved: for each repeat
    and folder size the two arms run back to back, in alternating order. Two sizes give each arm's
    marginal throughput ((n2 - n1) / (t2 - t1)): what a build costs per image once started."""
    import ray
    from ray.cluster_utils import Cluster

    from xreid.workflows.loading import ModelOptions, model_and_head

    tmp = Path(tempfile.mkdtemp(prefix="xreid-ray-"))
    try:
        from PIL import Image

        rng = np.random.default_rng(0)
        root = tmp / "data"
        for n in sizes:
            (root / f"crops{n}").mkdir(parents=True)
        for i in range(max(sizes)):
            img = Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8))
            for n in sizes:
                if i < n:
                    img.save(root / f"crops{n}" / f"c{i:05d}.jpg")
        opts = ModelOptions()
        embedder, head = model_and_head(opts, None)
        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20,
                                                                "include_dashboard": False})
        cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t0
        make = functools.partial(model_and_head, opts, None)
        arms = [("one", None), ("ray", {"make": make, "concurrency": 2})]
        runs, rows = [], []
        try:
            for r in range(repeats):
                fig = {"repeat": r + 1}
                for n in sizes:
                    for name, ray_opts in (arms if (r + len(fig)) % 2 == 0 else arms[::-1]):
                        report.progress(f"repeat {r + 1}, {n} crops: {name}")
                        out = tmp / f"case-{r}-{n}-{name}"
                        fig[(name, n)] = _timed_build(embedder, head, root, f"crops{n}", out, batch, ray_opts)
                        shutil.rmtree(out, ignore_errors=True)
                a, b = min(sizes), max(sizes)
                marginal = {name: (b - a) / max(fig[(name, b)]["s"] - fig[(name, a)]["s"], 1e-9) for name, _ in arms}
                runs.append({"repeat": r + 1, "sizes": {str(n): {name: fig[(name, n)] for name, _ in arms}
                                                        for n in sizes},
                             "marginal_img_s": {k: round(v, 1) for k, v in marginal.items()},
                             "marginal_ratio": round(marginal["ray"] / marginal["one"], 2)})
                for n in sizes:
                    one, dist = fig[("one", n)], fig[("ray", n)]
                    rows.append([r + 1, n, f"{one['img_s']:.1f}", f"{dist['img_s']:.1f}",
                                 f"{dist['img_s'] / one['img_s']:.2f}", f"{dist['first_batch_s']:.1f}"])
                rows.append([r + 1, f"marginal {a}->{b}", f"{marginal['one']:.1f}", f"{marginal['ray']:.1f}",
                             f"{marginal['ray'] / marginal['one']:.2f}", ""])
        finally:
            ray.shutdown()
            cluster.shutdown()
        report.print(f"\nRay overhead: synthetic crops, bundled model, batch {batch}, 2 shards; one process against a "
                     f"local cluster of 2 nodes x 1 CPU (2 actors, each runtime on 1 thread), on the same 2 cores; "
                     f"the arms interleaved (back to back, alternating order); cluster start {start:.1f} s, apart")
        report.table(["repeat", "crops", "one img/s", "Ray img/s", "Ray / one", "Ray first batch s"], rows)
        whole = {n: float(np.median([x["sizes"][str(n)]["ray"]["img_s"] / x["sizes"][str(n)]["one"]["img_s"]
                                     for x in runs])) for n in sizes}
        marginal = float(np.median([x["marginal_ratio"] for x in runs]))
        for n, v in whole.items():
            report.print(f"Ray throughput / one process, {n} crops, whole build (start-up included), median of "
                         f"{repeats}: {v:.2f}")
        report.print(f"Ray marginal throughput / one process ({min(sizes)} -> {max(sizes)} crops, start-up excluded), "
                     f"median of {repeats}: {marginal:.2f}")
        return {"sizes": sizes, "batch": batch, "cluster_start_s": round(start, 2), "runs": runs,
                "median_ratio": {str(n): round(v, 2) for n, v in whole.items()},
                "median_marginal_ratio": round(marginal, 2)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="gallery sizes (none: skip part 1)")
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--dim", type=int, default=DIM, help="dimension of the synthetic vectors (part 1)")
    ap.add_argument("--skip-lookalikes", action="store_true",
                    help="part 1: leave the build's look-alike pass out (at 1 M rows it dominates the build)")
    ap.add_argument("--images", type=int, nargs="*", default=[400, 1600],
                    help="crops of the Ray overhead run: two folder sizes (none: skip it)")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the Ray overhead run")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of the Ray overhead run")
    args = parse(ap, argv)
    report = Report(args.out)
    figures = {"search": part_search(report, args.sizes, args.shards, args.queries, args.dim,
                                     not args.skip_lookalikes)} if args.sizes else {}
    if args.images:
        figures["ray"] = part_ray(report, args.images, args.batch, args.repeats)
    report.save(figures)


if __name__ == "__main__":
    main()
