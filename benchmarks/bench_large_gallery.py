"""Memory and time of evaluation on a large gallery (chunked distances, never Q x G at once).

    python benchmarks/bench_large_gallery.py [--gallery 100000] [--queries 2000] [--dim 1280] [--out STEM]

Random features with planted true matches, evaluated by the library's ``evaluate_ranking`` (the
ranking distance of ``xreid.distance``, ``--chunk`` queries at a time); prints peak resident
memory beside what a full query x gallery float32 distance matrix would need.
"""

from __future__ import annotations

import resource
import time

import numpy as np
from common import Report, parse, parser

from xreid.evaluation.metrics import evaluate_ranking


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--gallery", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--chunk", type=int, default=256)
    args = parse(ap)
    report = Report(args.out)
    rng = np.random.default_rng(0)
    g = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
    g_pids = np.arange(args.gallery).astype(str)
    picks = rng.choice(args.gallery, args.queries, replace=False)
    q = g[picks] + 0.8 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    before = peak_rss_mb()
    t = time.perf_counter()
    m = evaluate_ranking(q, g, g_pids[picks], g_pids, np.zeros(args.queries).astype(str),
                         np.ones(args.gallery).astype(str), chunk=args.chunk)
    seconds = time.perf_counter() - t
    full = args.queries * args.gallery * 4 / 2**20
    report.print(f"gallery {args.gallery} x {args.dim}-d, {args.queries} queries, chunk {args.chunk}: "
                 f"{seconds:.1f} s, mAP {100 * m.mAP:.1f}")
    report.print(f"peak RSS {peak_rss_mb():.0f} MB (features alone: {before:.0f} MB); "
                 f"a full distance matrix would be {full:.0f} MB, plus as much again for its sort order")
    report.save()


if __name__ == "__main__":
    main()
