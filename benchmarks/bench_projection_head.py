"""How a compact projection of an AANet's descriptor should be laid out so that both the ranking and
the bias-free attribute head on it hold (issue 30).

    python benchmarks/bench_projection_head.py --model runs/aanet_compact/aanet_compact_mix_ibn_val/model.pt
        [--protocol peta-reid-val] [--out STEM]

The projection (``xreid.training.projection.pca_projection``) centres the descriptor. The attribute
head (``fit_attribute_head``) has no bias by design (the explanation's decomposition needs it), so on
a centred embedding every decision boundary passes through the mean crop: an attribute worn by few
people cannot be told apart with balanced rates. Variants, each ranked on the protocol's test sets
(mean mAP, cosine) and given a head fitted as ``xreid attributes fit`` fits one (the protocol's train
split + 70 % of the attribute-only crops; mA on the protocol's test images, 35 PETA attributes):

- ``centred``: y = W (x - mean), D dims (what the library fitted first);
- ``offset:S``: D - 1 centred dims and one constant dimension of S times the median norm of the
  centred vectors on the fit crops (a bias for the head; the same for every crop, so it never enters
  a difference between two crops);
- ``uncentred``: y = W x (the mean's projection stays in every vector);
- ``attr`` (optionally ``+offset:S``): the subspace keeps the attribute directions first: the
  orthonormal basis U of a head fitted on the descriptor itself (57 directions), then the leading
  principal directions of the descriptor with U's span removed, centred; ``attr*A``: those attribute
  coordinates multiplied by A, so they weigh A^2 times more in the distance.

Beside mAP and head mA: the explained share (the exact decomposition's attribute share of each
distance, median over every test query's top-10, as ``bench_explain_quality.py`` reports it), since
a head fitted after the projection need not lie where the crops differ.

Choose with a model that never saw the protocol's test people (PETA-ReID-val's train-list run); the
rule is in docs/RESULTS.md (anchor projection-head), written before the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench_descriptor import base_vectors, heads_embedder, score
from common import Report, parse, parser, relative

from xreid.data.peta import EXPLANATION_ATTRIBUTES
from xreid.data.protocol import load_protocol
from xreid.data.labels import label_matrix
from xreid.evaluation.attributes import attribute_report
from xreid.distance import l2_normalise
from xreid.explain.attribute_head import fit_attribute_head
from xreid.explain.formulas import exact_decomposition, orthonormal_attribute_basis
from xreid.training.multitask import split_attribute_only
from xreid.training.projection import attribute_first_projection, constant_row, fit_sample, pca_projection

VARIANTS = ["centred", "offset:0.1", "offset:0.3", "offset:1", "uncentred", "attr", "attr+offset:0.3"]


def layout(variant: str, fit: np.ndarray, dims: int, attribute_basis: np.ndarray):
    """The variant's map from descriptors to its embedding (the library's ``attribute_first_projection``,
    ``pca_projection`` and ``constant_row``)."""
    base, _, offset = variant.partition("+") if variant.startswith("attr") else ("", "", variant)
    keep = dims - (1 if offset.startswith("offset:") else 0)
    if base.startswith("attr"):
        w, mu = attribute_first_projection(fit, keep, attribute_basis)
        if base.startswith("attr*"):  # the attribute rows weigh A times more in the distance
            w = w.copy()
            w[:attribute_basis.shape[1]] *= float(base[5:])
    else:
        w, mu = pca_projection(fit, keep)
    if offset.startswith("offset:"):
        size = constant_row((fit - mu) @ w.T, float(offset[7:]))
        return lambda x: np.concatenate([(x - mu) @ w.T, np.full((len(x), 1), size)], 1)
    return (lambda x: x @ w.T) if offset == "uncentred" else (lambda x: (x - mu) @ w.T)


def explained_share(protocol, row: dict, feats: np.ndarray, weights: np.ndarray, top_k: int = 10) -> float:
    """Median attribute share of each distance of every test query's top-k (exact decomposition)."""
    basis = orthonormal_attribute_basis(weights)
    unit = l2_normalise(feats.astype(np.float64))
    shares = []
    for ts in protocol.test_sets:
        q, g = unit[[row[r.path] for r in ts.query]], unit[[row[r.path] for r in ts.gallery]]
        top = np.argsort(-(q @ g.T), axis=1)[:, :top_k]
        for i, idx in enumerate(top):
            parts, _, d = exact_decomposition(q[i][None], g[idx], basis)
            shares.extend(parts.sum(-1) / np.maximum(d, 1e-12))
    return 100 * float(np.median(shares))


