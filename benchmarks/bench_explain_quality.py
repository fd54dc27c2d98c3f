"""Explanation quality and attribute filtering on the PETA-ReID test sets.

    python benchmarks/bench_explain_quality.py [--data-root DATA_ROOT] [--model default --head HEAD] [--out STEM]

Every figure is read from the library's own explanation of each query's ranking
(``xreid.workflows.explain.explain_vectors``: the search and ``explain_ranking`` as ``xreid explain``
runs them, over the whole gallery):

1. Explanation precision: for each query's top-10 results of *another* identity, is the attribute
   the explanation names one whose ground-truth label differs between the two identities? Scored:
   - named: the first named difference (``xreid.explain.naming.first_named``: calibrated P(differ)
     among reliable attributes holding part of the distance), over the pairs where one is named,
     with the share of pairs where one is;
   - P(differ), all: the same calibrated P(differ) over every attribute (no reliability or
     distance condition): the unrestricted figure beside the restricted one;
   - |dp| raw: the largest difference of the uncalibrated predicted probabilities;
   - published and exact: the attribute with the largest part of the distance, by the attribute
     error as published and by the exact decomposition (docs/METHODS.md#distance-decomposition);
   - baselines: a random attribute (expected value, computed exactly) and the attribute that
     differs most often between two training identities (frequency).
   And the reader check: 20 impostor results drawn at random (seed 0) from all test impostor pairs,
   each scored on its plain-words line (the first difference the report lists, if any).
2. Mean matching score (docs/METHODS.md#matching-scores) of the query's confident attributes over its
   true matches.
3. Explained share: the median share of each top-10 result's distance that the exact decomposition
   gives to the attributes (docs/METHODS.md#distance-decomposition).
4. Attribute filtering: re-rank each query's gallery with the query's true gender, hair length and
   upper/lower-body colours; how often the first true match moves up, and by how many ranks.
"""

from __future__ import annotations

import numpy as np
from common import Report, parse, parser, relative

from xreid.data.labels import label_matrix
from xreid.data.protocol import load_protocol
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.formulas import orthonormal_attribute_basis
from xreid.explain.naming import difference_probability, first_named
from xreid.workflows.explain import explain_vectors
from xreid.models.loading import BUNDLED_HEAD, load_embedder

COLOURS = ("Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple", "Red", "White", "Yellow")


def filter_from_truth(labels_row: np.ndarray, names: list[str]) -> dict[str, bool]:
    """What an analyst would type: gender, hair length, and the colours of the top and trousers."""
    wanted = {n: bool(labels_row[names.index(n)]) for n in ("personalMale", "hairLong") if n in names}
    for n in names:
        if n.startswith(("upperBody", "lowerBody")) and n.split("Body")[1] in COLOURS and labels_row[names.index(n)]:
            wanted[n] = True
    return wanted


