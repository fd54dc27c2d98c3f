"""Variants of the description search's attribute source not kept, on PETA-ReID-val only (figures in
docs/RESULTS.md#search-by-description): the layer on the 0277 + 0286 + 0287 concatenation fitted
for other numbers of steps or with weight decay, a small MLP instead of the linear layer, and the
concatenation with 0288 added. Every head is fitted on PETA-ReID-val train + 70 % of the
attribute-only images and calibrated on the other 30 % (as ``bench_describe.py --sources``);
figures as there: k = 5, mean of three description seeds, library's look-alikes and rule.

    python benchmarks/bench_describe_source_variants.py [--data-root DATA_ROOT] [--cache CACHE]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from bench_describe import (CACHE, EXPLANATION_ATTRIBUTES, clean_features, source_metrics, val_descriptions)
from common import Report, omz_model, parse, parser

from xreid.data.protocol import load_protocol
from xreid.distance import l2_normalise
from xreid.explain.attribute_head import fit_attribute_head
from xreid.explain.calibration import apply_platt
from xreid.explain.formulas import class_balanced_weights
from xreid.models.concat import ConcatEmbedder
from xreid.models.loading import load_embedder
from xreid.workflows.attributes import calibrated

NAMES = list(EXPLANATION_ATTRIBUTES)


class MLPHead:
    """Two layers on the L2-normalised embedding (ReLU between), read as a head is read."""

    def __init__(self, net):
        self.net, self.names = net, NAMES

    def logits(self, f: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            x = torch.from_numpy(l2_normalise(np.asarray(f, np.float64)).astype(np.float32))
            return self.net(x).double().numpy()

    def predict(self, f: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-np.clip(self.logits(f), -50, 50)))

    def calibrated(self, f: np.ndarray) -> np.ndarray:
        return apply_platt(self.logits(f), self.calibration)


def fit_mlp(f: np.ndarray, y: np.ndarray, hidden: int, weight_decay: float, epochs: int = 300,
            lr: float = 0.01) -> MLPHead:
    """The linear layer's recipe (class-balanced BCE, full batch, Adam, cosine schedule) on an MLP."""
    import torch

    torch.manual_seed(0)
    x = torch.from_numpy(l2_normalise(np.asarray(f, np.float64)).astype(np.float32))
    target = torch.from_numpy(y.astype(np.float32))
    loss_fn = torch.nn.BCEWithLogitsLoss(
        weight=torch.from_numpy(class_balanced_weights(y, y.mean(0), "inverse").astype(np.float32)))
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        opt.zero_grad()
        loss_fn(net(x), target).backward()
        opt.step()
        sched.step()
    return MLPHead(net.eval())


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path, default=CACHE, help="embedding cache folder (as bench_describe.py)")
    args = parse(ap)
    report = Report(args.out)
    root, cache = args.data_root, args.cache
    val = load_protocol("peta-reid-val", root)
    models = {m: load_embedder(omz_model(f"person-reidentification-retail-{m}")) for m in ("0277", "0286", "0287",
                                                                                             "0288")}
    three = ConcatEmbedder([models[m] for m in ("0277", "0286", "0287")])
    linear = lambda **kw: lambda f, y: fit_attribute_head(f, y, NAMES, **kw)  # noqa: E731
    variants = [("0277 + 0286 + 0287, linear, 300 steps (bench_describe's concat)", three, linear())]
    variants += [(f"0277 + 0286 + 0287, linear, {e} steps", three, linear(epochs=e)) for e in (50, 100, 200, 1000)]
    variants += [(f"0277 + 0286 + 0287, linear, weight decay {wd:g}", three, linear(weight_decay=wd))
                 for wd in (1e-4, 1e-3)]
    variants += [(f"0277 + 0286 + 0287, MLP 256 hidden, weight decay {wd:g}", three,
                  lambda f, y, wd=wd: fit_mlp(f, y, 256, wd)) for wd in (0.0, 1e-4)]
    variants += [("0277 + 0286 + 0287 + 0288, linear, 300 steps", ConcatEmbedder(list(models.values())), linear())]
    images, seeded, oracles = val_descriptions(val)
    rows, figures = [], {}
    for label, emb, make in variants:
        t0 = time.time()
        (f_fit, y_fit), (f_cal, y_cal) = clean_features(emb, root, cache)
        head = calibrated(make(f_fit, y_fit), f_cal, y_cal)
        figures[label] = e = source_metrics(emb, head, val, cache, images, seeded, oracles)
        rows.append([label, f"{100 * e['balanced_accuracy']:.1f}",
                     *[f"{e[x][0]:.2f} / {e[x][1]:.2f} ({100 * e[x][2]:.1f} %)" for x in ("lookalikes", "alone")]])
        report.progress(f"{label}: {time.time() - t0:.0f} s")
    report.print(f"PETA-ReID-val, k = 5, mean of 3 description seeds (oracle mAP {np.mean(oracles):.1f}):\n")
    report.table(["source", "mean balanced accuracy % (val images)", "mAP / R1 (of oracle), look-alikes",
                  "each image alone"], rows)
    report.save(figures)


if __name__ == "__main__":
    main()
