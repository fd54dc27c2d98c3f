"""Would codes half the size bring a search of a 10,000,000-row sharded gallery under 20 ms? The
library's 4-bit PQ codes (``xreid.index.ann.DIMS_PER_CODE`` = 2 dims per code: 64 bytes per 256-d row)
against 4 dims per code (32 bytes), each with the re-ranked candidates it needs for recall.

    python benchmarks/bench_code_size.py [--rows 2500000] [--dim 256] [--queries 80] [--shards 4]
                                         [--threads 2] [--arms 2:200 4:1600 4:3200] [--processes ROUNDS]
                                         [--out STEM]

One shard of ``--rows`` synthetic identities (``bench_sharded.py``'s generator, the size of a shard
of the 10 M benchmark), indexed as ``AnnIndex.build`` does (IVF lists for that size, every list
scanned, the library's single-query kernel) once per code size. Each arm (``DIMS:CANDIDATES``, the
candidates re-ranked exactly as the library does, ``xreid.distance``, in shard threads set up as the
library's are, ``ann.one_thread_per_scan``; ``DIMS:CANDIDATES:before``: as the library did before both,
the re-rank's product through the BLAS and the shard threads with faiss's default OpenMP threads) is
measured two ways, the arms interleaved query by query so they share the machine's load:

- one shard on one thread: p50 of the scan plus the exact re-rank of the candidates, and recall@10
  of the re-ranked top 10 against exact search of the shard;
- ``--shards`` copies of the shard's index searched in ``--threads`` threads and merged, as a sharded
  search runs: the codes read per query and the threads' contention for memory bandwidth are those of
  a gallery of ``shards x rows`` (the copies index the same rows, so recall is the one-shard figure;
  a sharded search's merged recall is at least that).

Arms interleaved in one process share more than the machine's load: threads that one arm's BLAS or
OpenMP pool leaves spinning slow the next arm too. ``--processes ROUNDS`` runs each arm in a process
of its own instead, the arms alternating, ``ROUNDS`` times, and reports each round and the median
(how the ``:before`` arms are compared).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench_scan_kernel import vectors
from bench_sharded import queries_for
from common import Report, parse, parser
from xreid import distance
from xreid.index import ann
from xreid.index.ann import AnnIndex, TopK, candidates_for


def build(x: np.ndarray, per: int) -> AnnIndex:
    """``AnnIndex.build``'s index of ``x`` with ``per`` dims per 4-bit code, untuned (every list scanned)."""
    saved = ann.DIMS_PER_CODE
    ann.DIMS_PER_CODE = per
    try:
        index = AnnIndex.build(x, tune=False)
    finally:
        ann.DIMS_PER_CODE = saved
    return index  # untuned, it scans every list


def top10(index: AnnIndex, x: np.ndarray, q: np.ndarray, candidates: int) -> np.ndarray:
    """The library's search of one shard: the candidates of the 4-bit scan, re-ranked exactly."""
    index.factor = candidates // candidates_for(10)
    ids = index.search(q, 10)
    return ids[np.argsort(distance.cosine_distance(q, x[ids], normalised=True), kind="stable")[:10]]


def measure(args, arms: list[tuple[int, int, bool]], report: Report) -> list[dict]:
    """The figures of ``arms``, interleaved query by query in this process."""
    ann.one_thread_per_scan()  # this thread's one-shard figures: faiss on one thread, as in a shard thread
    report.progress(f"{args.rows:,} rows: making them and their exact top 10")
    x = vectors(args.rows, args.dim)
    q = queries_for(args.rows, args.dim, args.queries)
    truth = TopK(len(q), 10)
    for a in range(0, len(x), ann.TOPK_BLOCK):
        truth.add(q @ x[a:a + ann.TOPK_BLOCK].T, a)
    faiss = ann._faiss()
    shards = {}
    for per in sorted({p for p, _, _ in arms}):
        report.progress(f"building the index with {per} dims per code")
        one = build(x, per)
        shards[per] = [one] + [AnnIndex(faiss.clone_index(one.index), one.nlist) for _ in range(args.shards - 1)]
    single = {a: [] for a in arms}
    sharded = {a: [] for a in arms}
    hits = {a: 0 for a in arms}
    own_loop = distance.OWN_LOOP_ROWS
    pools = {False: ThreadPoolExecutor(args.threads, initializer=ann.one_thread_per_scan),
             True: ThreadPoolExecutor(args.threads)}
    with pools[False], pools[True]:
        for i, qv in enumerate(q):
            for arm in arms[i % len(arms):] + arms[:i % len(arms)]:
                per, cand, before = arm
                distance.OWN_LOOP_ROWS = 0 if before else own_loop
                pool = pools[before]
                t0 = time.perf_counter()
                top = top10(shards[per][0], x, qv, cand)
                single[arm].append(time.perf_counter() - t0)
                hits[arm] += len(np.intersect1d(top, truth.ids[i]))
                t0 = time.perf_counter()
                list(pool.map(lambda s: top10(s, x, qv, cand), shards[per]))  # noqa: B023 - used at once
                sharded[arm].append(time.perf_counter() - t0)
    distance.OWN_LOOP_ROWS = own_loop
    return [{"arm": f"{per}:{cand}" + (":before" if before else ""), "dims_per_code": per,
             "bytes_per_row": int(shards[per][0].index.code_size), "candidates": cand,
             "threads": "before" if before else "library",
             "recall_at_10": round(hits[per, cand, before] / (10 * len(q)), 3),
             "one_shard_p50_ms": round(float(np.median(single[per, cand, before])) * 1000, 2),
             "sharded_p50_ms": round(float(np.median(sharded[per, cand, before])) * 1000, 2),
             "sharded_p99_ms": round(float(np.percentile(sharded[per, cand, before], 99)) * 1000, 2),
             "codes_mb_per_query": round(args.shards * args.rows * int(shards[per][0].index.code_size) / 1e6)}
            for per, cand, before in arms]


