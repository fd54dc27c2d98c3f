"""Seconds per training step (forward + backward + Adam, one P x K batch of 64) of the bundled
model's architecture, in PyTorch's default memory layout and in channels-last (what the trainer
uses: oneDNN runs MobileNetV2's depthwise convolutions much faster in NHWC on CPU).

    python benchmarks/bench_train_step.py [--sizes 160x80 192x96] [--freeze 2] [--steps 10]

Random inputs (no data loading, no teacher): the model's own cost, first two steps not timed.
"""

from __future__ import annotations

import argparse
import time

import torch

from xreid.models.reid_net import ModelSpec, build_model


def seconds_per_step(size: tuple[int, int], freeze: int, channels_last: bool, steps: int) -> float:
    torch.manual_seed(0)
    spec = ModelSpec(backbone="mobilenetv2", pooling="gem", embedding_dim=256, last_stride=2,
                     input_size=size, num_classes=1383)
    model = build_model(spec, pretrained=True)
    model.backbone.freeze_stages(freeze)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["160x80", "192x96"], help="H x W inputs")
    parser.add_argument("--freeze", type=int, default=2, help="frozen backbone stages")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"threads {torch.get_num_threads()}, batch 64, freeze_stages {args.freeze}")
    print(f"{'input':>8} {'NCHW s/step':>12} {'NHWC s/step':>12} {'speed-up':>9}")
    for text in args.sizes:
        size = tuple(int(v) for v in text.lower().split("x"))
        nchw = seconds_per_step(size, args.freeze, False, args.steps)
        nhwc = seconds_per_step(size, args.freeze, True, args.steps)
        print(f"{text:>8} {nchw:12.3f} {nhwc:12.3f} {nchw / nhwc:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
