"""The same-person probability of search results: how well calibrated it is
(docs/METHODS.md#same-person-probability).

    python benchmarks/bench_match_calibration.py [--data-root DATA_ROOT] [--out benchmarks/results/match_calibration]

For the bundled model and Open Model Zoo 0277: every variant is fitted on simulated searches of the
PETA-ReID-val train split (``xreid.explain.match_probability``: galleries of 300 identities, 20
episodes, seed 0) and scored on the top-10 pairs of the PETA-ReID-val query sets, where the variant
is chosen; the chosen one (distance, first and 10th distance: the library's ``fit_match_calibration``,
what ``xreid index calibrate`` stores) is then measured on the top-10 pairs of the PETA-ReID test sets:
expected calibration error (15 equal-width bins) per set and pooled, the reliability diagram, mean
rank-1 probability against rank-1 accuracy, and the open-set threshold 0.5 (true matches flagged
"probably not the person", impostors not flagged). Test figures of the other variants and of the
naive all-pairs calibration are printed for the record, never to choose. Embeddings are cached in
``runs/match_calibration/``, one file per model and fingerprint (resumable; a new bundled model embeds anew).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import M0277, REPO, Report, parse, parser, relative
from xreid.data.protocol import load_protocol
from xreid.distance import cosine_distance, l2_normalise
from xreid.explain.calibration import apply_platt, fit_platt, sigmoid
from xreid.explain.match_probability import (
    CONTEXT,
    MatchCalibration,
    calibration_episodes,
    episode_pairs,
    expected_calibration_error,
    fit_logistic,
    fit_match_calibration,
    match_features,
    reliability_diagram,
    search_pairs,
)
from xreid.models.loading import load_embedder
from xreid.workflows.match_calibration import BUNDLED_MATCH_CALIBRATION, embed_keys

GALLERY, EPISODES, SEED = 300, 20, 0
CHOSEN = "distance, first, 10th (logistic)"


# --- variants (compared on PETA-ReID-val) ------------------------------------------------------------

def _log_rank(d: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.log(np.arange(1, d.shape[-1] + 1)), d.shape)


def variant_features(name: str, d11: np.ndarray) -> np.ndarray:
    """(n, 10, F) features of a variant from the top-11 distances (n x 11) of n searches."""
    d = d11[:, :CONTEXT]
    base = match_features(d)
    if name == "+ log rank":
        return np.concatenate([base, _log_rank(d)[..., None]], -1)
    if name == "+ gap to the next result":
        return np.concatenate([base, (d11[:, 1:CONTEXT + 1] - d)[..., None]], -1)
    return base


def pav_decreasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of y on x, non-increasing (pool adjacent violators): block starts and values."""
    order = np.argsort(x, kind="stable")
    starts, values, weights = [], [], []
    for xi, yi in zip(x[order], y[order].astype(float)):
        starts.append(xi), values.append(yi), weights.append(1.0)
        while len(values) > 1 and values[-2] <= values[-1]:
            w = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            weights[-2] = w
            del starts[-1], values[-1], weights[-1]
    return np.array(starts), np.array(values)


def fit_variant(name: str, d11: np.ndarray, same: np.ndarray):
    """A function (n x 11 distances) -> (n x 10 probabilities) fitted on the training pairs."""
    d = d11[:, :CONTEXT]
    if name == "distance (Platt)":
        ab = fit_platt(d.reshape(-1, 1), same.reshape(-1, 1), l2=0.0)
        return lambda e: apply_platt(e[:, :CONTEXT].reshape(-1, 1), ab).reshape(len(e), -1)
    if name == "distance (isotonic)":
        starts, values = pav_decreasing(d.ravel(), same.ravel())
        return lambda e: values[np.clip(np.searchsorted(starts, e[:, :CONTEXT], side="right") - 1, 0, None)]
    x = variant_features(name, d11)
    w = fit_logistic(x.reshape(-1, x.shape[-1]), same.ravel())
    return lambda e: sigmoid(variant_features(name, e) @ w[:-1] + w[-1])


VARIANTS = ["distance (Platt)", "distance (isotonic)", CHOSEN, "+ log rank", "+ gap to the next result"]


# --- measuring ---------------------------------------------------------------------------------------

