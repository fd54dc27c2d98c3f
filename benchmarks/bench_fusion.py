"""Attribute fusion (ACRN's comparison table) on PETA-ReID, for OMZ 0277, the bundled model and the
0277 + 0286 + 0287 concatenation.

    python benchmarks/bench_fusion.py [--data-root DATA_ROOT] [--cache runs/fusion_cache] [--out STEM]
        [--weights-png docs/fusion_weights_0277.png]

Attribute classifiers (each an attribute head on some model's embedding; mA on the PETA-ReID test
images printed for each):

- the bundled head on the bundled model's embedding (the AANet default's attribute layer, trained with
  the network on the PETA-ReID train split and 70 % of the CUHK / MIT attribute-only crops, calibrated
  on the rest; docs/METHODS.md#training-recipe). The bundled network was trained on the PETA-ReID-val
  identities, so validation overrates it;
- clean ones: a head on 0277's own embedding and a head on the 0277 + 0286 + 0287 concatenation,
  fitted here exactly as `xreid attributes fit --model ...` fits them (same images); none of those
  networks saw PETA.

Rows of a full table, per re-id model, on the three PETA-ReID test sets:

- CNN alone: the model's 1 - cos;
- attributes alone, unweighted: sum of squared differences of calibrated probabilities;
- attributes alone, learned weights: the weights of ``fit_fusion(objective="attributes")``
  (ACRN's weight-layer loss on attributes alone);
- attributes + KISSME: a KISSME metric on the probabilities, fitted on same-person pairs and
  hard other-person pairs of PETA-ReID-val's train list;
- CNN + attributes, score fusion 0.5: 1 - cos + 0.5 x the mean squared probability difference;
- fused: ``xreid fuse fit`` (complementary weights on out-of-fold attribute probabilities, margin /
  L2 / mixing chosen on PETA-ReID-val);
- (0277 only, its own row, not a fusion gain) 0277 + 0286 + 0287 concatenated
  (``--model a.xml,b.xml,c.xml``).

Short tables (CNN alone, attributes alone, fused): 0277 with the concatenation's attributes, and the
concatenation fused with its own attributes.

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
from xreid.workflows.attributes import evaluate_head, fit_head
from xreid.workflows.embedding_cache import CachedEmbedder, cached_embeddings
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
    images = test.test_images()
    bench = Bench(root, test, split, images, args.cache, report)

    bundled = load_embedder("default")
    bundled_head = AttributeHead.load(BUNDLED_HEAD)
    figures: dict = {"attribute_classifiers": {}, "models": {}}
    figures["attribute_classifiers"]["bundled"] = bench.classifier(bundled, bundled_head, "bundled default_head.npz")
    m0277, concat = load_embedder(M0277), load_embedder(CONCAT)
    for label, emb in (("OMZ 0277", m0277), ("xreid default", bundled)):
        figures["models"][label] = bench.table(label, relative(M0277) if emb is m0277 else "bundled", emb, bundled,
                                               bundled_head, "the bundled model's attributes", full=True,
                                               concat=concat if emb is m0277 else None)
        if emb is m0277 and args.weights_png:
            weights_chart(bench.last_fusion, args.weights_png, f"{label}: learned attribute weights (fused, "
                                                               f"PETA-ReID-val)")
            report.progress(f"wrote {relative(args.weights_png)}")

    # Clean attributes: heads on embeddings of networks that never saw PETA (fitted like `xreid attributes
    # fit --model ...`), so the validation sets judge them as they will be on new people.
    report.progress("heads on 0277 and on 0277 + 0286 + 0287: fitting")
    own_head = fit_head(CachedEmbedder(m0277, test.image_root, args.cache, progress=False), root, "peta-reid",
                        model_name="OMZ 0277")
    concat_head = fit_head(CachedEmbedder(concat, test.image_root, args.cache, progress=False), root, "peta-reid",
                           model_name="0277+0286+0287")
    figures["attribute_classifiers"]["head on 0277"] = bench.classifier(m0277, own_head, "xreid attributes fit --model 0277")
    figures["attribute_classifiers"]["head on 0277+0286+0287"] = bench.classifier(
        concat, concat_head, "xreid attributes fit --model 0277,0286,0287")
    for key, label, emb, attr_emb, head, attrs, full in (
            ("OMZ 0277, attributes of a head on 0277", "OMZ 0277", m0277, m0277, own_head,
             "attributes of a head on 0277's own embedding", True),
            ("OMZ 0277, attributes of a head on 0277+0286+0287", "OMZ 0277", m0277, concat, concat_head,
             "attributes of a head on the 0277 + 0286 + 0287 concatenation", False),
            ("0277+0286+0287, attributes of a head on 0277+0286+0287", "0277 + 0286 + 0287 concatenated", concat,
             concat, concat_head, "attributes of a head on its own embedding", False)):
        figures["models"][key] = bench.table(label, "--model " + ",".join(relative(x) for x in CONCAT.split(","))
                                             if emb is concat else relative(M0277), emb, attr_emb, head, attrs, full)
    report.save(figures)


class Bench:
    """The comparison tables of one benchmark run (shared test images, splits and embedding cache)."""

    def __init__(self, root, test, split, images, cache: Path, report: Report):
        self.root, self.test, self.split, self.images, self.cache, self.report = root, test, split, images, cache, report
        self.last_fusion = None

    def lookup(self, embedder, recs) -> Lookup:
        feats, kept, _ = cached_embeddings(embedder, self.test.image_root, [r.path for r in recs], self.cache, False)
        return Lookup(kept, feats)

    def classifier(self, embedder, head: AttributeHead, how: str) -> dict:
        """How the attribute classifier was made and its mA on the PETA-ReID test images."""
        ma = evaluate_head(CachedEmbedder(embedder, self.test.image_root, self.cache, progress=False), head,
                           self.root)["mA"]
        source = str(head.meta.get("source"))
        made = source if source.startswith("trained with the network") else f"fitted on {source}"
        self.report.print(f"attribute classifier: {how} on {embedder.name}; {made}; "
                          f"mA on the PETA-ReID test images {ma:.1f} %")
        return {"model": embedder.name, "head": how, "fit_images": head.meta.get("source"), "test_mA": ma}

    def table(self, label: str, shown: str, emb, attr_emb, head: AttributeHead, attrs: str, full: bool,
              concat=None) -> dict:
        """One comparison table: ``emb`` (frozen) with the attributes of ``head`` on ``attr_emb``.
        ``full``: every row of ACRN's table, else the CNN alone, attributes alone and fused."""
        test, split, images, report = self.test, self.split, self.images, self.report
        report.progress(f"{label} with {attrs}: fitting")
        model = self.lookup(emb, images)
        probs = Lookup([r.path for r in images], head.calibrated(self.lookup(attr_emb, images)(images)))
        # the bundled attributes saw the validation identities: fitted anyway, reported as the biased row it is
        fit = dict(attribute_spec=attr_emb.name, progress=False, allow_seen_validation=True)
        fused, meta = fit_fusion(emb, attr_emb, head, self.root, self.cache, **fit)
        self.last_fusion = fused
        n_attr = len(head.names)
        unweighted = np.full(n_attr, 1.0 / n_attr)

        def d_cnn(q, g):
            return cosine_distance(model(q), model(g))

        rows = {"CNN alone": d_cnn,
                "attributes alone, unweighted": lambda q, g: attribute_distance(probs(q), probs(g), unweighted)}
        if full:
            alone, _ = fit_fusion(emb, attr_emb, head, self.root, self.cache, objective="attributes", **fit)
            train_probs = head.calibrated(self.lookup(attr_emb, split.train)(split.train))
            a, p, n = hard_triplets([r.pid for r in split.train], self.lookup(emb, split.train)(split.train),
                                    negatives=5, positives=2)
            metric = kissme(train_probs[a] - train_probs[p], train_probs[a] - train_probs[n])
            rows.update({
                "attributes alone, learned weights": lambda q, g: attribute_distance(probs(q), probs(g), alone.weights),
                "attributes + KISSME": lambda q, g: metric_distance(probs(q), probs(g), metric),
                "CNN + attributes, score fusion 0.5": lambda q, g: d_cnn(q, g) + 0.5 * attribute_distance(
                    probs(q), probs(g), unweighted)})
        rows[f"fused (learned weights, mixing {fused.mixing:g})"] = lambda q, g: fused.distances(d_cnn(q, g), probs(q),
                                                                                                  probs(g))
        if concat is not None:
            both = self.lookup(concat, images)
            rows["0277 + 0286 + 0287 concatenated (its own row)"] = lambda q, g: cosine_distance(both(q), both(g))
        table, out = [], {}
        for name, dist in rows.items():
            per_set, mean = score_sets(test.test_sets, dist)
            out[name] = {"mean": {k: mean[k] for k in ("mAP", "R1")},
                         "per_set": {s: {k: v[k] for k in ("mAP", "R1")} for s, v in per_set.items()}}
            table.append([name, f"{mean['mAP']:.1f} / {mean['R1']:.1f}"]
                         + [f"{per_set[s]['mAP']:.1f} / {per_set[s]['R1']:.1f}" for s in SETS if s in per_set])
        report.print(f"\n## {label} ({shown}) with {attrs}, on PETA-ReID test\n")
        report.table(["method", "mean mAP / R1", *(f"{s} mAP / R1" for s in SETS)], table)
        gain = out[next(k for k in out if k.startswith("fused"))]["mean"]["mAP"] - out["CNN alone"]["mean"]["mAP"]
        c = meta["chosen"]
        val_alone = next(x["val_mAP"] for x in meta["candidates"] if x["mixing"] == 0)
        report.print(f"\nfused - CNN alone: {gain:+.2f} mean mAP on test. Chosen on {meta['protocol']} validation "
                     f"sets: margin {c['margin']}, L2 {c['decay']}, mixing {c['mixing']} (validation mean mAP "
                     f"{c['val_mAP']:.2f}; mixing 0, the CNN alone: {val_alone:.2f}, so {c['val_mAP'] - val_alone:+.2f} "
                     f"on validation). Fit time with cached embeddings: {meta['seconds']['fit']:.0f} s "
                     f"({meta['triplets']} triplets, {meta['train_images']} training images).")
        order = np.argsort(-fused.weights)
        top = [(fused.names[i], float(fused.weights[i])) for i in order if fused.weights[i] > 0]
        report.print("learned weights (largest first): " + ", ".join(f"{n} {w:.3f}" for n, w in top[:15])
                     + f"; {n_attr - len(top)} of {n_attr} at zero")
        result = {"attributes": attrs, "rows": out, "fused_gain_mAP": gain, "val_gain_mAP": c["val_mAP"] - val_alone,
                  "chosen": c, "candidates": meta["candidates"], "fit_seconds": meta["seconds"]["fit"],
                  "triplets": meta["triplets"], "weights": dict(zip(fused.names, fused.weights.tolist()))}
        if full:
            result["attribute_only_weights"] = dict(zip(alone.names, alone.weights.tolist()))
        return result


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
