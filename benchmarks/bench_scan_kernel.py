"""Which faiss fast-scan kernel a gallery search should run: the one faiss picks itself against
``xreid.index.ann.SINGLE_QUERY_KERNEL``, for one query at a time (what an analyst's search does) and
for a batch (what the build's tuning and look-alike pass do).

    python benchmarks/bench_scan_kernel.py [--rows 1000000 2500000] [--dim 256] [--queries 100]
                                           [--batch 256] [--kernels 0 10 12] [--out STEM]

For each size, one index as ``xreid index build`` makes it (``AnnIndex.build``: the library's IVF
list count and 4-bit PQ codes) over the synthetic identities of ``bench_sharded.py``, searched over
every list (the default scan floor) on one thread. Single queries: each query is searched with
every kernel back to back, the order rotating, so the kernels share the machine's load; p50 / p99
over the queries and each kernel's p50 over the automatic kernel's. Batch: the ``--batch`` queries
at once, best of three, per kernel. Also the share of the candidates each kernel returns that the
automatic kernel returns too (the kernels differ only in how they break ties of the 4-bit scores).
Last, how two scans share the machine: two single queries (the library's kernel) one after the other
against both at once in two threads (as a sharded search's threads run): the speed-up, 2 at best on
two cores, and the bytes of codes scanned per second; a speed-up well under 2 says the scan is bound
by memory bandwidth, not by the cores.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench_sharded import blocks, identity_block, queries_for
from common import Report, parse, parser
from xreid.index import ann
from xreid.index.ann import AnnIndex, candidates_for


def vectors(n: int, dim: int) -> np.ndarray:
    return np.concatenate([identity_block(n, c, dim) for c in blocks(n)])


def kernel_search(index: AnnIndex, queries: np.ndarray, kernel: int, params) -> tuple[float, np.ndarray]:
    """(seconds, candidate ids) of one faiss search of ``queries`` with fast-scan kernel ``kernel``."""
    index.ivf.implem = kernel
    t0 = time.perf_counter()
    _, ids = index.index.search(queries, candidates_for(10), params=params)
    return time.perf_counter() - t0, ids


def measure(n: int, dim: int, n_queries: int, batch: int, kernels: list[int], report: Report) -> dict:
    faiss = ann._faiss()
    faiss.omp_set_num_threads(1)
    report.progress(f"{n:,} rows: building")
    x = vectors(n, dim)
    t0 = time.perf_counter()
    index = AnnIndex.build(x, tune=False)
    build_s = time.perf_counter() - t0
    del x
    params = faiss.SearchParametersIVF(nprobe=index.nlist)
    queries = queries_for(n, dim, max(n_queries, batch))
    single = {k: [] for k in kernels}
    found = {k: [] for k in kernels}
    for i, q in enumerate(queries[:n_queries]):
        order = kernels[i % len(kernels):] + kernels[:i % len(kernels)]
        for k in order:
            s, ids = kernel_search(index, q[None], k, params)
            single[k].append(s * 1000)
            found[k].append(ids[0])
    auto = kernels[0]
    agree = {k: float(np.mean([len(np.intersect1d(a, b)) / len(a) for a, b in zip(found[auto], found[k])]))
             for k in kernels}
    pairs = two_at_once(index, queries[:40], params)
    batched = {k: min(kernel_search(index, queries[:batch], k, params)[0] for _ in range(3)) * 1000 for k in kernels}
    fig = {"rows": n, "nlist": index.nlist, "spec": index.spec, "build_s": round(build_s, 1),
           "single": {str(k): {"p50_ms": round(float(np.percentile(v, 50)), 2),
                               "p99_ms": round(float(np.percentile(v, 99)), 2),
                               "p50_over_auto": round(float(np.percentile(v, 50) / np.percentile(single[auto], 50)), 2),
                               "candidates_shared_with_auto": round(agree[k], 4)} for k, v in single.items()},
           "batch": {str(k): {"ms": round(v, 1), "over_auto": round(v / batched[auto], 2)} for k, v in batched.items()},
           "two_at_once": pairs}
    rows = [[f"{n:,}", index.spec, k, f"{fig['single'][str(k)]['p50_ms']:.2f}", f"{fig['single'][str(k)]['p99_ms']:.2f}",
             f"{fig['single'][str(k)]['p50_over_auto']:.2f}", f"{agree[k]:.4f}", f"{batched[k]:.1f}",
             f"{fig['batch'][str(k)]['over_auto']:.2f}"] for k in kernels]
    report.table(["rows", "index", "kernel", "one query p50 ms", "p99 ms", "p50 / auto", "candidates shared with auto",
                  f"batch of {batch} ms", "batch / auto"], rows)
    report.print(f"two single queries, kernel {ann.SINGLE_QUERY_KERNEL}: one after the other {pairs['serial_ms']:.2f} ms, "
                 f"in two threads {pairs['threads_ms']:.2f} ms (medians): speed-up {pairs['speedup']:.2f}; codes scanned "
                 f"{pairs['serial_gb_s']:.1f} GB/s by one thread, {pairs['threads_gb_s']:.1f} GB/s by two\n")
    return fig


def two_at_once(index: AnnIndex, queries: np.ndarray, params) -> dict:
    """Medians over query pairs: two single-query scans one after the other, and in two threads."""
    index.ivf.implem = ann.SINGLE_QUERY_KERNEL
    one = lambda q: index.index.search(q[None], candidates_for(10), params=params)  # noqa: E731
    serial, threads = [], []
    with ThreadPoolExecutor(2) as pool:
        for a, b in zip(queries[0::2], queries[1::2]):
            t0 = time.perf_counter()
            one(a), one(b)
            serial.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            list(pool.map(one, (a, b)))
            threads.append(time.perf_counter() - t0)
    codes = 2 * index.rows * index.ivf.code_size / 1e9  # GB scanned by the pair
    s, t = float(np.median(serial)), float(np.median(threads))
    return {"serial_ms": round(s * 1000, 2), "threads_ms": round(t * 1000, 2), "speedup": round(s / t, 2),
            "serial_gb_s": round(codes / s, 1), "threads_gb_s": round(codes / t, 1)}


def main(argv=None) -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_500_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--kernels", type=int, nargs="+", default=[0, ann.SINGLE_QUERY_KERNEL, 12],
                    help="faiss IndexIVFFastScan.implem values; the first is the reference (0: faiss's own pick)")
    args = parse(ap, argv)
    report = Report(args.out)
    report.print(f"faiss fast-scan kernels, {args.dim}-d synthetic identities, a scan of every list, one thread; "
                 f"{args.queries} single queries (kernels interleaved), a batch of {args.batch}; "
                 f"the library uses {ann.SINGLE_QUERY_KERNEL} for one query and 0 for batches")
    report.save({"figures": [measure(n, args.dim, args.queries, args.batch, args.kernels, report) for n in args.rows]})


if __name__ == "__main__":
    main()
