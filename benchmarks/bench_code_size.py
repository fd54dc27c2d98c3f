"""Would codes half the size bring a search of a 10,000,000-row sharded gallery under 20 ms? 4-bit PQ
codes of 2 dims per code (64 bytes per 256-d row) against 4 dims per code (32 bytes), with or
without the random rotation before them (``xreid.index.ann.ROTATE``), each with the re-ranked
candidates it needs for recall.

    python benchmarks/bench_code_size.py [--rows 2500000] [--dim 256] [--queries 80] [--shards 4]
                                         [--threads 2] [--arms 2:200:plain 4:400 4:800] [--processes ROUNDS]
                                         [--out STEM]

One shard of ``--rows`` synthetic identities (``bench_sharded.py``'s generator, the size of a shard
of the 10 M benchmark), indexed as ``AnnIndex.build`` does (IVF lists for that size, every list
scanned, the library's single-query kernel) once per code choice. Each arm (``DIMS:CANDIDATES``, the
rotated codes and the candidates re-ranked exactly as the library does, ``xreid.distance``, in shard
threads set up as the library's are, ``ann.one_thread_per_scan``; ``:plain`` added: codes without the
rotation, as the library made them before it; ``:before``: the shard threads as the library ran them
before, the re-rank's product through the BLAS and faiss's default OpenMP threads) is
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
from typing import NamedTuple

import numpy as np

from bench_scan_kernel import vectors
from bench_sharded import queries_for
from common import Report, parse, parser
from xreid import distance
from xreid.index import ann
from xreid.index.ann import AnnIndex, TopK, candidates_for


class Arm(NamedTuple):
    per: int  # dims per 4-bit code
    candidates: int  # re-ranked exactly
    before: bool  # the shard threads' set-up before session 10's fix
    rotate: bool  # the random rotation before the codes

    @classmethod
    def parse(cls, text: str) -> "Arm":
        """'DIMS:CANDIDATES[:before][:plain]'."""
        per, cand, *flags = text.split(":")
        if set(flags) - {"before", "plain"}:
            raise ValueError(f"{text!r}: flags are 'before' and 'plain'")
        return cls(int(per), int(cand), "before" in flags, "plain" not in flags)

    @property
    def name(self) -> str:
        flags = (":before" if self.before else "") + ("" if self.rotate else ":plain")
        return f"{self.per}:{self.candidates}{flags}"


def build(x: np.ndarray, per: int, rotate: bool) -> AnnIndex:
    """``AnnIndex.build``'s index of ``x`` with ``per`` dims per 4-bit code, rotated or not, untuned
    (every list scanned)."""
    return AnnIndex.build(x, tune=False, rotate=rotate, per=per)  # untuned: it scans every list


def top10(index: AnnIndex, x: np.ndarray, q: np.ndarray, candidates: int) -> np.ndarray:
    """The library's search of one shard: the candidates of the 4-bit scan, re-ranked exactly."""
    index.factor = candidates // candidates_for(10)
    ids = index.search(q, 10)
    return ids[np.argsort(distance.cosine_distance(q, x[ids], normalised=True), kind="stable")[:10]]


def measure(args, arms: list[Arm], report: Report) -> list[dict]:
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
    for codes in sorted({(a.per, a.rotate) for a in arms}):
        report.progress(f"building the index with {codes[0]} dims per code" + ("" if codes[1] else ", no rotation"))
        one = build(x, *codes)
        shards[codes] = [one] + [AnnIndex(faiss.clone_index(one.index), one.nlist) for _ in range(args.shards - 1)]
    single = {a: [] for a in arms}
    sharded = {a: [] for a in arms}
    hits = {a: 0 for a in arms}
    own_loop = distance.OWN_LOOP_ROWS
    pools = {False: ThreadPoolExecutor(args.threads, initializer=ann.one_thread_per_scan),
             True: ThreadPoolExecutor(args.threads)}
    with pools[False], pools[True]:
        for i, qv in enumerate(q):
            for arm in arms[i % len(arms):] + arms[:i % len(arms)]:
                distance.OWN_LOOP_ROWS = 0 if arm.before else own_loop
                pool, copies = pools[arm.before], shards[arm.per, arm.rotate]
                t0 = time.perf_counter()
                top = top10(copies[0], x, qv, arm.candidates)
                single[arm].append(time.perf_counter() - t0)
                hits[arm] += len(np.intersect1d(top, truth.ids[i]))
                t0 = time.perf_counter()
                list(pool.map(lambda s: top10(s, x, qv, arm.candidates), copies))  # noqa: B023 - used at once
                sharded[arm].append(time.perf_counter() - t0)
    distance.OWN_LOOP_ROWS = own_loop
    size = {codes: int(copies[0].ivf.code_size) for codes, copies in shards.items()}  # bytes per row
    return [{"arm": arm.name, "dims_per_code": arm.per, "rotated": arm.rotate,
             "bytes_per_row": size[arm.per, arm.rotate], "candidates": arm.candidates,
             "threads": "before" if arm.before else "library",
             "recall_at_10": round(hits[arm] / (10 * len(q)), 3),
             "one_shard_p50_ms": round(float(np.median(single[arm])) * 1000, 2),
             "sharded_p50_ms": round(float(np.median(sharded[arm])) * 1000, 2),
             "sharded_p99_ms": round(float(np.percentile(sharded[arm], 99)) * 1000, 2),
             "codes_mb_per_query": round(args.shards * args.rows * size[arm.per, arm.rotate] / 1e6)}
            for arm in arms]


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
    ap.add_argument("--arms", nargs="+", default=["2:200:plain", "2:200", "4:400", "4:800"],
                    help="DIMS_PER_CODE:CANDIDATES[:before][:plain] (candidates a multiple of 200)")
    ap.add_argument("--processes", type=int, default=0, metavar="ROUNDS",
                    help="each arm in its own process, the arms alternating, this many rounds")
    ap.add_argument("--json-line", action="store_true", help=argparse.SUPPRESS)
    args = parse(ap, argv)
    try:
        arms = [Arm.parse(a) for a in args.arms]
    except ValueError as exc:
        ap.error(f"--arms: {exc}")
    if any(a.candidates % candidates_for(10) for a in arms):
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
    rows = [[f.get("round", ""), f["dims_per_code"], "yes" if f.get("rotated", False) else "no", f["bytes_per_row"],
             f["candidates"], f["threads"],
             f"{f['recall_at_10']:.3f}", f"{f['one_shard_p50_ms']:.2f}", f["codes_mb_per_query"],
             f"{f['sharded_p50_ms']:.2f}", f"{f['sharded_p99_ms']:.2f}"] for f in figs]
    report.table(["round", "dims per code", "rotated", "bytes per row", "candidates", "shard threads",
                  "recall@10 (one shard)",
                  "one shard, 1 thread p50 ms", "codes MB per query", f"{args.shards} shards p50 ms", "p99 ms"], rows)
    medians = {a.name: float(np.median([f["sharded_p50_ms"] for f in figs if f["arm"] == a.name])) for a in arms}
    report.print("median over rounds, " + f"{args.shards} shards p50: "
                 + ", ".join(f"{a} {m:.2f} ms" for a, m in medians.items()))
    report.save({"rows_per_shard": args.rows, "dim": args.dim, "shards": args.shards, "threads": args.threads,
                 "processes": args.processes, "figures": figs, "median_sharded_p50_ms": medians})


if __name__ == "__main__":
    main()
