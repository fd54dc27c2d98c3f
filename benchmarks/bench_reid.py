"""PETA-ReID benchmark: accuracy and embedding throughput of the bundled model, its exported
forms, and every Open Model Zoo re-id model in SHARED/models/openvino. Prints one table.

    python benchmarks/bench_reid.py [--data-root DATA_ROOT] [--skip-omz | --only-omz]
                                    [--no-accuracy | --no-throughput] [--out STEM]

Accuracy is the library's ``evaluate_protocol`` (what `xreid eval` reports). Throughput is the
model alone (inputs decoded and resized beforehand), after warm-up, on this machine's CPU: batch 1
(latency-bound, as Open Model Zoo reports) and batch 64.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from common import SHARED_MODELS, Report, parse, parser, relative

from xreid.data.dataset import load_resized
from xreid.data.protocol import load_protocol
from xreid.evaluation.evaluate import evaluate_protocol
from xreid.models.loading import load_embedder
from xreid.workflows.export import export_model


def throughput(embedder, paths: list[Path], batch: int, seconds: float = 8.0) -> float:
    images, _ = load_resized(paths, embedder.preprocess.size)
    x = embedder.preprocess.apply(np.stack([im for im in images if im is not None]))
    embedder.embed_inputs(x[:batch])  # warm-up
    done, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        for s in range(0, len(x) - batch + 1, batch):
            embedder.embed_inputs(x[s:s + batch])  # with the mirror pass when flip_average is on
            done += batch
    return done / (time.perf_counter() - tic)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--models-dir", type=Path, default=SHARED_MODELS)
    ap.add_argument("--skip-omz", action="store_true")
    ap.add_argument("--only-omz", action="store_true", help="evaluate only the Open Model Zoo models")
    ap.add_argument("--no-accuracy", action="store_true", help="throughput only")
    ap.add_argument("--no-throughput", action="store_true", help="accuracy only (e.g. while the CPU is busy)")
    args = parse(ap)
    report = Report(args.out)

    protocol = load_protocol("peta-reid", args.data_root)
    sample = [protocol.image_root / r.path for r in protocol.test_images()[:256]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="xreid_bench_") as tmp:
        # label: (model spec, flip test-time augmentation, options of load_embedder)
        models: dict[str, tuple[str, bool, dict]] = {}
        if not args.only_omz:
            onnx = export_model("default", "onnx", Path(tmp) / "default.onnx")["path"]
            xml = export_model("default", "openvino", Path(tmp) / "default.xml")["path"]
            models = {"xreid default (PyTorch)": ("default", False, {"backend": "torch"}),
                      "xreid default (ONNX Runtime)": (onnx, False, {}),
                      "xreid default (OpenVINO)": (xml, False, {}),
                      "xreid default --flip (ONNX Runtime)": (onnx, True, {})}
        if not args.skip_omz:
            for path in sorted(args.models_dir.glob("person-reidentification-retail-*/FP*/*.xml")):
                models[f"{path.stem} {path.parent.name} (OpenVINO)"] = (str(path), False, {})
        for label, (spec, flip, options) in models.items():
            emb = load_embedder(spec, flip_average=flip, **options)
            row = {"model": label, "spec": spec if spec == "default" else Path(spec).name}
            if not args.no_accuracy:
                res = evaluate_protocol(emb, protocol, progress=False)
                row.update(mean_mAP=res.mean["mAP"], mean_R1=res.mean["R1"],
                           **{f"{k}_{m}": v[m] for k, v in res.per_set.items() for m in ("mAP", "R1")})
            if not args.no_throughput:
                row.update(img_s_b1=throughput(emb, sample, 1), img_s_b64=throughput(emb, sample, 64))
            rows.append(row)
            report.progress(f"done: {label}")

    def cell(r: dict, key: str) -> str:
        return f"{r[key + '_mAP']:.1f} / {r[key + '_R1']:.1f}" if key + "_mAP" in r else "-"

    def speed(r: dict, key: str) -> str:
        return f"{r[key]:.0f}" if key in r else "-"

    sets = [t.name for t in protocol.test_sets]
    report.print("PETA-ReID test sets" + ("" if args.skip_omz else f"; Open Model Zoo models from {relative(args.models_dir)}"))
    report.table(["model", "mean mAP / R1", *(f"{s} mAP / R1" for s in sets), "img/s b1", "img/s b64"],
                 [[r["model"], cell(r, "mean"), *(cell(r, s) for s in sets), speed(r, "img_s_b1"), speed(r, "img_s_b64")]
                  for r in rows])
    report.save(rows)


if __name__ == "__main__":
    main()
