"""Attribute fusion (ACRN's comparison table) on PETA-ReID, for OMZ 0277 and the bundled model.

    python benchmarks/bench_fusion.py [--data-root DATA_ROOT] [--cache runs/fusion_cache] [--out STEM]
        [--weights-png docs/fusion_weights_0277.png]

The attribute classifier is xreid's: the bundled head on the bundled model's embedding (fitted on
PETA-ReID-val's train list and 70 % of the CUHK / MIT attribute-only crops, calibrated on the rest;
docs/METHODS.md#attribute-calibration). Rows, per re-id model, on the three PETA-ReID test sets:

- CNN alone: the model's 1 - cos;
- attributes alone, unweighted: sum of squared differences of calibrated probabilities;
- attributes alone, learned weights: the weights of ``fit_fusion(objective="attributes")``
  (ACRN's weight-layer loss on attributes alone);
- attributes + KISSME: a KISSME metric on the probabilities, fitted on same-person pairs and
  hard other-person pairs of PETA-ReID-val's train list;
- CNN + attributes, score fusion 0.5: 1 - cos + 0.5 x the mean squared probability difference;
- fused: ``xreid fuse fit`` (complementary weights, margin / L2 / mixing chosen on PETA-ReID-val);
- (0277 only, its own row, not a fusion gain) 0277 + 0286 + 0287 concatenated, each L2-normalised.

Every weight and mixing is chosen on PETA-ReID-val; the test sets are only measured. Embeddings
are cached per model in --cache (``xreid.workflows.embedding_cache``); fit times are for cached
embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from common import M0277, Report, omz_model, parse, parser, relative

from xreid.data.protocol import load_protocol
from xreid.distance import cosine_distance
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.fusion import Fusion, attribute_distance
from xreid.models.loading import BUNDLED_HEAD, load_embedder
from xreid.training.fusion import hard_triplets, kissme, metric_distance
from xreid.workflows.embedding_cache import cached_embeddings
from xreid.workflows.fuse import Lookup, fit_fusion, fusion_split, score_sets

SETS = ("VIPeR", "PRID", "GRID")
#: 0277, 0286 and 0287 as one model (``--model a.xml,b.xml,c.xml``: each embedding L2-normalised, concatenated).
CONCAT = ",".join(str(omz_model(f"person-reidentification-retail-{m}")) for m in ("0277", "0286", "0287"))


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path, default=Path("runs/fusion_cache"), help="embedding cache folder")
    ap.add_argument("--weights-png", type=Path, default=Path("docs/fusion_weights_0277.png"),
                    help="bar chart of 0277's learned attribute weights")
    args = parse(ap)
    report = Report(args.out)
    root = args.data_root
    test = load_protocol("peta-reid", root)
    split = fusion_split(root, "peta-reid")
    head = AttributeHead.load(BUNDLED_HEAD)
    attr_model = load_embedder("default")
    images = test.test_images()
    keys = [r.path for r in images]

    def lookup(embedder, recs):
        feats, kept, _ = cached_embeddings(embedder, test.image_root, [r.path for r in recs], args.cache, False)
        return Lookup(kept, feats)

    probs = Lookup(keys, head.calibrated(lookup(attr_model, images)(images)))
    train_probs = head.calibrated(lookup(attr_model, split.train)(split.train))
    n_attr = len(head.names)
    figures: dict = {"attribute_classifier": {"model": "default (bundled)", "head": "bundled default_head.npz",
                                              "fit_images": head.meta.get("source")}, "models": {}}
    models = {"OMZ 0277": M0277, "xreid default": "default"}
    for label, spec in models.items():
        report.progress(f"{label}: fitting")
        emb = load_embedder(spec)
        model = lookup(emb, images)
        fused, meta = fit_fusion(emb, attr_model, head, root, args.cache, attribute_spec="default", progress=False)
        alone, _ = fit_fusion(emb, attr_model, head, root, args.cache, attribute_spec="default",
                              objective="attributes", progress=False)
        train_model = lookup(emb, split.train)(split.train)
        a, p, n = hard_triplets([r.pid for r in split.train], train_model, negatives=5, positives=2)
        metric = kissme(train_probs[a] - train_probs[p], train_probs[a] - train_probs[n])

        def d_cnn(q, g):
            return cosine_distance(model(q), model(g))

        unweighted = np.full(n_attr, 1.0 / n_attr)
        rows = {
            "CNN alone": d_cnn,
            "attributes alone, unweighted": lambda q, g: attribute_distance(probs(q), probs(g), unweighted),
            "attributes alone, learned weights": lambda q, g: attribute_distance(probs(q), probs(g), alone.weights),
            "attributes + KISSME": lambda q, g: metric_distance(probs(q), probs(g), metric),
            "CNN + attributes, score fusion 0.5": lambda q, g: d_cnn(q, g) + 0.5 * attribute_distance(
                probs(q), probs(g), unweighted),
            f"fused (learned weights, mixing {fused.mixing:g})": lambda q, g: fused.distances(d_cnn(q, g), probs(q),
                                                                                               probs(g)),
        }
        if spec == M0277:
            concat = lookup(load_embedder(CONCAT), images)
            rows["0277 + 0286 + 0287 concatenated (its own row)"] = lambda q, g: cosine_distance(concat(q), concat(g))
        table, out = [], {}
        for name, dist in rows.items():
            per_set, mean = score_sets(test.test_sets, dist)
            out[name] = {"mean": {k: mean[k] for k in ("mAP", "R1")},
                         "per_set": {s: {k: v[k] for k in ("mAP", "R1")} for s, v in per_set.items()}}
            table.append([name, f"{mean['mAP']:.1f} / {mean['R1']:.1f}"]
                         + [f"{per_set[s]['mAP']:.1f} / {per_set[s]['R1']:.1f}" for s in SETS if s in per_set])
        report.print(f"\n## {label} ({relative(spec) if spec != 'default' else 'bundled'}) on PETA-ReID test\n")
        report.table(["method", "mean mAP / R1", *(f"{s} mAP / R1" for s in SETS)], table)
        gain = out[next(k for k in out if k.startswith("fused"))]["mean"]["mAP"] - out["CNN alone"]["mean"]["mAP"]
        c = meta["chosen"]
        report.print(f"\nfused - CNN alone: {gain:+.2f} mean mAP. Chosen on {meta['protocol']} validation sets: "
                     f"margin {c['margin']}, L2 {c['decay']}, mixing {c['mixing']} (validation mean mAP "
                     f"{c['val_mAP']:.2f}; mixing 0, the CNN alone: "
                     f"{next(x['val_mAP'] for x in meta['candidates'] if x['mixing'] == 0):.2f}). "
                     f"Fit time with cached embeddings: {meta['seconds']['fit']:.0f} s "
                     f"({meta['triplets']} triplets, {meta['train_images']} training images).")
        order = np.argsort(-fused.weights)
        top = [(fused.names[i], float(fused.weights[i])) for i in order if fused.weights[i] > 0]
        report.print("learned weights (largest first): " + ", ".join(f"{n} {w:.3f}" for n, w in top[:15])
                     + f"; {n_attr - len(top)} of {n_attr} at zero")
        figures["models"][label] = {"rows": out, "fused_gain_mAP": gain, "chosen": c, "candidates": meta["candidates"],
                                    "fit_seconds": meta["seconds"]["fit"], "triplets": meta["triplets"],
                                    "weights": dict(zip(fused.names, fused.weights.tolist())),
                                    "attribute_only_weights": dict(zip(alone.names, alone.weights.tolist()))}
        if spec == M0277 and args.weights_png:
            weights_chart(fused, args.weights_png, f"{label}: learned attribute weights (fused, PETA-ReID-val)")
            report.progress(f"wrote {relative(args.weights_png)}")
    report.save(figures)


def weights_chart(fusion: Fusion, path: Path, title: str) -> None:
    """A ranked horizontal bar chart of the non-zero attribute weights (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xreid.data.vocabulary import words

    order = [i for i in np.argsort(-fusion.weights) if fusion.weights[i] > 0]
    fig, ax = plt.subplots(figsize=(6, 0.28 * max(len(order), 1) + 1.2))
    ax.barh([words(fusion.names[i]).present for i in order][::-1], [fusion.weights[i] for i in order][::-1],
            color="#4e79a7")
    ax.set_xlabel("weight")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    main()