def frequency_attribute(proto, names: list[str]) -> int:
    """The attribute whose label differs most often between two random training identities."""
    train_labels, labelled = label_matrix(proto.train, names)
    by_pid = {}
    for r, row, ok in zip(proto.train, train_labels, labelled):
        if ok:
            by_pid.setdefault(r.pid, row)
    pid_rows = np.array(list(by_pid.values()))
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(pid_rows), 20000), rng.integers(0, len(pid_rows), 20000)
    return int(np.argmax((pid_rows[a] != pid_rows[b]).mean(0)))


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", default="default", help="'default', a .pt, .onnx or OpenVINO .xml model")
    ap.add_argument("--backend", default="torch",
                    help="backend for xreid models (torch: the figures recorded before the ONNX fast path)")
    ap.add_argument("--head", default=str(BUNDLED_HEAD))
    ap.add_argument("--top-k", type=int, default=10)
    args = parse(ap)
    report = Report(args.out)

    proto = load_protocol("peta-reid", args.data_root)
    head = AttributeHead.load(args.head)
    names = head.names
    xreid_model = args.model == "default" or args.model.endswith((".pt", ".pth"))
    emb = load_embedder(args.model, backend=args.backend if xreid_model else "auto")
    basis = orthonormal_attribute_basis(head.weights)
    freq = frequency_attribute(proto, names)

    kinds = ("named", "named_coverage", "pdiff_all", "raw_dp", "eq32", "exact", "random", "frequency")
    results, stats = {}, {k: [] for k in kinds}
    lines = []  # (is the line's first listed difference real, or None when the line lists none)
    shares: dict[str, list[float]] = {}  # explained share of each top-k result's distance, per test set
    for ts in proto.test_sets:
        q_recs, g_recs = ts.query, ts.gallery
        res = emb.embed_paths([proto.image_root / r.path for r in q_recs + g_recs])
        assert len(res.kept) == len(q_recs + g_recs), "unreadable test image"
        qf, gf = res.features[:len(q_recs)], res.features[len(q_recs):]
        q_lab, _ = label_matrix(q_recs, names)
        g_lab, _ = label_matrix(g_recs, names)
        g_keys, g_pids = [r.path for r in g_recs], [r.pid for r in g_recs]
        row_of = {key: j for j, key in enumerate(g_keys)}
        g_probs = head.calibrated(gf)  # what an attribute filter reads
        per = {k: [] for k in stats}
        true_scores, lifted, dropped, same, gains = [], 0, 0, 0, []
        for i, q in enumerate(q_recs):
            # the whole gallery explained, re-ranked by the analyst's filter; the unfiltered top-k
            # are the results whose original rank is within k
            ex = explain_vectors(qf[i], gf, g_keys, head, top_k=len(g_keys), gallery_pids=g_pids, query_pid=q.pid,
                                 filter_spec=filter_from_truth(q_lab[i], names), basis=basis,
                                 gallery_probabilities=g_probs, include_vectors=False)
            top = sorted((r for r in ex.results if r.original_rank <= args.top_k), key=lambda r: r.original_rank)
            impostors = [r for r in top if not r.is_match]
            shares.setdefault(ts.name, []).extend(r.explained_share for r in top)
            if impostors:
                differs = q_lab[i][None, :] != g_lab[[row_of[r.key] for r in impostors]]
                rows = np.arange(len(impostors))
                named = first_named(np.array(ex.query_calibrated), np.array([r.calibrated for r in impostors]),
                                    np.array([r.exact_parts for r in impostors]), np.array(ex.attribute_reliable))
                per["named"] += list(differs[rows[named >= 0], named[named >= 0]])
                per["named_coverage"] += list(named >= 0)
                p_q, p_g = np.array(ex.query_calibrated), np.array([r.calibrated for r in impostors])
                p_all = difference_probability(p_q[None], p_g)
                per["pdiff_all"] += list(differs[rows, np.argmax(p_all, axis=1)])
                raw = np.abs(np.array(ex.query_probabilities)[None] - np.array([r.probabilities for r in impostors]))
                per["raw_dp"] += list(differs[rows, np.argmax(raw, axis=1)])
                for row, r in enumerate(impostors):
                    listed = r.summary.differences
                    lines.append(bool(differs[row, names.index(listed[0].name)]) if listed else None)
                per["eq32"] += list(differs[rows, [int(np.argmax(r.attribute_error_eq32)) for r in impostors]])
                per["exact"] += list(differs[rows, [int(np.argmax(r.exact_parts)) for r in impostors]])
                per["random"] += list(differs.mean(1))
                per["frequency"] += list(differs[:, freq])
            matches = [r for r in ex.results if r.is_match]
            if ex.confident and matches:
                in_gallery_order = sorted(matches, key=lambda r: row_of[r.key])
                true_scores += [np.mean(list(r.matching_scores.values())) for r in in_gallery_order]
            if not matches:
                continue
            before = min(r.original_rank for r in matches)
            after = min(r.rank for r in matches)
            if after < before:
                lifted += 1
                gains.append(before - after)
            elif after > before:
                dropped += 1
            else:
                same += 1
        n = lifted + dropped + same
        results[ts.name] = {
            "precision_named": 100 * np.mean(per["named"]), "named_pairs_pct": 100 * np.mean(per["named_coverage"]),
            "precision_pdiff_all": 100 * np.mean(per["pdiff_all"]), "precision_raw_dp": 100 * np.mean(per["raw_dp"]),
            "precision_eq32": 100 * np.mean(per["eq32"]), "precision_exact": 100 * np.mean(per["exact"]),
            "precision_random": 100 * np.mean(per["random"]), "precision_frequency": 100 * np.mean(per["frequency"]),
            "impostor_pairs": len(per["exact"]),
            "true_match_mean_matching_score": 100 * float(np.mean(true_scores)) if true_scores else None,
            "filter_lifted_pct": 100 * lifted / n, "filter_dropped_pct": 100 * dropped / n,
            "filter_unchanged_pct": 100 * same / n,
            "filter_mean_ranks_gained_when_lifted": float(np.mean(gains)) if gains else 0.0,
            "filter_median_ranks_gained_when_lifted": float(np.median(gains)) if gains else 0.0,
        }
        for k in stats:
            stats[k] += per[k]
    results["all"] = {f"precision_{k}": 100 * float(np.mean(v)) for k, v in stats.items() if k != "named_coverage"}
    results["all"]["named_pairs_pct"] = 100 * float(np.mean(stats["named_coverage"]))
    results["frequency_attribute"] = names[freq]
    every = [x for v in shares.values() for x in v]
    results["explained_share_median_pct"] = {**{k: 100 * float(np.median(v)) for k, v in shares.items()},
                                             "all": 100 * float(np.median(every))}
    sample = np.random.default_rng(0).choice(len(lines), size=min(20, len(lines)), replace=False)
    drawn = [lines[i] for i in sample]
    stated = [x for x in drawn if x is not None]
    results["reader_check"] = {"results": len(drawn), "lines_naming_a_difference": len(stated),
                               "named_difference_real": int(sum(stated)),
                               "all_impostor_lines_naming_a_difference_pct": 100 * float(np.mean([x is not None for x in lines])),
                               "all_impostor_lines_real_pct": 100 * float(np.mean([x for x in lines if x is not None]))}

    report.print(f"model {relative(args.model)}, head {relative(args.head)}, {len(names)} attributes; "
                 f"frequency baseline = {names[freq]}")
    rows = []
    for name, r in results.items():
        if name in ("all", "frequency_attribute", "reader_check", "explained_share_median_pct"):
            continue
        rows.append([name, f"{r['precision_named']:.1f}", f"{r['precision_pdiff_all']:.1f}", f"{r['precision_raw_dp']:.1f}",
                     f"{r['precision_eq32']:.1f}",
                     f"{r['precision_exact']:.1f}", f"{r['precision_random']:.1f}", f"{r['precision_frequency']:.1f}",
                     r["impostor_pairs"], f"{r['true_match_mean_matching_score']:.1f}",
                     f"{r['filter_lifted_pct']:.1f} % / {r['filter_dropped_pct']:.1f} %",
                     f"{r['filter_mean_ranks_gained_when_lifted']:.1f} / {r['filter_median_ranks_gained_when_lifted']:.0f}"])
    a = results["all"]
    rows.append(["all", f"{a['precision_named']:.1f}", f"{a['precision_pdiff_all']:.1f}", f"{a['precision_raw_dp']:.1f}",
                 f"{a['precision_eq32']:.1f}",
                 f"{a['precision_exact']:.1f}", f"{a['precision_random']:.1f}", f"{a['precision_frequency']:.1f}",
                 "", "", "", ""])
    report.table(["test set", "named", "P(differ), all", "|dp| raw", "published", "exact", "random", "frequency",
                  "impostor pairs", "true-match score",
                  "filter: lifted / dropped", "ranks gained (mean / median)"], rows)
    report.print(f"named: the first named difference, given for {a['named_pairs_pct']:.1f} % of the impostor pairs; "
                 f"P(differ), all: calibrated, every attribute; |dp| raw: largest uncalibrated probability difference; "
                 f"published, exact: the attribute with the largest part of the distance")
    es = results["explained_share_median_pct"]
    report.print(f"explained share of the distance (exact decomposition), median over every test query's top-{args.top_k}: "
                 f"{es['all']:.1f} % (" + ", ".join(f"{k} {v:.1f} %" for k, v in es.items() if k != "all") + ")")
    rc = results["reader_check"]
    report.print(f"reader check, 20 impostor results drawn at random: {rc['lines_naming_a_difference']} lines name a "
                 f"difference, {rc['named_difference_real']} of them real; over all impostor results "
                 f"{rc['all_impostor_lines_naming_a_difference_pct']:.1f} % of lines name one, "
                 f"{rc['all_impostor_lines_real_pct']:.1f} % of those real")
    report.save(results)


if __name__ == "__main__":
    main()
