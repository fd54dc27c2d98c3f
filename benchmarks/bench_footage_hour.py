"""Memory and case size over a long input: ``xreid index build --video`` on PETS09-S2L1 looped.

    nice -n 10 python benchmarks/bench_footage_hour.py [--loops 8] [--stride 1] [--out benchmarks/results/footage_hour]

The issue's target: an hour of footage never needs more than 2 GB of memory, and the case size per
hour of footage is reported. Here the memory is measured, not extrapolated: the video is streamed
``--loops`` times as one input, with no long file written: an FFmpeg concat list (``ffconcat``) in a
temporary folder names the video ``--loops`` times, and ``xreid index build --video LIST`` reads it
like any video (the concat demuxer of the FFmpeg inside PyAV joins the parts; PETS09-S2L1 is 795
frames, 79.5 s at 10 fps, so 45 loops are an hour). The build runs as its own process, exactly as
a user runs it; every ``--sample`` seconds this script reads the process's resident memory
(``VmRSS`` in ``/proc/PID/status``) and the frames done (from its progress bar), and at the end its
peak (``VmHWM``, and the kernel's maximum RSS of the child).

Reported: peak memory; the resident memory against seconds of footage while frames are detected
(a least-squares line over the samples after the first 10 % of the frames, when the models are
loaded: its slope in MiB per hour of footage says whether memory grows with the footage); the
end of the video (sightings made, crops embedded, key frames read), whose memory depends on what
the whole video left; and the case size per hour of footage, in total and per part (chunk files,
sightings' files, index segments).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, Report, parse, parser  # noqa: E402

VIDEO = SHARED / "data" / "video" / "PETS09-S2L1.avi"
DETECTOR = SHARED / "models" / "openvino" / "person-detection-retail-0013" / "FP16" / "person-detection-retail-0013.xml"
VIDEO_FRAMES, FPS = 795, 10.0
#: the progress bar's frame count: "123/795 [" with a known total, "123frame [" without
PROGRESS = re.compile(r"(?:\|\s*(\d+)/\d+|(\d+)frame) \[")


def loop_list(folder: Path, video: Path, loops: int) -> Path:
    """An ffconcat list naming ``video`` ``loops`` times (through a link beside it: the concat
    demuxer's safe mode takes plain relative names only)."""
    link = folder / "part.avi"
    link.symlink_to(video.resolve())
    path = folder / "looped.ffconcat"
    path.write_text("ffconcat version 1.0\n" + "file part.avi\n" * loops)
    return path


def status_mib(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of ``pid`` in MiB; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kb = {k: float(v.split()[0]) for k, v in (ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
          if k in ("VmRSS", "VmHWM")}
    return (kb.get("VmRSS", 0.0) / 1024, kb.get("VmHWM", 0.0) / 1024) if kb else None


def run_build(listing: Path, case: Path, stride: int, every: float, report: Report) -> dict:
    cmd = [sys.executable, "-m", "xreid.cli", "index", "build", "--video", str(listing), "--detector", str(DETECTOR),
           "--stride", str(stride), "--camera", "view1", "--start", "2009-03-01T10:00:00", "--out", str(case)]
    frames = [0]
    log: list[str] = []

    def read_progress(stream) -> None:
        buf = ""
        while chunk := stream.read(256):
            buf += chunk
            *lines, buf = re.split(r"[\r\n]", buf)
            for line in lines:
                m = PROGRESS.search(line)
                if m:
                    frames[0] = int(m.group(1) or m.group(2))
                elif line.strip():
                    log.append(line)

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    reader = threading.Thread(target=read_progress, args=(proc.stderr,), daemon=True)
    reader.start()
    samples, hwm, last_note = [], 0.0, 0.0
    while proc.poll() is None:
        s = status_mib(proc.pid)
        if s is not None:
            hwm = max(hwm, s[1])
            samples.append((time.perf_counter() - t0, s[0], frames[0]))
            if samples[-1][0] - last_note >= 60:
                last_note = samples[-1][0]
                report.progress(f"  {last_note:.0f} s: {frames[0]} frames, {s[0]:.0f} MiB resident")
        time.sleep(every)
    reader.join(timeout=10)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n" + "\n".join(log[-40:]))
    peak_kernel = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_s": wall, "samples": samples, "peak_hwm_mib": hwm, "peak_rusage_mib": peak_kernel}


def case_parts(case: Path) -> dict[str, int]:
    parts = {"chunk files (footage/*/chunk-*.npz)": 0, "sightings' files (crops, key frames, frames)": 0,
             "index (segments, thumbnails, tracks, manifest)": 0}
    keys = list(parts)
    for p in case.rglob("*"):
        if p.is_file():
            rel = p.relative_to(case).as_posix()
            key = keys[0] if re.match(r"footage/[^/]+/chunk-\d+\.npz$", rel) else \
                keys[1] if rel.startswith("sightings/") else keys[2]
            parts[key] += p.stat().st_size
    return parts


def slope(samples: list[tuple[float, float, int]], total_frames: int) -> dict:
    """Least-squares line of resident MiB against hours of footage over the samples taken while
    frames were detected, after the first 10 % of them."""
    pts = np.array([(f / FPS / 3600, rss) for _, rss, f in samples
                    if 0.1 * total_frames <= f < total_frames], np.float64).reshape(-1, 2)
    if len(pts) < 3 or np.ptp(pts[:, 0]) <= 0:
        return {"points": len(pts)}
    a, b = np.polyfit(pts[:, 0], pts[:, 1], 1)
    return {"points": len(pts), "mib_per_hour": float(a), "at_start_mib": float(b),
            "first_mib": float(pts[0, 1]), "last_mib": float(pts[-1, 1]),
            "min_mib": float(pts[:, 1].min()), "max_mib": float(pts[:, 1].max())}


def main(argv=None) -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--loops", type=int, default=8, help="times the video is streamed (45 = one hour; default 8)")
    ap.add_argument("--stride", type=int, default=1, help="detect on every N-th frame (default 1)")
    ap.add_argument("--sample", type=float, default=1.0, help="seconds between memory samples (default 1)")
    args = parse(ap, argv)
    report = Report(args.out)
    for need in (VIDEO, DETECTOR):
        if not need.is_file():
            sys.exit(f"needs {need} (the shared footage and detector)")
    total = args.loops * VIDEO_FRAMES
    seconds = total / FPS
    with tempfile.TemporaryDirectory() as tmp:
        listing = loop_list(Path(tmp), VIDEO, args.loops)
        report.progress(f"xreid index build --video, PETS09-S2L1 x {args.loops} ({seconds / 60:.1f} min of footage), "
                        f"stride {args.stride} ...")
        run = run_build(listing, Path(tmp) / "case", args.stride, args.sample, report)
        parts = case_parts(Path(tmp) / "case")
    samples = run.pop("samples")
    seen = max((f for _, _, f in samples), default=0)  # frames read (the progress bar's last count)
    if seen < total:
        report.print(f"(the progress bar counted {seen} of {total} frames)")
    line = slope(samples, seen)
    detect_end = next((t for t, _, f in samples if f >= seen), run["wall_s"])
    during = [rss for t, rss, f in samples if f < seen]
    after = [rss for t, rss, f in samples if t >= detect_end]
    peak = max(run["peak_hwm_mib"], run["peak_rusage_mib"])
    case_bytes = sum(parts.values())
    per_hour = 3600 / seconds
    report.print(f"## Memory and case size: PETS09-S2L1 looped {args.loops} times as one input "
                 f"({total} frames, {seconds / 60:.1f} min of footage), stride {args.stride}\n")
    report.print(f"Whole process `xreid index build --video`: {run['wall_s']:.0f} s wall "
                 f"({total / run['wall_s']:.1f} frames / s), {len(samples)} memory samples.")
    report.table(["measure", "value"], [
        ["peak resident memory (VmHWM)", f"{peak:.0f} MiB"],
        ["resident while detecting, after the first 10 % of frames: first / last sample",
         f"{line.get('first_mib', float('nan')):.0f} / {line.get('last_mib', float('nan')):.0f} MiB"],
        ["... min / max", f"{line.get('min_mib', float('nan')):.0f} / {line.get('max_mib', float('nan')):.0f} MiB"],
        ["... slope of a least-squares line", f"{line.get('mib_per_hour', float('nan')):.0f} MiB per hour of footage"],
        ["largest while detecting", f"{max(during, default=float('nan')):.0f} MiB"],
        ["largest at the end of the video (sightings, embedding, key frames, writing)",
         f"{max(after, default=float('nan')):.0f} MiB ({run['wall_s'] - detect_end:.0f} s)"],
        ["case size", f"{case_bytes / 2**20:.1f} MiB = {case_bytes * per_hour / 2**30:.2f} GiB per hour of footage"],
        *[[f"... {k}", f"{v / 2**20:.1f} MiB = {v * per_hour / 2**30:.2f} GiB per hour"] for k, v in parts.items()],
    ])
    projected = line.get("last_mib", peak) + line.get("mib_per_hour", 0.0) * max(0.0, 1 - seconds / 3600)
    report.print(f"\nResident memory projected to one hour of footage along the measured slope: {projected:.0f} MiB "
                 f"(measured over {seconds / 60:.1f} min; the peak at the end of the video comes on top of it: "
                 f"{max(after, default=0.0) - max(during, default=0.0):+.0f} MiB here).")
    # a coarse trace for the record: resident memory every tenth of the footage
    trace = []
    for k in range(1, 11):
        at = [rss for _, rss, f in samples if f >= k * total / 10]
        if at:
            trace.append([f"{k * seconds / 600:.1f}", f"{at[0]:.0f}"])
    report.print("")
    report.table(["minutes of footage done", "resident MiB"], trace)
    report.save({"loops": args.loops, "stride": args.stride, "frames": total, "footage_s": seconds, **run,
                 "slope": line, "during_max_mib": max(during, default=None), "after_max_mib": max(after, default=None),
                 "case_bytes": case_bytes, "case_parts": parts, "case_gib_per_hour": case_bytes * per_hour / 2**30,
                 "projected_hour_mib": projected,
                 "trace": [(round(t, 1), round(rss, 1), f) for t, rss, f in samples[:: max(1, len(samples) // 400)]]})


if __name__ == "__main__":
    main()
