"""OpenVINO at f32 and at bf16: PETA-ReID accuracy and model-only speed, side by side.

    python benchmarks/bench_precision.py [--data-root DATA_ROOT] [--seconds 4] [--rounds 3]
                                         [--out benchmarks/results/precision]

On CPUs with AVX512-BF16 (or AMX) OpenVINO's CPU plugin computes in bf16 unless told otherwise;
xreid now sets INFERENCE_PRECISION_HINT to f32 by default and offers bf16 as an option. This measures
what the choice costs or gains for the bundled model exported to OpenVINO and for Open Model Zoo
person-reidentification-retail-0277:

- accuracy: ``evaluate_protocol`` on PETA-ReID (what ``xreid eval`` reports), mean and per-set mAP;
- agreement: cosine between the bf16 and the f32 embedding of the same crops (min and mean);
- speed: the model alone on crops decoded and preprocessed beforehand, batch 1 and batch 64; both
  precisions of a model are loaded together and measured in alternation (f32, bf16, f32, ...) for
  ``--rounds`` rounds of ``--seconds`` each, and the median round is quoted, so a change in machine
  load hits both alike.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from common import M0277, Report, parse, parser, relative

from xreid.data.dataset import load_resized
from xreid.data.protocol import load_protocol
from xreid.distance import paired_cosine
from xreid.evaluation.evaluate import evaluate_protocol
from xreid.models.loading import load_embedder

PRECISIONS = ("f32", "bf16")


def images_per_second(embedder, inputs: np.ndarray, batch: int, seconds: float) -> float:
    """Embeddings per second of ``embedder`` on preprocessed ``inputs`` in batches of ``batch``."""
    embedder.embed_inputs(inputs[:batch])  # warm-up (first-call allocation)
    done, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        for s in range(0, len(inputs) - batch + 1, batch):
            embedder.embed_inputs(inputs[s:s + batch])
            done += batch
    return done / (time.perf_counter() - tic)


def alternating_speed(embedders: dict[str, object], inputs: np.ndarray, batch: int, seconds: float,
                      rounds: int) -> dict[str, float]:
    """Median img/s of each embedder over ``rounds`` rounds, the embedders taking turns in each round."""
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(rounds):
        for name, embedder in embedders.items():
            rates[name].append(images_per_second(embedder, inputs, batch, seconds))
    return {name: statistics.median(r) for name, r in rates.items()}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per speed measurement (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per batch size (default 3)")
    args = parse(ap)
    report = Report(args.out)
    protocol = load_protocol("peta-reid", args.data_root)
    sample = [protocol.image_root / r.path for r in protocol.test_images()[:256]]
    models = {"xreid default (exported to OpenVINO)": ("default", {"backend": "openvino"})}
    if M0277.is_file():
        models[M0277.stem] = (str(M0277), {})
    else:
        report.progress(f"{relative(M0277)} not found: bundled model only")

    figures, rows = {}, []
    for label, (spec, options) in models.items():
        embedders = {p: load_embedder(spec, precision=p, **options) for p in PRECISIONS}
        images, _ = load_resized(sample, embedders["f32"].preprocess.size)
        inputs = embedders["f32"].preprocess.apply(np.stack([im for im in images if im is not None]))
        cos = paired_cosine(*(embedders[p].embed_inputs(inputs) for p in PRECISIONS))
        speed = {b: alternating_speed(embedders, inputs, b, args.seconds, args.rounds) for b in (1, 64)}
        for p, embedder in embedders.items():
            report.progress(f"{label} {p}: PETA-ReID")
            result = evaluate_protocol(embedder, protocol, progress=False)
            figures.setdefault(label, {})[p] = {
                "identity": embedder.identity(), "mean_mAP": result.mean["mAP"], "mean_R1": result.mean["R1"],
                "per_set_mAP": {s: m["mAP"] for s, m in result.per_set.items()},
                "images_per_s_b1": speed[1][p], "images_per_s_b64": speed[64][p]}
            rows.append([label, p, f"{result.mean['mAP']:.2f}", f"{result.mean['R1']:.2f}",
                         " / ".join(f"{m['mAP']:.1f}" for m in result.per_set.values()),
                         f"{speed[1][p]:.0f}", f"{speed[64][p]:.0f}"])
        by = figures[label]
        by["bf16_vs_f32_cosine"] = {"min": float(cos.min()), "mean": float(cos.mean())}
        rows.append([label, "bf16 vs f32", f"{by['bf16']['mean_mAP'] - by['f32']['mean_mAP']:+.2f}",
                     f"{by['bf16']['mean_R1'] - by['f32']['mean_R1']:+.2f}",
                     f"cosine min {cos.min():.4f}, mean {cos.mean():.4f}",
                     f"x{speed[1]['bf16'] / speed[1]['f32']:.2f}", f"x{speed[64]['bf16'] / speed[64]['f32']:.2f}"])
    sets = " / ".join(ts.name for ts in protocol.test_sets)
    report.print(f"OpenVINO INFERENCE_PRECISION_HINT f32 vs bf16 on PETA-ReID; speed = model alone on "
                 f"{len(sample)} pre-decoded test crops, median of {args.rounds} alternating rounds of "
                 f"{args.seconds:g} s, {os.cpu_count()} CPU cores, load average at the end {os.getloadavg()[0]:.1f}")
    report.table(["model", "precision", "mean mAP", "mean R1", f"mAP {sets}", "img/s b1", "img/s b64"], rows)
    report.save(figures)


if __name__ == "__main__":
    main()
