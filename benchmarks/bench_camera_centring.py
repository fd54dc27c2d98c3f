"""Camera centring (``xreid adapt ... --out SITE.xcam``, issue 30): the choices on PETA-ReID-val, then
the chosen rule on PETA-ReID test, for models that never saw PETA.

    python benchmarks/bench_camera_centring.py [--data-root DATA_ROOT] [--models 0288 0277 | LABEL=MODEL ...]
                                               [--cache DIR] [--out STEM]

The means come from a protocol's training crops of VIPeR, PRID and GRID (other people than its test
sets', the same cameras; ``adapt_list.py``), one per camera with at least 8 crops. Each row scores
the protocol's test sets with the gallery and queries centred as the row says (the library's
``camera_means`` / ``centre`` / ``nearest_mean``). Validation rows: how much of the mean is taken
away (0.5 or 1), whether the site's overall mean is added back, and where a crop without a camera
mean goes (the overall mean or the nearest camera mean), for queries whose camera is unknown and for
cameras with too few crops. Test rows, for the rule chosen on validation (the library's): as
``xreid eval --model SITE.xcam`` gives it, with every query's camera unknown, and with the means taken
from the searched images themselves. Embeddings are cached per model in ``--cache``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from adapt_list import unlabeled_rows
from common import Report, omz_model, parse, parser

from xreid.data.protocol import load_protocol
from xreid.distance import l2_normalise
from xreid.evaluation.metrics import evaluate_ranking
from xreid.models.camera_centring import camera_means, centre, nearest_mean
from xreid.models.loading import load_embedder
from xreid.training.camera_norm import MIN_CROPS

SUBSETS = {"VIPeR", "PRID", "GRID"}


def embeddings(model: str, label: str, protocol, cache: Path | None) -> tuple[np.ndarray, np.ndarray, list, list]:
    """(test image embeddings, training crop embeddings, test records, training (path, camera) rows)."""
    test = protocol.test_images()
    train = unlabeled_rows(protocol, SUBSETS)
    file = None if cache is None else cache / f"emb_{protocol.name}_{label}.npz"
    if file is not None and file.is_file():
        z = np.load(file)
        return z["test"], z["train"], test, train
    emb = load_embedder(model)
    t = emb.embed_paths([protocol.image_root / r.path for r in test], batch_size=32)
    c = emb.embed_paths([protocol.image_root / p for p, _ in train], batch_size=32)
    if len(t.kept) != len(test) or len(c.kept) != len(train):
        raise SystemExit(f"{label}: {len(t.skipped) + len(c.skipped)} images could not be read")
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, test=t.features, train=c.features)
    return t.features, c.features, test, train


def score(protocol, test, gallery_f: np.ndarray, query_f: np.ndarray) -> dict[str, float]:
    row = {r.path: i for i, r in enumerate(test)}
    out = {}
    for ts in protocol.test_sets:
        q = [row[r.path] for r in ts.query]
        g = [row[r.path] for r in ts.gallery]
        m = evaluate_ranking(query_f[q], gallery_f[g], [r.pid for r in ts.query], [r.pid for r in ts.gallery],
                             [r.cam for r in ts.query], [r.cam for r in ts.gallery]).summary()
        out[ts.name] = round(m["mAP"], 2)
        out[ts.name + " R1"] = round(m["R1"], 2)
    out["mean"] = round(float(np.mean([out[t.name] for t in protocol.test_sets])), 2)
    out["mean R1"] = round(float(np.mean([out[t.name + " R1"] for t in protocol.test_sets])), 2)
    return out


def centred(feats, cams, means: dict, overall: np.ndarray, weight: float = 1.0, add_overall: bool = False,
            no_mean: str = "nearest", unknown: bool = False) -> np.ndarray:
    """Each row minus ``weight`` x its camera's mean (plus the overall mean when ``add_overall``); rows of a
    camera without a mean (every row when ``unknown``) use the nearest camera mean or the overall mean."""
    names = sorted(means)
    matrix = np.stack([means[c] for c in names])
    near = nearest_mean(feats, matrix)
    subtract = []
    for i, cam in enumerate(cams):
        m = means[cam] if cam in means and not unknown else matrix[near[i]] if no_mean == "nearest" else overall
        subtract.append(weight * m - (overall if add_overall else 0.0))
    return centre(feats, np.stack(subtract))


def main(argv=None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--models", nargs="+", default=["0288", "0277"],
                    help="Open Model Zoo numbers (person-reidentification-retail-NNNN) or LABEL=MODEL")
    ap.add_argument("--cache", type=Path, default=None, help="folder for the embeddings, per model and protocol")
    args = parse(ap, argv)
    report = Report(args.out)
    figures: dict = {}
    models = {}
    for m in args.models:
        label, sep, path = m.partition("=")
        models[label] = path if sep else str(omz_model(f"person-reidentification-retail-{m}"))
    for name in ("peta-reid-val", "peta-reid"):
        protocol = load_protocol(name, args.data_root)
        report.print(f"\n## {name}")
        table = []
        for label, model in models.items():
            tf, cf, test, train = embeddings(model, label, protocol, args.cache)
            tcams = [str(r.cam or "") for r in test]
            means, left_out = camera_means(cf, [c for _, c in train], MIN_CROPS)
            overall = l2_normalise(cf.astype(np.float64)).mean(0)
            raw = l2_normalise(tf)
            rows = {"raw": (raw, raw)}
            chosen = centred(tf, tcams, means, overall)
            rows["centred (the library's rule)"] = (chosen, chosen)
            rows["centred, every query's camera unknown (nearest mean)"] = (
                chosen, centred(tf, tcams, means, overall, unknown=True))
            self_means, _ = camera_means(tf, tcams, MIN_CROPS)
            own = centred(tf, tcams, self_means, overall)
            rows["centred, means from the searched images themselves"] = (own, own)
            if name == "peta-reid-val":  # the choices
                half = centred(tf, tcams, means, overall, weight=0.5)
                rows["half the mean taken away"] = (half, half)
                back = centred(tf, tcams, means, overall, add_overall=True)
                rows["the site's overall mean added back"] = (back, back)
                ovr = centred(tf, tcams, means, overall, no_mean="overall")
                rows["no camera mean: the overall mean"] = (ovr, ovr)
                rows["no camera mean: the overall mean, every query's camera unknown"] = (
                    ovr, centred(tf, tcams, means, overall, no_mean="overall", unknown=True))
            for what, (g, q) in rows.items():
                s = score(protocol, test, g, q)
                figures.setdefault(name, {}).setdefault(label, {})[what] = s
                table.append([label, what] + [f"{s[t.name]:.1f}" for t in protocol.test_sets]
                             + [f"{s['mean']:.2f} / {s['mean R1']:.1f}"])
            figures[name][label]["cameras"] = {c: int(sum(1 for _, k in train if k == c)) for c in sorted(means)}
            figures[name][label]["cameras_left_out"] = left_out
        report.table(["model", "embedding", *[t.name for t in protocol.test_sets], "mean mAP / R1"], table)
    report.save(figures)


if __name__ == "__main__":
    main()
