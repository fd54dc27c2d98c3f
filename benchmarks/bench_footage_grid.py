"""The footage pipeline's similarity thresholds for a re-id model: a grid on frames 1-400 of
PETS09-S2L1, the only frames with ground truth (so the chosen cell's figures are development
figures, as in ``bench_footage.py``).

    python benchmarks/bench_footage_grid.py [--model default] [--splits 0.2 0.35 0.5]
        [--links 0.5 0.65 0.8] [--out benchmarks/results/footage_grid]

Each cell builds the case in this process (``index_footage``, stride 1, the other options at their
defaults) with the track-splitting threshold S and the linking threshold L (re-entry L + 0.05), and
scores MOTA / IDF1 on frames 1-400. The thresholds are cosines on the model's own scale, so a new
bundled model needs its own grid (docs/METHODS.md#footage-and-sightings).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

from bench_footage import DETECTOR, GT, GT_FRAMES, VIDEO, case_tracks
from common import Report, parse, parser

from xreid.evaluation.mot import mot_scores, read_mot
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.sightings import LinkParams
from xreid.models.detector import Detector
from xreid.models.loading import BUNDLED_HEAD, load_embedder, model_head_path
from xreid.workflows.footage import FootageOptions, index_footage


def main(argv=None) -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--model", default="default")
    ap.add_argument("--splits", type=float, nargs="+", default=[0.2, 0.35, 0.5])
    ap.add_argument("--links", type=float, nargs="+", default=[0.5, 0.65, 0.8])
    args = parse(ap, argv)
    report = Report(args.out)
    embedder = load_embedder(args.model)
    head = AttributeHead.load(BUNDLED_HEAD if args.model == "default" else model_head_path(args.model))
    detector, gt = Detector(DETECTOR), read_mot(GT)
    cells = []
    for split, link in itertools.product(args.splits, args.links):
        opts = FootageOptions(split_similarity=split,
                              link_params=LinkParams(min_similarity=link, min_similarity_reentry=min(link + 0.05, 1.0)))
        case = Path(tempfile.mkdtemp()) / "case"
        try:
            index_footage(embedder, head, detector, VIDEO, case, camera="view1", start="2009-03-01T10:00:00",
                          opts=opts, progress=False, say=lambda *a: None)
            scores = mot_scores(gt, case_tracks(case), range(1, GT_FRAMES + 1))
        finally:
            shutil.rmtree(case.parent, ignore_errors=True)
        cells.append({"split": split, "link": link, "MOTA": round(scores["MOTA"], 1), "IDF1": round(scores["IDF1"], 1)})
        report.progress(f"split {split}, link {link}: IDF1 {scores['IDF1']:.1f}")
    best = max(cells, key=lambda c: (c["IDF1"], c["MOTA"]))
    report.print(f"model {args.model}; frames 1-{GT_FRAMES} of PETS09-S2L1, stride 1; re-entry = link + 0.05")
    report.table(["split below", "link at", "MOTA", "IDF1"],
                 [[c["split"], c["link"], f"{c['MOTA']:.1f}", f"{c['IDF1']:.1f}"] for c in cells])
    report.print(f"best IDF1: split {best['split']}, link {best['link']} ({best['IDF1']:.1f} / MOTA {best['MOTA']:.1f})")
    report.save({"model": args.model, "cells": cells, "best": best})


if __name__ == "__main__":
    main()
