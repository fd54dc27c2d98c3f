"""Sharded gallery (``xreid.index.sharded``) and distributed indexing (``xreid index build --ray``):
what sharding and Ray cost and give on this machine.

    python benchmarks/bench_sharded.py [--sizes 10000 100000] [--shards 1 2 4] [--queries 100] [--dim 3072]
                                       [--skip-lookalikes] [--floors F ...] [--lists F ...] [--dims-per-code 2] [--rotation on|off]
                                       [--images 400 1600] [--batch 32]
                                       [--repeats 2] [--out STEM]

Part 1, sharded search: synthetic galleries at the default model's dimension (3,072; ``--dim``: another,
e.g. 256 for OMZ 0277 or a compact model), people seen
several times (one identity per 5 rows, views at cosine ~0.6 to their centre, so neighbours exist
as in real embeddings), written through ``IndexWriter`` into 1, 2 or 4 shards (a row's shard is
``shard_of(key)``), each shard as ``xreid index build`` leaves it (one segment; an ANN structure
from 50,000 rows per shard, exact search below; a vector file, memory-mapped, from 512 MB of vectors
per shard). The rows are made in blocks of ``CHUNK`` (each block's people and views from its own seed)
and never held all at once, so 10,000,000 rows fit this machine. Build time: writing and finishing
every shard from the vectors (embedding excluded). Memory per shard: what a search process holds
(uint8 attribute codes, the ANN file, and the float32 vectors unless they are mapped) and, apart,
the mapped vectors. Latency: one query at a time, k = 10, shard-parallel threads, p50 / p99 over
``--queries`` queries (perturbed views of gallery rows), with the scan floor the build recorded or,
with ``--floors``, each floor given, and with ``--lists``, exactly each fraction of the lists given
(the same index, searched again: what recall a narrower scan keeps); ``--dims-per-code 4`` builds
with codes half the default size (``xreid.index.ann.DIMS_PER_CODE``), ``--rotation off`` without the
random rotation before the codes (``ROTATE``). Recall@10 against exact search
(numpy, float32, over all rows, block by block).

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

from common import Report, apply_codes, codes_name, codes_options, lookalike_pass, parse, parser
from xreid.distance import l2_normalise
from xreid.index import ann
from xreid.index.ann import SCAN_FLOOR, TopK, scan_nprobe
from xreid.index.gallery import GalleryIndex, IndexWriter, Rows
from xreid.index.sharded import finish_sharded, shard_of, start_sharded

DIM, N_ATTR = 3072, 57
IDENTITY = {"model": "synthetic", "fingerprint": "0" * 16, "preprocess": {}, "flip": False}
HEAD = {"head": "synthetic", "head_fingerprint": "0"}


#: rows made (and written, and scored for the exact answer) at a time
CHUNK = 250_000


def identity_block(n: int, c: int, dim: int, seed: int = 0) -> np.ndarray:
    """Rows ``c * CHUNK`` .. of ``n`` synthetic unit vectors: the block's own people (one per 5 rows),
    each row one of them seen anew, from the block's own seed (any block can be made again alone)."""
    m = min(CHUNK, n - c * CHUNK)
    rng = np.random.default_rng([seed, c])
    people = max(1, m // 5)
    centres = rng.standard_normal((people, dim)).astype(np.float32)
    x = centres[rng.integers(0, people, m)] + 1.3 * rng.standard_normal((m, dim)).astype(np.float32)
    return l2_normalise(x).astype(np.float32)


def blocks(n: int) -> range:
    return range(-(-n // CHUNK))


def queries_for(n: int, dim: int, n_queries: int) -> np.ndarray:
    """Perturbed views of ``n_queries`` gallery rows drawn at random (their blocks made again)."""
    rng = np.random.default_rng(1)
    picks = rng.integers(0, n, n_queries)
    noise = 0.5 * rng.standard_normal((n_queries, dim)).astype(np.float32) / np.sqrt(dim)
    rows = np.zeros((n_queries, dim), np.float32)
    for c in np.unique(picks // CHUNK):
        here = picks // CHUNK == c
        rows[here] = identity_block(n, int(c), dim)[picks[here] - c * CHUNK]
    return l2_normalise(rows + noise).astype(np.float32)


def write_case(case: Path, n: int, dim: int, shards: int, queries: np.ndarray, lookalikes: bool = True
               ) -> tuple[float, np.ndarray]:
    """Write the ``n`` synthetic rows into ``shards`` shards as a build does, block by block, every
    shard's writer open at once, scoring each block against ``queries`` on the way; returns the
    seconds taken (the scoring left out) and each query's exact top 10 (row numbers). Without
    ``lookalikes`` the build's look-alike pass (each row's nearest rows, for attribute smoothing)
    is left out."""
    if not lookalikes:
        with lookalike_pass(False):
            return write_case(case, n, dim, shards, queries)
    from contextlib import ExitStack

    names = [f"a{j}" for j in range(N_ATTR)]
    best, scoring = TopK(len(queries), 10), 0.0
    t0 = time.perf_counter()
    dirs = start_sharded(case, shards, IDENTITY, names, HEAD, dim) if shards > 1 else [case]
    with ExitStack() as stack:
        writers = [stack.enter_context(IndexWriter.create(d, IDENTITY, names, HEAD, dim)) for d in dirs]
        for c in blocks(n):
            x = identity_block(n, c, dim)
            t1 = time.perf_counter()
            best.add(queries @ x.T, c * CHUNK)
            scoring += time.perf_counter() - t1
            keys = np.array([f"p/{i:08d}.jpg" for i in range(c * CHUNK, c * CHUNK + len(x))])
            where = np.array([shard_of(k, shards) for k in keys]) if shards > 1 else np.zeros(len(x), int)
            for s, w in enumerate(writers):
                mine = np.flatnonzero(where == s)
                w.commit(Rows(keys[mine].tolist(), x[mine], np.full((len(mine), N_ATTR), 0.3)))
        for w in writers:
            w.finish()
    if shards > 1:
        finish_sharded(case)
    return time.perf_counter() - t0 - scoring, best.ids


def shard_memory(g: GalleryIndex) -> list[tuple[float, float]]:
    """MB per shard: (held: attribute codes, ANN file, and vectors unless mapped; mapped vectors)."""
    out = []
    for s in getattr(g, "shards", [g]):
        ann_bytes = (s.case / s.manifest["ann"]["file"]).stat().st_size if s.manifest.get("ann") else 0
        mapped = isinstance(s.vectors, np.memmap)
        out.append(((s.attribute_codes.nbytes + ann_bytes + (0 if mapped else s.vectors.nbytes)) / 2**20,
                    s.vectors.nbytes / 2**20 if mapped else 0.0))
    return out


def set_floor(g: GalleryIndex, floor: float | None, lists: bool = False) -> list[int | None]:
    """Search every shard with the scan floor ``floor`` (None: the one its build recorded), or with
    ``lists`` exactly that fraction of its lists (the tuning and the floor set aside); the lists each
    scans."""
    out = []
    for s in getattr(g, "shards", [g]):
        if s.ann is not None:
            recorded = s.manifest["ann"].get("scan_floor", SCAN_FLOOR)
            tuned = 1 if lists else s.ann.tuned_nprobe
            s.ann.nprobe = scan_nprobe(tuned, s.ann.nlist, recorded if floor is None else floor)
        out.append(None if s.ann is None else s.ann.nprobe)
    return out


def part_search(report: Report, sizes: list[int], shard_counts: list[int], n_queries: int,
                dim: int = DIM, lookalikes: bool = True, floors: list[float | None] | None = None,
                fractions: list[float] | None = None) -> list[dict]:
    figures = []
    rows = []
    for n in sizes:
        queries = queries_for(n, dim, n_queries)
        for shards in shard_counts:
            tmp = Path(tempfile.mkdtemp(prefix="xreid-shard-"))
            try:
                report.progress(f"n={n} shards={shards}: building")
                build_s, exact = write_case(tmp / "case", n, dim, shards, queries, lookalikes=lookalikes)
                exact = [set(r.tolist()) for r in exact]
                t0 = time.perf_counter()
                g = GalleryIndex.open(tmp / "case")
                open_s = time.perf_counter() - t0
                row_of = {k: int(k[2:10]) for k in g.keys.tolist()}
                mem = shard_memory(g)
                settings = [(f, False) for f in floors or ([] if fractions else [None])]
                for floor, fixed in settings + [(f, True) for f in fractions or []]:
                    lists = set_floor(g, floor, fixed)
                    g.search(queries[0], 10)
                    lat, recall = [], []
                    for q, truth in zip(queries, exact):
                        t0 = time.perf_counter()
                        hits = g.search(q, 10)
                        lat.append((time.perf_counter() - t0) * 1000)
                        recall.append(len({row_of[k] for k in hits.keys} & truth) / 10)
                    anns = [s.ann for s in getattr(g, "shards", [g])]
                    nlist = [a.nlist if a is not None else None for a in anns]
                    fig = {"rows": n, "shards": shards, "build_s": round(build_s, 2), "open_s": round(open_s, 2),
                           "shard_mb": [round(m, 1) for m, _ in mem], "mapped_mb": [round(m, 1) for _, m in mem],
                           "p50_ms": round(float(np.percentile(lat, 50)), 2),
                           "p99_ms": round(float(np.percentile(lat, 99)), 2),
                           "recall10": round(float(np.mean(recall)), 4), "method": hits.method,
                           "lookalikes": lookalikes, "floor": None if fixed else floor,
                           "lists_fraction": floor if fixed else None, "nprobe": lists, "nlist": nlist,
                           "spec": [a and a.spec for a in anns], "rerank_factor": [a and a.factor for a in anns],
                           "tuned_recall": [a and a.tuned_recall for a in anns]}
                    figures.append(fig)
                    rows.append([f"{n:,}", shards, f"{build_s:.1f}", f"{open_s:.1f}", f"{max(m for m, _ in mem):.0f}",
                                 f"{max(m for _, m in mem):.0f}",
                                 f"lists {floor:g}" if fixed else "build's" if floor is None else f"{floor:g}",
                                 f"{fig['p50_ms']:.1f}", f"{fig['p99_ms']:.1f}", f"{fig['recall10']:.3f}", hits.method,
                                 " ".join(f"{a}/{b}" for a, b in zip(lists, nlist) if a)])
                del g
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    report.print(f"Sharded search, {dim}-d synthetic identities, k = 10, {n_queries} queries, one at a time; "
                 f"codes {codes_name(dim)} (4-bit PQ)"
                 + ("" if lookalikes else "; builds without the look-alike pass (--skip-lookalikes)"))
    report.table(["rows", "shards", "build s", "open s", "MB held per shard (max)", "MB mapped per shard (max)",
                  "scan floor (or lists)", "p50 ms", "p99 ms", "recall@10", "search", "lists scanned / nlist"], rows)
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
    ap.add_argument("--floors", type=float, nargs="+", default=None,
                    help="part 1: search each index again with each of these scan floors (default: the build's)")
    ap.add_argument("--lists", type=float, nargs="+", default=None,
                    help="part 1: search each index again scanning exactly this fraction of its lists (the tuning "
                         "and the floor set aside): the recall / latency trade-off")
    ap.add_argument("--skip-lookalikes", action="store_true",
                    help="part 1: leave the build's look-alike pass out (at 1 M rows it dominates the build)")
    ap.add_argument("--images", type=int, nargs="*", default=[400, 1600],
                    help="crops of the Ray overhead run: two folder sizes (none: skip it)")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the Ray overhead run")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of the Ray overhead run")
    codes_options(ap)  # part 1's builds (part 2 builds too few rows for an ANN)
    args = parse(ap, argv)
    apply_codes(ap, args)
    report = Report(args.out)
    figures = {"search": part_search(report, args.sizes, args.shards, args.queries, args.dim,
                                     not args.skip_lookalikes, args.floors, args.lists)} if args.sizes else {}
    if args.images:
        figures["ray"] = part_ray(report, args.images, args.batch, args.repeats)
    report.save(figures)


if __name__ == "__main__":
    main()
