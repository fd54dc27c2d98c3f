"""What an AANet model could rank with (issue 30): its 256-d global branch (the compact descriptor), its
twelve branch vectors concatenated (the paper's 3,072-d descriptor), the global branch with the other
branches joined at a weight, and those projected to at most 512 dimensions by a PCA fitted on the
training crops (optionally whitened, with shrinkage), so a compact descriptor keeps what the other
branches add.

    python benchmarks/bench_descriptor.py --model MODEL.pt [--protocol peta-reid-val]
        [--exclude VIPeR PRID GRID] [--variants global all g+0.5 g+0.5:pca512:w0.1 ...] [--out STEM]

A variant is ``global`` (the global branch's batch-normed vector, what the compact recipe ranks
with), ``all`` (the model's 12 x V descriptor as it is), or ``g+W`` (the library's 'balanced' descriptor:
the global branch at unit length beside the parts, regions and attention-map vectors, each V-vector
unit length, each group scaled to length W), optionally followed by ``:pcaD`` (a PCA to D dimensions fitted on up to
``--fit-crops`` of the protocol's training crops, the subsets ``--exclude`` names left out, as a
cross-domain model trained) and ``:wS`` (whitened, each component divided by the square root of its
variance plus S times the mean variance of the D components kept). Every test image and fitted crop is embedded once; each
variant scores the protocol's test sets by cosine distance (mean mAP over the sets). Choose on
PETA-ReID-val with a model that never saw its identities; report the chosen variant on PETA-ReID
test once (``--protocol peta-reid --variants global CHOSEN``).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from common import Report, parse, parser, relative

from xreid.data.protocol import load_protocol, without_subsets
from xreid.evaluation.metrics import evaluate_ranking
from xreid.models.aanet import balanced_descriptor, descriptor_branches
from xreid.models.checkpoint import load_model_file, read_camera_norms
from xreid.models.embedders import TorchEmbedder
from xreid.training.projection import fit_sample, pca_projection

VARIANTS = ["global", "all", "g+0.25", "g+0.5", "g+1", "g+0.25:pca512", "g+0.5:pca512", "g+1:pca512",
            "g+0.25:pca512:w0.1", "g+0.5:pca512:w0.1", "g+1:pca512:w0.1", "g+0.5:pca512:w1",
            "g+0.5:pca256:w0.1", "global:pca256:w0.1"]
PATTERN = re.compile(r"^(global|all|g\+(?P<w>[0-9.]+))(:pca(?P<dim>\d+))?(:w(?P<shrink>[0-9.]+))?$")


def heads_embedder(path: str) -> tuple[TorchEmbedder, int]:
    """A PyTorch embedder whose vector is the model's 12 x V descriptor followed by its global branch's
    batch-normed vector (one forward pass gives every variant's inputs), and V."""
    net, _ = load_model_file(path)
    if not hasattr(net, "heads"):
        raise SystemExit(f"{path}: not an AANet model (no branches to compare)")
    if read_camera_norms(path):
        raise SystemExit(f"{path}: holds per-camera statistics, which this benchmark does not apply; "
                         f"give the model file they were estimated from")
    heads = net.heads

    def both(feature_map: torch.Tensor) -> torch.Tensor:
        out = heads(feature_map)
        return torch.cat([out["descriptor"], out["global_bn"]], 1)

    net.embed_feature_map = both
    return TorchEmbedder(net.float().eval(), name="heads"), heads.global_id.reduce[0].out_features


def base_vectors(feats: np.ndarray, hidden: int, name: str) -> np.ndarray:
    """The variant's vectors before any projection, from ``heads_embedder``'s output ('g+W': the
    library's 'balanced' descriptor at branch weight W)."""
    width = descriptor_branches("all", hidden)["aam"].stop
    desc, global_bn = feats[:, :width], feats[:, width:]
    if name == "global":
        return global_bn
    if name == "all":
        return desc
    out = {"global_bn": torch.from_numpy(global_bn), "descriptor": torch.from_numpy(desc)}
    return balanced_descriptor(out, float(name[2:])).numpy()


def pca(fit: np.ndarray, dim: int, shrink: float | None):
    """The library's projection (``pca_projection``) to ``dim`` principal components of ``fit``, each
    component whitened when ``shrink`` is given."""
    w, mu = pca_projection(fit, dim)
    values = ((fit - mu) @ w.T).var(0, ddof=1)  # the eigenvalues kept
    scale = np.ones_like(values) if shrink is None else 1 / np.sqrt(values + shrink * values.mean())
    return lambda x: ((x - mu) @ w.T) * scale


def score(protocol, row: dict, feats: np.ndarray) -> tuple[float, list[float]]:
    per_set = []
    for ts in protocol.test_sets:
        q, g = [row[r.path] for r in ts.query], [row[r.path] for r in ts.gallery]
        m = evaluate_ranking(feats[q], feats[g], [r.pid for r in ts.query], [r.pid for r in ts.gallery],
                             [r.cam for r in ts.query], [r.cam for r in ts.gallery])
        per_set.append(round(m.summary()["mAP"], 2))
    return round(float(np.mean(per_set)), 2), per_set


def main(argv=None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", required=True, help="an xreid AANet model file (.pt)")
    ap.add_argument("--protocol", default="peta-reid-val")
    ap.add_argument("--exclude", nargs="*", default=[], help="training subsets left out of the PCA's crops")
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--fit-crops", type=int, default=6000, help="training crops the PCA is fitted on (seed 0)")
    args = parse(ap, argv)
    for v in args.variants:
        if not PATTERN.match(v):
            ap.error(f"variant {v!r}: expected global, all or g+W, then optionally :pcaD and :wS")
    report = Report(args.out)
    protocol = load_protocol(args.protocol, args.data_root)
    embedder, hidden = heads_embedder(args.model)
    test = protocol.test_images()
    train = without_subsets(protocol.train, args.exclude) if args.exclude else protocol.train
    train = [train[i] for i in fit_sample(len(train), args.fit_crops)]  # as `xreid train`'s compact section
    embedded = {}
    wanted = [("test", test)] + ([("fit", train)] if any(":pca" in v for v in args.variants) else [])
    for name, records in wanted:
        report.progress(f"embedding {len(records)} {name} crops")
        res = embedder.embed_paths([protocol.image_root / r.path for r in records], batch_size=64)
        if len(res.kept) != len(records):
            raise SystemExit(f"{len(records) - len(res.kept)} {name} crops could not be read")
        embedded[name] = res.features
    row = {r.path: i for i, r in enumerate(test)}
    figures = []
    for v in args.variants:
        m = PATTERN.match(v)
        feats = base_vectors(embedded["test"], hidden, m.group(1))
        if m.group("dim"):
            shrink = None if m.group("shrink") is None else float(m.group("shrink"))
            fit = base_vectors(embedded["fit"], hidden, m.group(1))
            feats = pca(fit, min(int(m.group("dim")), feats.shape[1]), shrink)(feats)
        mean, per_set = score(protocol, row, feats)
        figures.append({"variant": v, "dim": int(feats.shape[1]), "mAP": mean, "per_set": per_set})
    fitted = (f"; PCA fitted on {len(train)} training crops" + (f" (without {', '.join(args.exclude)})" if args.exclude
                                                                else "")) if "fit" in embedded else ""
    report.print(f"{relative(args.model)} on {protocol.name}{fitted}")
    report.table(["variant", "dims", "mean mAP", " / ".join(ts.name for ts in protocol.test_sets)],
                 [[f["variant"], f["dim"], f"{f['mAP']:.1f}", " / ".join(f"{x:.1f}" for x in f["per_set"])]
                  for f in figures])
    report.save({"model": relative(args.model), "protocol": protocol.name, "exclude": args.exclude,
                 "fit_crops": len(train) if "fit" in embedded else 0, "variants": figures})


if __name__ == "__main__":
    main()