def in_processes(args, report: Report) -> list[dict]:
    """Each arm in a process of its own, the arms alternating, ``args.processes`` rounds."""
    rounds = []
    for r in range(args.processes):
        order = args.arms[r % len(args.arms):] + args.arms[:r % len(args.arms)]
        for arm in order:
            report.progress(f"round {r + 1}: {arm}")
            cmd = [sys.executable, __file__, "--rows", str(args.rows), "--dim", str(args.dim), "--queries",
                   str(args.queries), "--shards", str(args.shards), "--threads", str(args.threads), "--arms", arm,
                   "--json-line"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rounds.append({**json.loads(out.strip().splitlines()[-1])[0], "round": r + 1})
    return rounds


def main(argv=None) -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--rows", type=int, default=2_500_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=80)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", nargs="+", default=["2:200", "4:1600", "4:3200"],
                    help="DIMS_PER_CODE:CANDIDATES[:before] (candidates a multiple of 200)")
    ap.add_argument("--processes", type=int, default=0, metavar="ROUNDS",
                    help="each arm in its own process, the arms alternating, this many rounds")
    ap.add_argument("--json-line", action="store_true", help=argparse.SUPPRESS)
    args = parse(ap, argv)
    arms = [(int(a.split(":")[0]), int(a.split(":")[1]), a.endswith(":before")) for a in args.arms]
    if any(c % candidates_for(10) for _, c, _ in arms):
        ap.error(f"--arms: candidates must be multiples of {candidates_for(10)}")
    report = Report(args.out)
    if args.json_line:
        print(json.dumps(measure(args, arms, report)))
        return
    figs = in_processes(args, report) if args.processes else measure(args, arms, report)
    how = (f"each arm in its own process, arms alternating, {args.processes} rounds" if args.processes
           else "arms interleaved query by query")
    report.print(f"{args.rows:,} synthetic {args.dim}-d rows per shard, every list scanned, kernel "
                 f"{ann.SINGLE_QUERY_KERNEL}, {args.queries} queries, {how}; {args.shards} shards = "
                 f"{args.shards} copies of the shard's index in {args.threads} threads")
    rows = [[f.get("round", ""), f["dims_per_code"], f["bytes_per_row"], f["candidates"], f["threads"],
             f"{f['recall_at_10']:.3f}", f"{f['one_shard_p50_ms']:.2f}", f["codes_mb_per_query"],
             f"{f['sharded_p50_ms']:.2f}", f"{f['sharded_p99_ms']:.2f}"] for f in figs]
    report.table(["round", "dims per code", "bytes per row", "candidates", "shard threads", "recall@10 (one shard)",
                  "one shard, 1 thread p50 ms", "codes MB per query", f"{args.shards} shards p50 ms", "p99 ms"], rows)
    medians = {a: float(np.median([f["sharded_p50_ms"] for f in figs if f["arm"] == a])) for a in args.arms}
    report.print("median over rounds, " + f"{args.shards} shards p50: "
                 + ", ".join(f"{a} {m:.2f} ms" for a, m in medians.items()))
    report.save({"rows_per_shard": args.rows, "dim": args.dim, "shards": args.shards, "threads": args.threads,
                 "processes": args.processes, "figures": figs, "median_sharded_p50_ms": medians})


if __name__ == "__main__":
    main()
