"""The distractor test of the good-practices paper on PETA-ReID: mAP as distractor embeddings join
each test gallery, exact search against the index's approximate search.

    python benchmarks/bench_distractors.py [--data-root ROOT] [--protocol peta-reid | peta-reid-val]
                                           [--model default | FILE.xml ...] [--cache DIR]
                                           [--levels 0 10000 100000 300000] [--fit 4000] [--real 4000]
                                           [--k 100] [--scan-floor F] [--floors F ...]
                                           [--dims-per-code 2] [--rotation on|off] [--out STEM]

Embeddings: ``--model`` (default: the bundled model, 3,072-d; any model ``xreid`` loads, e.g. OMZ
0277 at 256-d, which never saw PETA) on the protocol's three query/gallery sets (PETA-ReID test:
VIPeR, PRID, GRID; ``--protocol peta-reid-val``: the validation sets, where choices are made) and
on ``--fit`` + ``--real`` images drawn from the protocol's **train** split (other identities: the
val protocol's train holds none of the val sets' people), cached under ``--cache``. Distractors are synthetic, fitted on the ``--fit`` train embeddings
without any free parameter: **views** (the levels): new views of the train identities that have
two or more images there, each an identity's centre (mean normalised embedding) plus the residual
of a random image from its own centre (any identity), normalised: the within-person spread of
real views around real people. A check runs first: ``--real`` real train crops as distractors
against as many 'views' and as many 'gaussian' ones (a Gaussian fitted to the same embeddings:
mean, top ``--rank`` principal directions, isotropic rest), to show how hard each kind is next to
real people.

At each level the three test galleries and the distractors are one in-memory ``GalleryIndex``
(string field ``set``: the test set or 'distractor'), with the index's own ANN structure
(``AnnIndex.build``: IVF-PQ fast-scan, nprobe tuned as a build tunes it and raised to the scan
floor, ``--scan-floor``, default the library's) at every level; each test
set's queries search it with the filter ``set in {its set, distractor}`` (the filter inside the
search, as the server does). Exact: every distance computed, the library's ranking metrics (full
mAP and the top-``--k`` list). Approximate: ``GalleryIndex.search(q, k)``, which uses the ANN
structure where the filter keeps more than ``EXACT_LIMIT`` (20,000) rows and searches exactly
below. Both are scored on their top ``k`` (mAP@k: true matches missing from the list count as not
found, ``truncated_average_precision``), so their difference is what the ANN loses; the full exact
mAP is given beside. Figures are the mean over the three test sets, as PETA-ReID reports.
Latency: p50 of one query at a time through ``GalleryIndex.search`` with the filter, the index's
search on every query, the exact search (``exact=True``) on ``--exact-timed`` queries per set.
``--floors``: the index's search again with other scan floors (the same ANN structure), to choose
the floor on PETA-ReID-val. ``--dims-per-code`` and ``--rotation``: the ANN's codes, as a what-if
(default: the library's), to choose them there.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from common import Report, apply_codes, codes_name, codes_options, parse, parser, relative
from xreid.distance import cosine_distance, l2_normalise
from xreid.evaluation.metrics import MetricAccumulator, truncated_average_precision
from xreid.index.ann import SCAN_FLOOR, AnnIndex, scan_nprobe
from xreid.index.filters import Filter
from xreid.index.gallery import EXACT_LIMIT, GalleryIndex


def fit_gaussian(x: np.ndarray, rank: int) -> dict:
    """Mean, top ``rank`` principal directions with their standard deviations, and the standard
    deviation of the isotropic rest, of the L2-normalised rows of ``x``."""
    x = l2_normalise(x).astype(np.float64)
    mu = x.mean(0)
    _, s, vt = np.linalg.svd(x - mu, full_matrices=False)
    var = s**2 / (len(x) - 1)
    rank = min(rank, len(var), x.shape[1] - 1)  # at least one direction left for the isotropic rest
    rest = max(var[rank:].sum(), 0.0) / (x.shape[1] - rank)
    return {"mean": mu.astype(np.float32), "dirs": vt[:rank].astype(np.float32),
            "std": np.sqrt(var[:rank]).astype(np.float32), "rest_std": float(np.sqrt(rest))}


def draw(model: dict, out: np.ndarray, seed: int, chunk: int = 20_000) -> None:
    """Fill ``out`` (n x D float32) with L2-normalised draws from ``model``, ``chunk`` rows at a time."""
    rng = np.random.default_rng(seed)
    r, dim = model["dirs"].shape
    for a in range(0, len(out), chunk):
        n = min(chunk, len(out) - a)
        x = model["mean"] + (rng.standard_normal((n, r), dtype=np.float32) * model["std"]) @ model["dirs"]
        x += model["rest_std"] * rng.standard_normal((n, dim), dtype=np.float32)
        out[a:a + n] = l2_normalise(x)


def fit_views(x: np.ndarray, pids: np.ndarray) -> dict:
    """The centres (mean L2-normalised embedding) of the identities with two or more images in
    ``x``, and the residuals of those images from their centre (scaled by sqrt(n / (n - 1)), so
    their spread is an unbiased estimate of one view's)."""
    x = l2_normalise(x).astype(np.float32)
    names, inverse, counts = np.unique(pids, return_inverse=True, return_counts=True)
    centres = np.zeros((len(names), x.shape[1]), np.float32)
    np.add.at(centres, inverse, x)
    centres /= counts[:, None]
    many = counts[inverse] >= 2
    scale = np.sqrt(counts[inverse][many] / (counts[inverse][many] - 1))[:, None]
    residuals = ((x[many] - centres[inverse[many]]) * scale).astype(np.float32)
    return {"centres": centres[counts >= 2], "residuals": residuals}


def draw_views(model: dict, out: np.ndarray, seed: int, chunk: int = 20_000) -> None:
    """Fill ``out`` with new views of train identities: a random identity's centre plus a random
    residual (of any identity), L2-normalised."""
    rng = np.random.default_rng(seed)
    c, r = model["centres"], model["residuals"]
    for a in range(0, len(out), chunk):
        n = min(chunk, len(out) - a)
        out[a:a + n] = l2_normalise(c[rng.integers(0, len(c), n)] + r[rng.integers(0, len(r), n)])


def memory_index(vectors: np.ndarray, sets: np.ndarray, seed: int = 0,
                 scan_floor: float = SCAN_FLOOR) -> tuple[GalleryIndex, float]:
    """An in-memory ``GalleryIndex`` over unit ``vectors`` with a string field ``set`` and the ANN
    structure a build makes; returns it and the ANN build seconds."""
    vocab, codes = np.unique(sets, return_inverse=True)
    n = len(vectors)
    t0 = time.perf_counter()
    ann = AnnIndex.build(vectors, seed=seed, scan_floor=scan_floor)
    built = time.perf_counter() - t0
    manifest = {"attributes": {"names": []}, "columns": {"set": "string"}, "segments": [], "identity": {}}
    thumbs = {"pack": np.full(n, -1, np.int32), "offset": np.zeros(n, np.int64), "length": np.zeros(n, np.int64)}
    index = GalleryIndex(Path("in-memory"), manifest, vectors, np.zeros((0, n), np.uint8),
                         np.array([f"r{i}" for i in range(n)]), np.full(n, np.nan),
                         {"set": (vocab, codes.astype(np.int32))}, thumbs, ann)
    return index, built


def sweep_nprobe(index: GalleryIndex, tests: list[dict], n_gallery: int, k: int, values: list[int],
                 floors: list[float] | None = None) -> list[dict]:
    """The index's search at other ``nprobe`` values, or (``floors``) at the nprobe other scan floors
    give (lists scanned; the index's own restored after): mean mAP@k and p50 latency over the test sets."""
    ann, out = index.ann, []
    own = ann.nprobe
    runs = ([(None, min(v, ann.nlist)) for v in values] if floors is None
            else [(f, scan_nprobe(ann.tuned_nprobe, ann.nlist, f)) for f in floors])
    try:
        for floor, nprobe in sorted(set(runs), key=lambda r: (r[1], r[0] or 0)):
            ann.nprobe = nprobe
            res = score_level(index, tests, n_gallery, k, exact=False)
            out.append({"floor": floor, "nprobe": nprobe, "mAP_k_index": res["mean"]["mAP_k_index"],
                        "R1_index": res["mean"]["R1_index"], "p50_ms": res["mean"]["p50_ms"]})
    finally:
        ann.nprobe = own
    return out


def score_level(index: GalleryIndex, tests: list[dict], n_gallery: int, k: int, exact: bool = True,
                timed: int = 0) -> dict:
    """Exact (full mAP, mAP@k, R1) and the index's search (mAP@k, R1), per test set and their mean;
    the p50 latency of the index's search and (``timed`` queries per set) of its exact search."""
    x, n = index.vectors, len(index)
    out = {}
    for t in tests:
        cols = np.concatenate([np.arange(t["lo"], t["hi"]), np.arange(n_gallery, n)])
        pids = np.concatenate([t["g_pids"], np.full(n - n_gallery, "distractor", dtype=object)]).astype(str)
        cams = np.concatenate([t["g_cams"], np.full(n - n_gallery, "distractor", dtype=object)]).astype(str)
        acc = MetricAccumulator(max_rank=k, keep_rankings=True)
        for a in range(0, len(t["q"]) if exact else 0, 64):
            dist = cosine_distance(t["q"][a:a + 64], x, normalised=True)[:, cols]
            acc.add(dist, t["q_pids"][a:a + 64], pids, t["q_cams"][a:a + 64], cams)
        ranked = acc.result()
        where = Filter(fields={"set": [t["name"], "distractor"]})
        ap_exact, ap_index, r1_index, methods, lat, lat_exact = [], [], [], set(), [], []
        for i, q in enumerate(t["q"]):
            if exact and i < timed:
                t0 = time.perf_counter()
                index.search(q, k, where, exact=True)
                lat_exact.append(1000 * (time.perf_counter() - t0))
            positives = int(np.sum((t["g_pids"] == t["q_pids"][i]) & (t["g_cams"] != t["q_cams"][i])))
            if exact:
                top = cols[ranked.rankings[i][:k]]
                ap_exact.append(truncated_average_precision(_matches(top, t, n_gallery, i), positives))
            t0 = time.perf_counter()
            hits = index.search(q, k, where)
            lat.append(1000 * (time.perf_counter() - t0))
            methods.add(hits.method)
            m = _matches(hits.ids, t, n_gallery, i)
            ap_index.append(truncated_average_precision(m, positives))
            r1_index.append(bool(len(m) and m[0]))
        out[t["name"]] = {"mAP": 100 * ranked.mAP, "mAP_k_exact": 100 * float(np.mean(ap_exact or [np.nan])),
                          "mAP_k_index": 100 * float(np.mean(ap_index)),
                          "R1_exact": 100 * ranked.rank(1) if exact else float("nan"),
                          "R1_index": 100 * float(np.mean(r1_index)), "search": "/".join(sorted(methods)),
                          "p50_ms": float(np.percentile(lat, 50)),
                          "p50_ms_exact": float(np.percentile(lat_exact, 50)) if lat_exact else float("nan")}
    keys = ["mAP", "mAP_k_exact", "mAP_k_index", "R1_exact", "R1_index", "p50_ms", "p50_ms_exact"]
    out["mean"] = {key: float(np.mean([out[t["name"]][key] for t in tests])) for key in keys}
    out["mean"]["search"] = "/".join(sorted({out[t["name"]]["search"] for t in tests}))
    return out


def _matches(ids: np.ndarray, t: dict, n_gallery: int, i: int) -> np.ndarray:
    """True where a returned row (index row id) is a true match of query ``i`` of test set ``t``."""
    ids = np.asarray(ids, np.int64)
    inside = (ids >= t["lo"]) & (ids < t["hi"])
    out = np.zeros(len(ids), bool)
    j = ids[inside] - t["lo"]
    out[inside] = (t["g_pids"][j] == t["q_pids"][i]) & (t["g_cams"][j] != t["q_cams"][i])
    return out


def main(argv=None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--levels", type=int, nargs="+", default=[0, 10_000, 100_000, 300_000],
                    help="distractor counts (each row 12 KB at 3,072-d: 1,000,000 needs 12.3 GB)")
    ap.add_argument("--fit", type=int, default=4000, help="train images the distractor statistics are fitted on")
    ap.add_argument("--real", type=int, default=4000, help="real train crops for the real-vs-synthetic check (0: skip)")
    ap.add_argument("--rank", type=int, default=256, help="principal directions of the distractor Gaussian")
    ap.add_argument("--k", type=int, default=100, help="length of the ranked lists compared")
    ap.add_argument("--sweep", type=int, nargs="*", default=[],
                    help="also score the index's search at these nprobe values where it searches approximately")
    ap.add_argument("--floors", type=float, nargs="*", default=[],
                    help="also score the index's search at these scan floors where it searches approximately")
    ap.add_argument("--scan-floor", type=float, default=SCAN_FLOOR,
                    help=f"the scan floor the index is built with (default the library's, {SCAN_FLOOR})")
    ap.add_argument("--protocol", default="peta-reid", choices=["peta-reid", "peta-reid-val"],
                    help="whose query/gallery sets and train split (choose on peta-reid-val, report on peta-reid)")
    ap.add_argument("--model", default="default", help="the model embedding every image (default: the bundled one)")
    ap.add_argument("--exact-timed", type=int, default=50,
                    help="queries per set whose exact search is timed one at a time (p50)")
    ap.add_argument("--cache", type=Path, default=Path("runs/embedding_cache"),
                    help="embedding cache folder (one file per model; keep it outside the checkout to reuse it)")
    codes_options(ap)
    args = parse(ap, argv)
    apply_codes(ap, args)
    from xreid.data.protocol import load_protocol
    from xreid.workflows.embedding_cache import cached_embeddings
    from xreid.workflows.loading import ModelOptions

    report = Report(args.out)
    protocol = load_protocol(args.protocol, args.data_root)
    embedder = ModelOptions(model=args.model).load()
    rng = np.random.default_rng(0)
    train = [protocol.train[i] for i in rng.permutation(len(protocol.train))[:args.fit + args.real]]
    test_keys = [r.path for r in protocol.test_images()]
    report.progress(f"embedding {len(test_keys)} test and {len(train)} train images (cached in {args.cache})")
    feats, kept, _ = cached_embeddings(embedder, protocol.image_root, test_keys + [r.path for r in train], args.cache)
    row = {key: i for i, key in enumerate(kept)}
    fit = np.stack([feats[row[r.path]] for r in train[:args.fit] if r.path in row])
    real = np.stack([feats[row[r.path]] for r in train[args.fit:] if r.path in row]) if args.real else None
    fit_pids = np.array([r.pid for r in train[:args.fit] if r.path in row]).astype(str)
    model = fit_gaussian(fit, args.rank)
    views = fit_views(fit, fit_pids)
    dim = fit.shape[1]
    top = float((model["std"] ** 2).sum())
    explained = top / (top + model["rest_std"] ** 2 * (dim - len(model["std"])))
    tests, galleries, lo = [], [], 0
    for ts in protocol.test_sets:
        q = [r for r in ts.query if r.path in row]
        g = [r for r in ts.gallery if r.path in row]
        galleries.append(l2_normalise(np.stack([feats[row[r.path]] for r in g])).astype(np.float32))
        tests.append({"name": ts.name, "lo": lo, "hi": lo + len(g),
                      "q": l2_normalise(np.stack([feats[row[r.path]] for r in q])).astype(np.float32),
                      "q_pids": np.array([r.pid for r in q]).astype(str),
                      "q_cams": np.array([r.cam for r in q]).astype(str),
                      "g_pids": np.array([r.pid for r in g]).astype(str),
                      "g_cams": np.array([r.cam for r in g]).astype(str)})
        lo += len(g)
    n_gallery = lo
    model_file = "default" if args.model == "default" else relative(Path(args.model).expanduser().resolve())
    model_name = "bundled model" if args.model == "default" else f"model {model_file}"
    report.print(f"Distractor test on {args.protocol} ({', '.join(t['name'] for t in tests)}: "
                 f"{sum(len(t['q']) for t in tests)} queries, {n_gallery} gallery images), {model_name} ({dim}-d), "
                 f"k = {args.k}, index built with scan floor {args.scan_floor}, codes {codes_name(dim)}. Distractors fitted on {len(fit)} "
                 f"{args.protocol} train embeddings: 'views': new views of "
                 f"its {len(views['centres'])} identities with 2+ images (an identity's centre plus a residual of "
                 f"{len(views['residuals'])}); 'gaussian': a Gaussian (top {len(model['std'])} directions, "
                 f"{100 * explained:.0f} % of the variance, isotropic rest); "
                 f"'real': {0 if real is None else len(real)} other PETA-ReID train crops")
    levels = [("views", d) for d in args.levels]
    if real is not None:  # how hard are synthetic distractors against as many real people?
        levels = [("real", len(real)), ("views", len(real)), ("gaussian", len(real))] + levels
    figures, rows, sweeps = [], [], []
    for kind, d in levels:
        report.progress(f"{kind} {d:,} distractors")
        x = np.empty((n_gallery + d, dim), np.float32)
        x[:n_gallery] = np.concatenate(galleries)
        if kind == "real":
            x[n_gallery:] = l2_normalise(real).astype(np.float32)
        elif kind == "views":
            draw_views(views, x[n_gallery:], seed=d)
        else:
            draw(model, x[n_gallery:], seed=d)
        sets = np.concatenate([np.repeat([t["name"] for t in tests], [t["hi"] - t["lo"] for t in tests]),
                               np.full(d, "distractor")])
        index, built = memory_index(x, sets, scan_floor=args.scan_floor)
        report.progress(f"{kind} {d:,}: ANN built in {built:.0f} s, nprobe {index.ann.nprobe} of {index.ann.nlist} "
                        f"(tuned {index.ann.tuned_nprobe}); scoring")
        res = score_level(index, tests, n_gallery, args.k, timed=args.exact_timed)
        m = res["mean"]
        fig = {"kind": kind, "distractors": d, "codes": index.ann.spec, "ann_build_s": round(built, 1),
               "nprobe": index.ann.nprobe, "factor": index.ann.factor,
               "tuned_nprobe": index.ann.tuned_nprobe, "scan_floor": index.ann.scan_floor,
               "nlist": index.ann.nlist, "tuned_recall": index.ann.tuned_recall, **res}
        for name, values, floors in (("sweep", args.sweep, None), ("floors", args.floors, args.floors)):
            if values and res["mean"]["search"] == "ann":
                report.progress(f"{kind} {d:,}: {name} {values}")
                fig[name] = sweep_nprobe(index, tests, n_gallery, args.k, values, floors)
                sweeps += [[f"{d:,}", "" if s_["floor"] is None else f"{s_['floor']:g}", s_["nprobe"],
                            f"{index.ann.nlist}", f"{s_['mAP_k_index']:.2f}",
                            f"{m['mAP_k_exact'] - s_['mAP_k_index']:.2f}", f"{s_['R1_index']:.1f}",
                            f"{s_['p50_ms']:.1f}"] for s_ in fig[name]]
        figures.append(fig)
        rows.append([kind, f"{d:,}", f"{m['mAP']:.2f}", f"{m['mAP_k_exact']:.2f}", f"{m['mAP_k_index']:.2f}",
                     f"{m['mAP_k_exact'] - m['mAP_k_index']:.2f}", f"{m['R1_exact']:.1f}", f"{m['R1_index']:.1f}",
                     m["search"], f"{m['p50_ms_exact']:.1f}", f"{m['p50_ms']:.1f}",
                     f"{index.ann.nprobe}/{index.ann.nlist}"])
        report.progress(f"{kind} {d:,}: loss {m['mAP_k_exact'] - m['mAP_k_index']:.2f} points")
        del index, x
    report.print(f"\nmean over the three test sets; exact: every distance; index: GalleryIndex.search with the filter "
                 f"(ANN where it keeps over {EXACT_LIMIT:,} rows)")
    report.table(["distractors", "count", "exact mAP", f"exact mAP@{args.k}", f"index mAP@{args.k}",
                  "loss (points)", "exact R1", "index R1", "index search", "exact p50 ms", "index p50 ms",
                  "nprobe/nlist"], rows)
    if sweeps:
        report.print("\nthe index's search at other scan floors or nprobe values (lists scanned of nlist; the "
                     "index's own is in the table above)")
        report.table(["distractors", "scan floor", "nprobe", "nlist", f"index mAP@{args.k}", "loss (points)",
                      "index R1", "p50 ms"], sweeps)
    report.save({"protocol": args.protocol, "model": model_file,
                 "dim": dim, "scan_floor": args.scan_floor, "k": args.k, "fit": len(fit), "rank": len(model["std"]), "explained_variance": explained,
                 "view_identities": len(views["centres"]), "view_residuals": len(views["residuals"]),
                 "levels": figures})


if __name__ == "__main__":
    main()