def test_set_pairs(feats: dict[str, np.ndarray], proto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Top-11 (distances, same person) of every query of each of the protocol's query sets."""
    out = {}
    for ts in proto.test_sets:
        out[ts.name] = search_pairs(np.stack([feats[r.path] for r in ts.query]),
                                    np.stack([feats[r.path] for r in ts.gallery]),
                                    [r.pid for r in ts.query], [r.pid for r in ts.gallery], CONTEXT + 1)
    return out


def ece_intervals(ps: list[np.ndarray], ys: list[np.ndarray], n: int = 200, seed: int = 0
                  ) -> tuple[list[float], list[float]]:
    """5th and 95th percentiles of the pooled ECE and of the worst set's ECE, the queries of each set
    (rows) resampled with replacement."""
    rng = np.random.default_rng(seed)
    pooled, worst = [], []
    for _ in range(n):
        idx = [rng.integers(len(p), size=len(p)) for p in ps]
        bp, by = [p[i] for p, i in zip(ps, idx)], [y[i] for y, i in zip(ys, idx)]
        pooled.append(expected_calibration_error(np.concatenate(bp), np.concatenate(by)))
        worst.append(max(expected_calibration_error(p, y) for p, y in zip(bp, by)))
    return ([round(float(np.percentile(v, q)), 4) for q in (5, 95)] for v in (pooled, worst))


def scores(predict, sets: dict[str, tuple[np.ndarray, np.ndarray]], interval: bool = False) -> dict:
    """ECE per set, of the worst set and pooled over the top-10 pairs (and bootstrap intervals)."""
    ps = {k: predict(d) for k, (d, _) in sets.items()}
    ys = {k: s[:, :CONTEXT] for k, (_, s) in sets.items()}
    out = {k: round(expected_calibration_error(ps[k], ys[k]), 4) for k in sets}
    out["worst"] = max(out[k] for k in sets)
    p, y = np.concatenate(list(ps.values())), np.concatenate(list(ys.values()))
    out["pooled"] = round(expected_calibration_error(p, y), 4)
    if interval:
        out["pooled_90"], out["worst_90"] = ece_intervals(list(ps.values()), list(ys.values()))
    return out


def all_pairs_figures(feats: dict[str, np.ndarray], test, train_idx, keys) -> dict:
    """The naive calibration: Platt on the distance over every query-gallery pair of the training
    episodes, scored on every pair of the test galleries, and on the top-10 pairs."""
    x = np.stack([feats[k] for k in keys])
    pids = np.array([r.pid for r in train_idx], dtype=object)
    d_all, y_all = [], []
    for q, g in calibration_episodes(pids, [r.cam for r in train_idx], GALLERY, EPISODES, SEED):
        d_all.append(cosine_distance(x[q], x[g]).ravel())
        y_all.append((pids[q][:, None] == pids[g][None, :]).ravel())
    d_all, y_all = np.concatenate(d_all), np.concatenate(y_all)
    ab = fit_platt(d_all[:, None], y_all[:, None], l2=0.0)
    p_t, y_t, p_top, y_top = [], [], [], []
    for ts in test.test_sets:
        qf, gf = (l2_normalise(np.stack([feats[r.path] for r in rs])) for rs in (ts.query, ts.gallery))
        d = cosine_distance(qf, gf, normalised=True)
        same = np.array([r.pid for r in ts.query])[:, None] == np.array([r.pid for r in ts.gallery])[None, :]
        p = apply_platt(d.reshape(-1, 1), ab).reshape(d.shape)
        p_t.append(p.ravel()), y_t.append(same.ravel())
        top = np.argsort(d, 1, kind="stable")[:, :CONTEXT]
        p_top.append(np.take_along_axis(p, top, 1).ravel()), y_top.append(np.take_along_axis(same, top, 1).ravel())
    p_t, y_t, p_top, y_top = map(np.concatenate, (p_t, y_t, p_top, y_top))
    return {"pairs": int(len(y_t)), "match_share": round(float(y_t.mean()), 5),
            "ece_all_pairs": round(expected_calibration_error(p_t, y_t), 4),
            "mean_p_true_matches": round(float(p_t[y_t].mean()), 4),
            "max_p": round(float(p_t.max()), 4),
            "ece_top10": round(expected_calibration_error(p_top, y_top), 4)}


def run_model(name: str, spec: str, data_root: Path, cache: Path, report: Report) -> dict:
    val, test = load_protocol("peta-reid-val", data_root), load_protocol("peta-reid", data_root)
    train = [r for r in val.train if r.pid is not None]
    keys = list(dict.fromkeys([r.path for r in train] + [r.path for p in (val, test) for r in p.test_images()]))
    embedder = load_embedder(spec)
    report.progress(f"{name}: embedding {len(keys)} crops (cached in {relative(cache)})")
    x, kept = embed_keys(embedder, val.image_root, keys, cache / f"{name}-{embedder.fingerprint[:12]}.npz")
    feats = dict(zip(kept, x))
    missing = [k for k in keys if k not in feats]
    if missing:
        raise SystemExit(f"{len(missing)} crops could not be read, e.g. {missing[0]}")

    # the calibration `xreid index calibrate` makes
    cal = fit_match_calibration(np.stack([feats[r.path] for r in train]), [r.pid for r in train],
                                [r.cam for r in train], embedder.identity(), GALLERY, EPISODES, SEED)
    # variants, fitted on the same episodes (top-11 kept for the gap to the next result)
    eps = calibration_episodes([r.pid for r in train], [r.cam for r in train], GALLERY, EPISODES, SEED)
    pairs = episode_pairs(np.stack([feats[r.path] for r in train]), [r.pid for r in train], eps, CONTEXT + 1)
    d11, s11 = np.concatenate([d for d, _ in pairs]), np.concatenate([s for _, s in pairs])[:, :CONTEXT]
    val_sets, test_sets = test_set_pairs(feats, val), test_set_pairs(feats, test)
    fits = {v: fit_variant(v, d11, s11) for v in VARIANTS}
    assert np.allclose(fits[CHOSEN](d11[:50]), cal.probability(d11[:50, :CONTEXT]), atol=1e-6)

    report.print(f"\n## {name}\n\nFitted on {cal.meta['searches']} simulated searches of the PETA-ReID-val train "
                 f"split ({cal.meta['pairs']} top-10 pairs, {cal.meta['true_matches']} true matches, rank-1 "
                 f"{100 * cal.meta['rank1']:.1f} %); weights " +
                 ", ".join(f"{k} {v:.3f}" for k, v in cal.to_dict()["weights"].items()) + ".\n")
    choice = {v: scores(fits[v], val_sets, interval=True) for v in VARIANTS}
    report.print("Variants on PETA-ReID-val (where the variant is chosen): ECE over top-10 pairs, 15 bins; the "
                 "worst set's and the pooled one with 90 % bootstrap intervals over queries")
    names = [ts.name for ts in val.test_sets]
    report.table(["variant", *names, "worst set", "90 % interval", "pooled", "90 % interval"],
                 [[v, *(f"{choice[v][n]:.3f}" for n in names), f"{choice[v]['worst']:.3f}",
                   "{:.3f}-{:.3f}".format(*choice[v]["worst_90"]), f"{choice[v]['pooled']:.3f}",
                   "{:.3f}-{:.3f}".format(*choice[v]["pooled_90"])] for v in VARIANTS])
    sizes = {}
    for size in (100, 300, 600):
        c = fit_match_calibration(np.stack([feats[r.path] for r in train]), [r.pid for r in train],
                                  [r.cam for r in train], {}, size, EPISODES, SEED)
        sizes[size] = scores(lambda d: c.probability(d[:, :CONTEXT]), val_sets, interval=True)
    report.print("\nGallery size of the simulated searches, chosen variant, PETA-ReID-val ECE worst set / pooled: " +
                 ", ".join(f"{s}: {v['worst']:.3f} ({v['worst_90'][0]:.3f}-{v['worst_90'][1]:.3f}) / {v['pooled']:.3f} "
                           f"({v['pooled_90'][0]:.3f}-{v['pooled_90'][1]:.3f})" for s, v in sizes.items()))

    # the test sets: the chosen calibration only decides; everything else is for the record
    predict = lambda d: cal.probability(d[:, :CONTEXT])  # noqa: E731
    tnames = [ts.name for ts in test.test_sets]
    result = scores(predict, test_sets)
    p = np.concatenate([predict(d) for d, _ in test_sets.values()])
    y = np.concatenate([s[:, :CONTEXT] for _, s in test_sets.values()])
    diagram = reliability_diagram(p, y)
    rank1 = {n: {"mean_p": round(float(predict(d)[:, 0].mean()), 4), "rank1": round(float(s[:, 0].mean()), 4)}
             for n, (d, s) in test_sets.items()}
    flagged = p < cal.threshold
    open_set = {"threshold": cal.threshold, "true_matches": int(y.sum()), "impostors": int((~y).sum()),
                "true_matches_flagged": round(float(flagged[y].mean()), 4),
                "impostors_not_flagged": round(float((~flagged[~y]).mean()), 4),
                "rank1_true_matches_flagged": round(float(flagged[:, 0][y[:, 0]].mean()), 4),
                "rank1_impostors_not_flagged": round(float((~flagged[:, 0][~y[:, 0]]).mean()), 4)}
    report.print("\nPETA-ReID test, top-10 pairs of every query: ECE (15 equal-width bins)")
    report.table(["", *tnames, "pooled"], [["ECE", *(f"{result[n]:.3f}" for n in tnames), f"{result['pooled']:.3f}"],
                                           ["mean rank-1 probability", *(f"{rank1[n]['mean_p']:.3f}" for n in tnames), ""],
                                           ["rank-1 accuracy", *(f"{rank1[n]['rank1']:.3f}" for n in tnames), ""]])
    report.print("\nReliability diagram, PETA-ReID test pooled (bins holding any pair)")
    report.table(["bin", "pairs", "mean probability", "share true matches"],
                 [[f"{r['low']:.3f}-{r['high']:.3f}", r["count"], f"{r['mean_probability']:.3f}",
                   f"{r['match_rate']:.3f}"] for r in diagram])
    report.print(f"\nOpen-set threshold {cal.threshold}: of {open_set['true_matches']} true matches in the top 10, "
                 f"{100 * open_set['true_matches_flagged']:.1f} % are flagged 'probably not the person'; of "
                 f"{open_set['impostors']} impostors, {100 * open_set['impostors_not_flagged']:.1f} % are not flagged "
                 f"(rank 1 only: {100 * open_set['rank1_true_matches_flagged']:.1f} % / "
                 f"{100 * open_set['rank1_impostors_not_flagged']:.1f} %)")
    others = {v: scores(fits[v], test_sets) for v in VARIANTS}
    report.print("\nFor the record (not used to choose): the other variants on PETA-ReID test")
    report.table(["variant", *tnames, "pooled"],
                 [[v, *(f"{others[v][n]:.3f}" for n in tnames), f"{others[v]['pooled']:.3f}"] for v in VARIANTS])
    naive = all_pairs_figures(feats, test, train, [r.path for r in train])
    report.print(f"\nThe naive P(same | distance) over all pairs (Platt, fitted on every pair of the same episodes): "
                 f"on all {naive['pairs']} test pairs ({100 * naive['match_share']:.2f} % true matches) its ECE is "
                 f"{naive['ece_all_pairs']:.4f}, yet it gives true matches {naive['mean_p_true_matches']:.3f} on "
                 f"average (highest probability anywhere {naive['max_p']:.3f}); on the top-10 pairs its ECE is "
                 f"{naive['ece_top10']:.3f}")
    figures = {"fit": cal.meta, "weights": cal.to_dict()["weights"], "val_variants": choice,
               "val_gallery_size": {str(k): v for k, v in sizes.items()}, "test": result, "test_rank1": rank1,
               "reliability_diagram": diagram, "open_set": open_set, "test_variants_record_only": others,
               "all_pairs": naive}
    if name == "default":
        shipped = MatchCalibration.load(BUNDLED_MATCH_CALIBRATION)
        same = bool(np.allclose(shipped.weights, cal.weights, rtol=1e-4, atol=1e-4))
        figures["shipped_equals_this_fit"] = same
        report.print(f"\nShipped calibration ({relative(BUNDLED_MATCH_CALIBRATION)}) "
                     f"{'equals' if same else 'DIFFERS FROM'} this fit.")
    return figures


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "match_calibration",
                    help="embedding cache folder (default runs/match_calibration)")
    ap.add_argument("--models", default="default,0277", help="which models: default, 0277 or both (default)")
    args = parse(ap)
    report = Report(args.out)
    report.print("# Same-person probability of search results\n\nECE: expected calibration error, 15 equal-width "
                 "probability bins, over the top-10 results of every query.")
    specs = {"default": "default", "0277": str(M0277)}
    figures = {name: run_model(name, specs[name], args.data_root, args.cache, report)
               for name in args.models.split(",")}
    report.save({"gallery_size": GALLERY, "episodes": EPISODES, "seed": SEED, "context": CONTEXT, "ece_bins": 15,
                 "models": figures})


if __name__ == "__main__":
    main()
