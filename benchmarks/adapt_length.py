"""How long to adapt: ``xreid adapt``'s validation curve over its rounds (issue 30).

    python benchmarks/adapt_length.py [--data-root DATA_ROOT] --model MODEL [--teacher XML]
                                      [--stops 3 6 12] [--batches 30] [--lr 1e-4] [--work DIR] [--out STEM]

The unlabeled crops are PETA-ReID-val's training images of VIPeR, PRID and GRID (``adapt_list.py
--protocol peta-reid-val``: other people than the validation sets', the same cameras; no validation
image is adapted on). One adaptation runs ``max(--stops)`` rounds of ``--batches`` batches with the
clustering options RESULTS chose on validation (Jaccard, k1 3, k2 2, eps 0.2, at least 2 crops) and
0277 as teacher; it stops after each stop's round (``max_batches``), the state at that point is
written as a model file and evaluated on PETA-ReID-val, and the adaptation resumes. Adam at a
constant rate and batches seeded by (seed, round, batch) make the state after r rounds the one a
run of ``--rounds r`` ends with. Round 0 is the model itself. Interrupted, it resumes from
``--work``.
"""

from __future__ import annotations

import time
from pathlib import Path

from adapt_list import unlabeled_rows, write_list
from common import M0277, Report, parse, parser

from xreid.data.protocol import load_protocol
from xreid.models.checkpoint import load_model_file, load_safely, save_model_file
from xreid.models.loading import load_embedder
from xreid.models.reid_net import ModelSpec
from xreid.training.adapt import AdaptConfig
from xreid.workflows.adapt import adapt, work_dir
from xreid.workflows.evaluate import evaluate_model

PROTOCOL = "peta-reid-val"
SUBSETS = {"VIPeR", "PRID", "GRID"}


def snapshot(model: Path, state: Path, out: Path) -> None:
    """The model file of ``model``'s network with the adaptation checkpoint ``state``'s weights."""
    net, ckpt = load_model_file(model)
    net.load_state_dict(load_safely(state)["state_dict"])
    save_model_file(net, ModelSpec.from_dict(ckpt["spec"]), out, {"config": ckpt.get("meta", {}).get("config")})


def main(argv=None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", type=Path, required=True, help="the xreid model to adapt (.pt)")
    ap.add_argument("--teacher", default=str(M0277), help="teacher model (default: OMZ 0277)")
    ap.add_argument("--teacher-precision", default="bf16")
    ap.add_argument("--stops", type=int, nargs="+", default=[3, 6, 12], help="rounds after which to evaluate")
    ap.add_argument("--batches", type=int, default=30, help="training batches per round")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--work", type=Path, default=Path("runs/adapt_length"), help="lists, checkpoints, snapshots")
    args = parse(ap, argv)
    if min(args.stops) < 1 or args.batches < 1:
        ap.error("--stops and --batches must be at least 1")
    report = Report(args.out)
    protocol = load_protocol(PROTOCOL, args.data_root)
    crops = args.work / "val_cameras_train.csv"
    rows = unlabeled_rows(protocol, SUBSETS)
    write_list(rows, crops)
    cfg = AdaptConfig(rounds=max(args.stops), batches=args.batches, lr=args.lr, distance="jaccard", k1=3, k2=2,
                      eps=0.2, min_samples=2, teacher=args.teacher, teacher_precision=args.teacher_precision)
    final = args.work / "adapted.pt"
    figures = []

    def evaluate(rounds: int, model: Path, seconds: float) -> None:
        res = evaluate_model(load_embedder(model), PROTOCOL, args.data_root)
        figures.append({"rounds": rounds, "batches": rounds * args.batches, "adapt_s": round(seconds, 1),
                        "mean": res.mean, "per_set": res.per_set})
        report.progress(f"round {rounds}: mAP {res.mean['mAP']:.2f}")

    evaluate(0, args.model, 0.0)
    spent = 0.0
    state = work_dir(final) / "adapt.pt"  # the adaptation's checkpoint: the state after the last stop
    for stop in sorted(set(args.stops)):
        snap = args.work / f"round{stop:02d}.pt"
        if not snap.exists():
            at = load_safely(state) if state.exists() else {"round": 0, "batch": 0}  # the next batch to run
            missing = stop * args.batches - (at["round"] * args.batches + at["batch"])
            if missing < 0:
                raise SystemExit(f"{state} is past round {stop} and {snap} is missing: remove {args.work} to start again")
            if missing > 0:  # (none when a run stopped after this stop's batches but before its snapshot)
                t0 = time.perf_counter()
                # the last stop ends on the last batch, through max_batches too: the run never "finishes"
                adapt(str(args.model), crops, final, cfg, data_root=protocol.image_root, resume=state.exists(),
                      progress=False, max_batches=missing)
                spent += time.perf_counter() - t0
            snapshot(args.model, state, snap)
        evaluate(stop, snap, spent)
    report.print(f"xreid adapt on {len(rows)} unlabeled training crops of {', '.join(sorted(SUBSETS))} "
                 f"({PROTOCOL}'s; none of its sets' people), teacher {Path(args.teacher).stem}, lr {args.lr:g}, "
                 f"{args.batches} batches per round; {PROTOCOL}, mAP / R1")
    sets = list(figures[0]["per_set"])
    report.table(["rounds", "batches", "adapt s (this run)", "mean", *sets],
                 [[f["rounds"], f["batches"], f["adapt_s"], f"{f['mean']['mAP']:.1f} / {f['mean']['R1']:.1f}",
                   *(f"{f['per_set'][s]['mAP']:.1f} / {f['per_set'][s]['R1']:.1f}" for s in sets)] for f in figures])
    report.save(figures)


if __name__ == "__main__":
    main()
