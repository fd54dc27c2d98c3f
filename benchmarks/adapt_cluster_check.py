"""How well `xreid adapt`'s clustering finds people, on PETA-ReID-val's validation sets (cameras of
VIPeR, PRID and GRID; labelled for choosing, never test): for a grid of (k1, eps, min_samples), the
number of pseudo-identities, the share of crops clustered, and pairwise precision / recall of
"same cluster" against the true identities. Used to choose adapt's clustering options for data with
few crops per person (PETA's re-id subsets: about 2).

    python benchmarks/adapt_cluster_check.py --model runs/.../model.pt [--data-root DATA_ROOT] [--out OUT]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from common import Report

from xreid.data.protocol import load_protocol
from xreid.models.loading import load_embedder
from xreid.training.adapt import AdaptConfig, pseudo_labels


def pair_scores(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of the pairs put in one cluster, against the pairs of one identity."""
    same_c = (labels[:, None] == labels[None, :]) & (labels[:, None] >= 0)
    same_t = truth[:, None] == truth[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    tp = (same_c & same_t & off).sum()
    return tp / max((same_c & off).sum(), 1), tp / max((same_t & off).sum(), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-root", type=Path, default=os.environ.get("XREID_DATA_ROOT"))
    ap.add_argument("--out", type=Path, help="also write what is printed to OUT.txt")
    args = ap.parse_args()
    report = Report(args.out)
    protocol = load_protocol("peta-reid-val", args.data_root)
    records = [r for t in protocol.test_sets for r in t.query + t.gallery]
    embedder = load_embedder(args.model)
    result = embedder.embed_paths([protocol.image_root / r.path for r in records])
    truth = np.array([records[i].pid for i in result.kept])
    report.print(f"{len(truth)} validation crops, {len(set(truth))} people")
    report.print("distance k1 k2 eps min_samples | clusters clustered% precision recall")
    grid = ([("cosine", 0, 0, eps, 2) for eps in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)]
            + [("jaccard", k1, k2, eps, 2) for k1 in (2, 3, 5) for k2 in (1, 2) for eps in (0.2, 0.3, 0.4)])
    for distance, k1, k2, eps, ms in grid:
        lab = pseudo_labels(result.features, AdaptConfig(distance=distance, k1=max(k1, 1), k2=max(k2, 1), eps=eps,
                                                         min_samples=ms))
        p, r = pair_scores(lab, truth)
        report.print(f"{distance:7s} {k1:2d} {k2} {eps:.2f} {ms} | {lab.max() + 1:4d} {100 * (lab >= 0).mean():5.1f} "
                     f"{100 * p:5.1f} {100 * r:5.1f}")
    report.save()


if __name__ == "__main__":
    main()
