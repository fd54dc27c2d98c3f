"""Seconds per training step (forward + backward + Adam, one P x K batch of 64) of the bundled
model's architecture, in PyTorch's default memory layout and in channels-last (what the trainer
uses: oneDNN runs MobileNetV2's depthwise convolutions much faster in NHWC on CPU).

    python benchmarks/bench_train_step.py [--sizes 160x80 192x96] [--freeze 2] [--steps 10] [--out STEM]
    python benchmarks/bench_train_step.py --trained runs/NAME/last.pt [--runs 4]   # + subnormal flushing

Random inputs (no data loading, no teacher): the model's own cost, first two steps not timed. The
loss is a stand-in (cross-entropy on the ID logits + a penalty on the embedding), not the
trainer's: the library has no single training-step function to time.
With ``--trained`` the model and Adam state start from a training checkpoint (late in training
many values are subnormal and slow on CPU), timed with and without ``torch.set_flush_denormal``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from common import Report, parse, parser, relative

from xreid.models.checkpoint import load_training_checkpoint
from xreid.models.networks import build_model
from xreid.models.reid_net import ModelSpec


def seconds_per_step(size: tuple[int, int], freeze: int, channels_last: bool, steps: int,
                     checkpoint: dict | None = None, flush_denormal: bool = False) -> float:
    torch.manual_seed(0)
    torch.set_flush_denormal(flush_denormal)  # before any parallel op creates the worker threads
    classes = checkpoint["spec"]["num_classes"] if checkpoint is not None else 1383  # PETA-ReID train ids
    spec = ModelSpec(backbone="mobilenetv2", pooling="gem", embedding_dim=256, last_stride=2,
                     input_size=size, num_classes=classes)
    model = build_model(spec, pretrained=True)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
    model.backbone.freeze_stages(freeze)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    images = torch.rand(64, 3, *size).contiguous(memory_format=fmt)
    labels = torch.randint(0, spec.num_classes, (64,))
    times = []
    for _ in range(steps + 2):
        tic = time.perf_counter()
        _, emb, logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits, labels) + emb.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - tic)
    return sum(times[2:]) / steps


def main() -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--sizes", nargs="+", default=["160x80", "192x96"], help="H x W inputs")
    ap.add_argument("--freeze", type=int, default=2, help="frozen backbone stages")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--trained", help="a run's last.pt: time steps from its weights and Adam state")
    ap.add_argument("--runs", type=int, default=1, help="with --trained: repeat the comparison (machine speed varies)")
    args = parse(ap)
    report = Report(args.out)
    if args.trained:
        trained_steps(args, report)
        report.save()
        return
    report.print(f"threads {torch.get_num_threads()}, batch 64, freeze_stages {args.freeze}")
    rows = []
    for text in args.sizes:
        size = tuple(int(v) for v in text.lower().split("x"))
        nchw = seconds_per_step(size, args.freeze, False, args.steps)
        nhwc = seconds_per_step(size, args.freeze, True, args.steps)
        rows.append([text, f"{nchw:.3f}", f"{nhwc:.3f}", f"{nchw / nhwc:.2f}x"])
        report.progress(f"done: {text}")
    report.table(["input", "NCHW s/step", "NHWC s/step", "speed-up"], rows)
    report.save()


def trained_steps(args: argparse.Namespace, report: Report) -> None:
    """Channels-last steps from a training checkpoint, with subnormals kept and flushed to zero.

    Each mode runs in a fresh process: the flush-to-zero flag is per thread, and worker threads
    inherit it only when they are created after it is set (as in the trainer)."""
    ckpt = load_training_checkpoint(args.trained)
    size = tuple(ckpt["spec"]["input_size"])
    freeze = ckpt["config"]["model"]["freeze_stages"]
    report.print(f"threads {torch.get_num_threads()}, batch 64, from {relative(args.trained)} "
                 f"(epoch {ckpt['epoch']}, input {size[0]}x{size[1]}, freeze_stages {freeze}), channels-last")
    del ckpt
    rows = []
    for run in range(1, args.runs + 1):
        times = {}
        for flush in (False, True):
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                times[flush] = pool.submit(_trained_step_time, args.trained, size, freeze, args.steps,
                                           flush).result()
        rows.append([run, f"{times[False]:.3f}", f"{times[True]:.3f}", f"{times[False] / times[True]:.2f}x"])
        report.progress(f"done: run {run}")
    report.table(["run", "subnormals kept s/step", "flushed s/step", "speed-up"], rows)


def _trained_step_time(path: str, size: tuple[int, int], freeze: int, steps: int, flush: bool) -> float:
    ckpt = load_training_checkpoint(path)
    return seconds_per_step(size, freeze, True, steps, ckpt, flush)


if __name__ == "__main__":
    main()