def main(argv=None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", required=True, help="an xreid AANet model file (.pt), not projected")
    ap.add_argument("--protocol", default="peta-reid-val")
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--branch-weight", type=float, default=1.0, help="of the balanced descriptor")
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--cache", type=Path, default=None, help="an .npz keeping the embedded descriptors for a rerun")
    args = parse(ap, argv)
    report = Report(args.out)
    protocol = load_protocol(args.protocol, args.data_root)
    embedder, hidden = heads_embedder(args.model)
    test = protocol.test_images()
    ao_fit, _ = split_attribute_only(protocol.attribute_only)
    head_fit = [r for r in protocol.train + ao_fit if r.attributes is not None]
    projection_fit = [protocol.train[i] for i in fit_sample(len(protocol.train), 6000)]
    embedded = dict(np.load(args.cache)) if args.cache and args.cache.is_file() else {}
    for name, records in (("test", test), ("head", head_fit), ("projection", projection_fit)):
        if name in embedded and len(embedded[name]) == len(records):
            continue
        report.progress(f"embedding {len(records)} {name} crops")
        res = embedder.embed_paths([protocol.image_root / r.path for r in records], batch_size=64)
        if len(res.kept) != len(records):
            raise SystemExit(f"{len(records) - len(res.kept)} {name} crops could not be read")
        embedded[name] = base_vectors(res.features, hidden, f"g+{args.branch_weight:g}")
        if args.cache:
            np.savez(args.cache, **embedded)
    row = {r.path: i for i, r in enumerate(test)}
    names = list(EXPLANATION_ATTRIBUTES)
    y_fit, _ = label_matrix(head_fit, names)
    labelled = [i for i, r in enumerate(test) if r.attributes is not None]
    y_test, _ = label_matrix([test[i] for i in labelled], names)
    descriptor_head = fit_attribute_head(embedded["head"], y_fit, names)  # for the 'attr' layouts
    figures = []
    for v in args.variants:
        project = layout(v, embedded["projection"], args.dims, orthonormal_attribute_basis(descriptor_head.weights))
        feats = project(embedded["test"])
        mean, per_set = score(protocol, row, feats)
        head = fit_attribute_head(project(embedded["head"]), y_fit, names)
        ma = attribute_report(head.predict(feats[labelled]), y_test, names, protocol.attributes or names)["mA"]
        share = explained_share(protocol, row, feats, head.weights)
        figures.append({"variant": v, "mAP": mean, "per_set": per_set, "mA": round(float(ma), 2),
                        "explained_share": round(share, 1)})
        report.progress(f"{v}: mAP {mean:.1f}, head mA {ma:.1f}, explained share {share:.1f} %")
    report.print(f"{relative(args.model)} on {protocol.name}: balanced descriptor (W {args.branch_weight:g}) to "
                 f"{args.dims} dims, PCA on {len(projection_fit)} training crops; heads fitted on {len(head_fit)} "
                 f"labelled crops, mA on {len(labelled)} test images")
    report.table(["variant", "mean mAP", " / ".join(ts.name for ts in protocol.test_sets), "head mA (%)",
                  "explained share (%)"],
                 [[f["variant"], f"{f['mAP']:.1f}", " / ".join(f"{x:.1f}" for x in f["per_set"]), f"{f['mA']:.1f}",
                   f"{f['explained_share']:.1f}"] for f in figures])
    report.save({"model": relative(args.model), "protocol": protocol.name, "dims": args.dims, "variants": figures})


if __name__ == "__main__":
    main()
