"""ACRN training of the own CNN against the same recipe without the complementary loss.

Two runs of configs/peta_mobilenetv2_acrn.yaml, identical but for ``acrn.gamma`` (docs/RESULTS.md#acrn-training
gives the commands), both trained on PETA-ReID-val's train list. Rows, on the PETA-ReID test sets (mean
and per set, mAP / R1) and on the PETA-ReID-val validation sets (mean mAP):

- the same recipe without the complementary loss, CNN alone;
- that CNN with the same attribute classifier fused after training (`xreid fuse fit`, frozen model);
- that CNN with ACRN's learnt weights (mixing chosen on validation): how much of the gain is the weights';
- the ACRN-trained CNN alone;
- ACRN: the ACRN-trained CNN + its learnt attribute weights (the run's fusion file, mixing chosen on
  validation by the run);
- the attributes alone with ACRN's learnt weights.

The attribute classifier is the runs' (a head on OMZ 0277 + 0286 + 0287); its mA on the test images is
printed. Embeddings are cached in ``--cache``.

Usage: python benchmarks/bench_acrn.py [--data-root DATA_ROOT] [--acrn MODEL] [--baseline MODEL] [--out STEM]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench_fusion import SETS, Bench, weights_chart
from common import Report, parse, parser, relative

from xreid.data.protocol import load_protocol
from xreid.distance import cosine_distance
from xreid.explain.fusion import Fusion, attribute_distance
from xreid.models.loading import load_embedder
from xreid.workflows.acrn import fusion_path
from xreid.workflows.fuse import Lookup, fit_fusion, fusion_split, score_sets


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--acrn", type=Path, default=Path("runs/acrn/acrn_e16/model.pt"),
                    help="the ACRN run's model (its fusion file beside it)")
    ap.add_argument("--baseline", type=Path, default=Path("runs/acrn/acrn_off_e16/model.pt"),
                    help="the same recipe's model without the complementary loss (acrn.gamma=0)")
    ap.add_argument("--cache", type=Path, default=Path("runs/fusion_cache"), help="embedding cache folder")
    ap.add_argument("--weights-png", type=Path, default=Path("docs/acrn_weights.png"),
                    help="bar chart of the ACRN run's learnt attribute weights")
    args = parse(ap)
    report = Report(args.out)
    root = args.data_root
    for path in (args.acrn, args.baseline):
        if not path.is_file():
            raise SystemExit(f"{path}: model not found; train it first (docs/RESULTS.md#acrn-training)")
    fusion = Fusion.load(fusion_path(args.acrn))
    test = load_protocol("peta-reid", root)
    split = fusion_split(root, "peta-reid")
    images = test.test_images()
    val_images = list({r.path: r for ts in split.val_sets for r in ts.query + ts.gallery}.values())
    bench = Bench(root, test, split, images, args.cache, report)
    acrn, base = load_embedder(args.acrn), load_embedder(args.baseline)
    fusion.check_model(acrn, str(fusion_path(args.acrn)))
    classifier = load_embedder(fusion.attribute_model["spec"])
    fusion.head.check_model(classifier, "the ACRN run's attribute classifier")
    figures: dict = {"classifier": bench.classifier(classifier, fusion.head, "the ACRN runs' head (fitted in the run)")}

    report.progress("the baseline with the classifier fused after training (xreid fuse fit): fitting")
    grid = sorted(float(m) for m in fusion.meta.get("validation_mAP") or {1.0: None})  # the run's mixings
    post_hoc, post_meta = fit_fusion(base, classifier, fusion.head, root, args.cache,
                                     attribute_spec=fusion.attribute_model["spec"], mixings=grid, progress=False,
                                     allow_seen_validation=True)  # as the ACRN run itself chose: compared like for like
    everything = images + val_images
    m_acrn, m_base = bench.lookup(acrn, everything), bench.lookup(base, everything)
    probs = Lookup([r.path for r in everything], fusion.probabilities(bench.lookup(classifier, everything)(everything)))

    def cnn(model):
        return lambda q, g: cosine_distance(model(q), model(g))

    # where the gain comes from: the baseline CNN with ACRN's learnt weights, mixing chosen on validation
    swapped = {}
    for mix in grid:
        cand = Fusion(fusion.weights, mix, fusion.head, fusion.model, fusion.attribute_model)
        swapped[mix] = score_sets(split.val_sets, lambda q, g: cand.distances(cnn(m_base)(q, g), probs(q), probs(g)))[1]
    base_mix = max(swapped, key=lambda m: (swapped[m]["mAP"], -m))
    base_acrn_weights = Fusion(fusion.weights, base_mix, fusion.head, fusion.model, fusion.attribute_model)
    rows = {
        "same recipe without the complementary loss: CNN alone": cnn(m_base),
        f"  + attributes fused after training (fuse fit, mixing {post_hoc.mixing:g})":
            lambda q, g: post_hoc.distances(cnn(m_base)(q, g), probs(q), probs(g)),
        f"  + ACRN's learnt weights (mixing {base_mix:g})":
            lambda q, g: base_acrn_weights.distances(cnn(m_base)(q, g), probs(q), probs(g)),
        "ACRN-trained CNN alone": cnn(m_acrn),
        f"ACRN: CNN + learnt attribute weights (mixing {fusion.mixing:g})":
            lambda q, g: fusion.distances(cnn(m_acrn)(q, g), probs(q), probs(g)),
        "attributes alone, ACRN's learnt weights": lambda q, g: attribute_distance(probs(q), probs(g), fusion.weights),
    }
    table, out = [], {}
    for name, dist in rows.items():
        per_set, mean = score_sets(test.test_sets, dist)
        _, val = score_sets(split.val_sets, dist)
        out[name.strip()] = {"mean": {k: mean[k] for k in ("mAP", "R1")}, "val_mAP": val["mAP"],
                             "per_set": {s: {k: v[k] for k in ("mAP", "R1")} for s, v in per_set.items()}}
        table.append([name, f"{val['mAP']:.1f}", f"{mean['mAP']:.1f} / {mean['R1']:.1f}"]
                     + [f"{per_set[s]['mAP']:.1f} / {per_set[s]['R1']:.1f}" for s in SETS if s in per_set])
    report.print(f"\n## ACRN training vs the same recipe without it (models {relative(args.acrn)}, "
                 f"{relative(args.baseline)}), PETA-ReID test\n")
    report.table(["method", "val mean mAP", "test mean mAP / R1", *(f"{s} mAP / R1" for s in SETS)], table)
    keys = list(out)
    gain_cnn = out[keys[3]]["mean"]["mAP"] - out[keys[0]]["mean"]["mAP"]
    gain_full = out[keys[4]]["mean"]["mAP"] - out[keys[0]]["mean"]["mAP"]
    report.print(f"\nACRN-trained CNN alone - baseline CNN: {gain_cnn:+.2f} mean mAP on test; ACRN (with its weights) - "
                 f"baseline CNN: {gain_full:+.2f}; ACRN - baseline with post-hoc fusion: "
                 f"{out[keys[4]]['mean']['mAP'] - out[keys[1]]['mean']['mAP']:+.2f}; ACRN - baseline CNN with ACRN's weights: "
                 f"{out[keys[4]]['mean']['mAP'] - out[keys[2]]['mean']['mAP']:+.2f}. Mixing chosen on "
                 f"validation by the run: {fusion.meta.get('chosen')} (validation mAP by mixing "
                 f"{fusion.meta.get('validation_mAP')}); the post-hoc fusion's: {post_meta['chosen']}.")
    order = [i for i in np.argsort(-fusion.weights) if fusion.weights[i] > 0]
    report.print("ACRN's learnt weights (largest first): " + ", ".join(
        f"{fusion.names[i]} {fusion.weights[i]:.3f}" for i in order[:15])
        + f"; {len(fusion.names) - len(order)} of {len(fusion.names)} at zero")
    if args.weights_png:
        weights_chart(fusion, args.weights_png, "ACRN-trained CNN: learnt attribute weights")
        report.progress(f"wrote {relative(args.weights_png)}")
    figures.update({"rows": out, "gain_cnn_alone_mAP": gain_cnn, "gain_acrn_mAP": gain_full, "baseline_acrn_weights_mixing": base_mix,
                    "mixing": fusion.mixing, "validation_mAP_by_mixing": fusion.meta.get("validation_mAP"),
                    "post_hoc_chosen": post_meta["chosen"], "weights": dict(zip(fusion.names, fusion.weights.tolist()))})
    report.save(figures)


if __name__ == "__main__":
    main()
