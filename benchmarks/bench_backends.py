"""Whole-process speed of ``xreid embed --list`` over PETA-ReID test crops, one row per backend.

    python benchmarks/bench_backends.py [--data-root DATA_ROOT] [--images 800] [--runs 3]
                                        [--candidate LABEL=MODEL.pt] [--out benchmarks/results/backends]

Each figure is the command as a user runs it, process start included (interpreter, imports, model
load, JPEG decoding, embedding, writing the .npz), timed from outside:

- ``--model default``: the bundled model under the default backend ('auto': ONNX Runtime, from the
  compiled-model cache);
- ``--model default`` with ``XREID_BACKEND=torch``: the same model in PyTorch (what 'default' ran
  before the cache existed);
- ``--model`` Open Model Zoo person-reidentification-retail-0277 (OpenVINO, f32);
- ``--candidate LABEL=MODEL``: any other xreid model file (a candidate default) under 'auto'.

The crops are spread evenly over the test images of every test set. One untimed run of each command
comes first (it fills the model cache and the page cache); then the commands run in turn, A B C A B
C ..., so a change in machine speed hits all of them alike, and the median wall time is quoted with
the CPU seconds (user + system) of the same run. The one-time cost of compiling the bundled model into
an empty cache is timed on its own.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import M0277, Report, labelled_models, parse, parser, relative

from xreid.data.protocol import load_protocol


def spread(items: list, n: int) -> list:
    """``n`` items taken at even steps through ``items`` (all of them when there are fewer)."""
    step = max(1, len(items) // n)
    return items[::step][:n]


def timed_run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run of ``argv``; fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def embed_command(model: str, list_file: Path, out: Path, data_root: Path) -> list[str]:
    xreid = str(Path(sys.executable).with_name("xreid"))
    return [xreid if Path(xreid).exists() else "xreid", "embed", "--model", model, "--list", str(list_file),
            "--data-root", str(data_root), "--out", str(out), "--no-resume"]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=800, help="test crops to embed (default 800)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per command (default 3)")
    ap.add_argument("--omz", type=Path, default=M0277, help="the Open Model Zoo row's model (.xml)")
    ap.add_argument("--candidate", action="append", default=[], metavar="LABEL=MODEL",
                    help="also time `xreid embed --model MODEL` (e.g. a candidate default's .pt), default backend; "
                         "repeatable")
    args = parse(ap)
    report = Report(args.out)

    protocol = load_protocol("peta-reid", args.data_root)
    crops = spread(protocol.test_images(), args.images)
    keys = [os.path.relpath(protocol.image_root / r.path, args.data_root) for r in crops]
    base_env = {k: v for k, v in os.environ.items() if k != "XREID_BACKEND"}
    rows = {"xreid default (auto: ONNX Runtime, cached)": ("default", {}),
            "xreid default (XREID_BACKEND=torch: PyTorch)": ("default", {"XREID_BACKEND": "torch"})}
    for label, model in labelled_models(args.candidate, "--candidate").items():
        if not Path(model).is_file():
            sys.exit(f"--candidate {label}={model}: no such model file")
        rows[f"{label} (auto)"] = (model, {})
    if args.omz.is_file():
        rows[f"{args.omz.stem} (OpenVINO f32)"] = (str(args.omz), {})
    else:
        report.progress(f"{relative(args.omz)} not found: no Open Model Zoo row")

    with tempfile.TemporaryDirectory(prefix="xreid_bench_backends_") as tmp:
        list_file = Path(tmp) / "crops.txt"
        list_file.write_text("path\n" + "\n".join(keys) + "\n")  # a list is a CSV with a header row
        commands = {label: (embed_command(model, list_file, Path(tmp) / f"{i}.npz", args.data_root),
                            {**base_env, **extra}) for i, (label, (model, extra)) in enumerate(rows.items())}
        cold_env = {**base_env, "XREID_MODEL_CACHE": str(Path(tmp) / "empty-cache")}
        report.progress("cold cache: compiling the bundled model once")
        cold_wall, _ = timed_run(commands[next(iter(rows))][0], cold_env)
        for label, (argv, env) in commands.items():
            report.progress(f"warm-up: {label}")
            timed_run(argv, env)
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
        for r in range(args.runs):
            for label, (argv, env) in commands.items():
                times[label].append(timed_run(argv, env))
                report.progress(f"run {r + 1}/{args.runs} {label}: {times[label][-1][0]:.1f} s")

    figures, table = {}, []
    for label, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = next(c for w, c in runs if w == wall) if args.runs % 2 else statistics.median(c for _, c in runs)
        figures[label] = {"wall_s": [round(w, 2) for w, _ in runs], "median_wall_s": round(wall, 2),
                          "cpu_s": round(cpu, 1), "images_per_s": round(len(keys) / wall, 1)}
        table.append([label, f"{wall:.1f}", f"{min(w for w, _ in runs):.1f}-{max(w for w, _ in runs):.1f}",
                      f"{cpu:.1f}", f"{len(keys) / wall:.0f}"])
    warm_auto = figures[next(iter(rows))]["median_wall_s"]
    figures["cold_cache_auto_wall_s"] = round(cold_wall, 2)
    report.print(f"`xreid embed --list` over {len(keys)} PETA-ReID test crops (spread over every test set), "
                 f"whole process, {os.cpu_count()} CPU cores, median of {args.runs} interleaved runs after one "
                 f"warm-up each; load average at the end {os.getloadavg()[0]:.1f}")
    report.table(["command", "wall s (median)", "wall s (range)", "CPU s", "img/s"], table)
    report.print(f"First run with an empty model cache (exports and checks the ONNX copy once): {cold_wall:.1f} s "
                 f"wall, {cold_wall - warm_auto:+.1f} s over a cached run.")
    report.save(figures)


if __name__ == "__main__":
    main()
