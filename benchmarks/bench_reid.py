"""PETA-ReID benchmark: accuracy and embedding throughput of the bundled model, its exported
forms, and every Open Model Zoo re-id model in ../shared/models/openvino. Prints one table.

    python benchmarks/bench_reid.py --data-root DATA_ROOT [--json benchmarks/results/peta_reid.json]

Throughput is the model alone (inputs decoded and resized beforehand), after warm-up, on this
machine's CPU: batch 1 (latency-bound, as Open Model Zoo reports) and batch 64.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from xreid.data.dataset import load_resized
from xreid.data.protocol import load_protocol
from xreid.evaluation.evaluate import evaluate_protocol
from xreid.models.embedders import load_embedder
from xreid.models.export import export_model
from xreid.paths import resolve_data_root

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "openvino"


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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--models-dir", type=Path, default=SHARED_MODELS)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-omz", action="store_true")
    ap.add_argument("--only-omz", action="store_true", help="evaluate only the Open Model Zoo models")
    ap.add_argument("--no-accuracy", action="store_true", help="throughput only")
    ap.add_argument("--no-throughput", action="store_true", help="accuracy only (e.g. while the CPU is busy)")
    args = ap.parse_args()

    protocol = load_protocol("peta-reid", resolve_data_root(args.data_root))
    sample = [protocol.image_root / r.path for r in protocol.test_images()[:256]]
    tmp = Path(tempfile.mkdtemp(prefix="xreid_bench_"))
    models: dict[str, tuple[str, bool]] = {}  # label: (model spec, flip test-time augmentation)
    if not args.only_omz:
        onnx = export_model("default", "onnx", tmp / "default.onnx")["path"]
        models = {"xreid default (PyTorch)": ("default", False),
                  "xreid default (ONNX Runtime)": (onnx, False),
                  "xreid default (OpenVINO)": (export_model("default", "openvino", tmp / "default.xml")["path"], False),
                  "xreid default --flip (ONNX Runtime)": (onnx, True)}
    if not args.skip_omz:
        for xml in sorted(args.models_dir.glob("person-reidentification-retail-*/FP*/*.xml")):
            models[f"{xml.stem} {xml.parent.name} (OpenVINO)"] = (str(xml), False)
    rows = []
    for label, (spec, flip) in models.items():
        emb = load_embedder(spec, flip_average=flip)
        row = {"model": label, "spec": spec if spec == "default" else Path(spec).name}
        if not args.no_accuracy:
            res = evaluate_protocol(emb, protocol, progress=False)
            row.update(mean_mAP=res.mean["mAP"], mean_R1=res.mean["R1"],
                       **{f"{k}_{m}": v[m] for k, v in res.per_set.items() for m in ("mAP", "R1")})
        if not args.no_throughput:
            row.update(img_s_b1=throughput(emb, sample, 1), img_s_b64=throughput(emb, sample, 64))
        rows.append(row)
        print(f"done: {label}", flush=True)
    sets = [t.name for t in protocol.test_sets]
    head = "| model | mean mAP / R1 | " + " | ".join(f"{s} mAP / R1" for s in sets) + " | img/s b1 | img/s b64 |"
    print("\n" + head)
    print("|" + "---|" * (4 + len(sets)))
    def cell(r: dict, key: str) -> str:
        return f"{r[key + '_mAP']:.1f} / {r[key + '_R1']:.1f}" if key + "_mAP" in r else "-"

    def speed(r: dict, key: str) -> str:
        return f"{r[key]:.0f}" if key in r else "-"

    for r in rows:
        print(f"| {r['model']} | {cell(r, 'mean')} | " + " | ".join(cell(r, s) for s in sets)
              + f" | {speed(r, 'img_s_b1')} | {speed(r, 'img_s_b64')} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
