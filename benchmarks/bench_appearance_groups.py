"""Normalisation statistics per appearance group (``xreid adapt FOLDER --rounds 0`` on crops that name
no camera, issue 30): how many groups, chosen on PETA-ReID-val, then the library's count on test.

    python benchmarks/bench_appearance_groups.py --model MODEL.pt [--data-root DATA_ROOT]
                                                 [--groups 4 8 16 32] [--no-test] [--out STEM]

The crops are a protocol's training crops of VIPeR, PRID and GRID (other people than its test sets',
the same cameras; ``adapt_list.py``) with their cameras left out. For each number of groups, the
library's ``appearance_groups`` splits them and ``estimate_camera_norms`` estimates each group's
statistics; the model then scores the protocol's test sets (``evaluate_protocol``: every crop routed
to its nearest group, since no protocol camera is a group). Beside them: the model as it is, and its
statistics from the true cameras (the queries' cameras known, and unknown). Purity: the share of
crops whose group's most common true camera is their own.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from adapt_list import unlabeled_rows
from common import Report, parse, parser

from xreid.data.dataset import decode_all
from xreid.data.protocol import load_protocol
from xreid.evaluation.evaluate import evaluate_protocol
from xreid.models.checkpoint import load_model_file
from xreid.models.loading import load_embedder
from xreid.training.camera_norm import APPEARANCE_GROUPS, appearance_groups, estimate_camera_norms

SUBSETS = {"VIPeR", "PRID", "GRID"}


def purity(groups: list[str], cameras: list[str]) -> float:
    g, c = np.asarray(groups), np.asarray(cameras)
    return sum(Counter(c[g == name]).most_common(1)[0][1] for name in set(groups)) / len(groups)


def mean_map(model: str, norms: dict, protocol, query_cameras: bool = True) -> tuple[float, list[float]]:
    emb = load_embedder(model, backend="torch")
    emb.camera_norms = norms
    res = evaluate_protocol(emb, protocol, progress=False, query_cameras=query_cameras)
    return round(res.mean["mAP"], 2), [round(v["mAP"], 2) for v in res.per_set.values()]


def measure(model: str, protocol, counts: list[int], report: Report) -> list[dict]:
    net, ckpt = load_model_file(model)
    net = net.float().eval()
    rows = unlabeled_rows(protocol, SUBSETS)
    images, keep, errors = decode_all([protocol.image_root / p for p, _ in rows], tuple(ckpt["spec"]["input_size"]),
                                      False, "")
    if errors:
        raise SystemExit(f"{len(errors)} crops could not be read, e.g. {errors[0]}")
    cameras = [rows[i][1] for i in keep]
    out = [{"setting": "the model as it is", **dict(zip(("mAP", "per_set"), mean_map(model, {}, protocol)))}]
    true, _ = estimate_camera_norms(net, images, cameras)
    for known in (True, False):
        out.append({"setting": f"true cameras' statistics, queries' cameras {'known' if known else 'unknown'}",
                    **dict(zip(("mAP", "per_set"), mean_map(model, true, protocol, known)))})
    for k in counts:
        report.progress(f"{protocol.name}: {k} groups")
        groups = appearance_groups(net, images, groups=k)
        norms, left_out = estimate_camera_norms(net, images, groups)
        m, per_set = mean_map(model, norms, protocol)
        out.append({"setting": f"{k} appearance groups", "groups": k, "mAP": m, "per_set": per_set,
                    "purity": round(purity(groups, cameras), 3), "crops": len(images), "left_out": left_out})
    report.table(["setting", "mean mAP", "per set", "purity", "groups left out (crops)"],
                 [[r["setting"], f"{r['mAP']:.1f}", " / ".join(f"{v:.1f}" for v in r["per_set"]),
                   f"{r['purity']:.2f}" if "purity" in r else "",
                   ", ".join(f"{g} ({n})" for g, n in r.get("left_out", {}).items())] for r in out])
    return out


def main(argv=None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", required=True, help="an xreid model file (.pt)")
    ap.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--no-test", action="store_true", help="validation only")
    args = parse(ap, argv)
    report = Report(args.out)
    figures = {}
    report.print(f"## PETA-ReID-val: {args.model}, crops of the validation cameras without their cameras")
    figures["val"] = measure(args.model, load_protocol("peta-reid-val", args.data_root), args.groups, report)
    if not args.no_test:
        report.print(f"\n## PETA-ReID test, once: the library's {APPEARANCE_GROUPS} groups")
        figures["test"] = measure(args.model, load_protocol("peta-reid", args.data_root), [APPEARANCE_GROUPS], report)
    report.save(figures)


if __name__ == "__main__":
    main()
