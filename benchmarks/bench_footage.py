"""Footage -> sightings (``xreid index build --video``) on PETS09-S2L1.

    python benchmarks/bench_footage.py [--strides 1,2,3] [--out benchmarks/results/footage]

Needs ``SHARED/data/video/PETS09-S2L1.avi`` (795 frames, 768 x 576, 10 fps), its ground truth for
frames 1-400 and the detector ``person-detection-retail-0013`` in ``SHARED/models``. Every figure of
tracking and re-identification is on frames 1-400, the only frames with ground truth; the
thresholds of xreid's pipeline (ByteTrack settings, splitting and linking) were chosen on the same
frames, so these are development figures, not a held-out test.

1. Tracking (MOTA, IDF1 with ``motmetrics``, IoU >= 0.5, ground-truth boxes flagged 0 ignored with
   the tracker boxes matching them): the plain baseline, the detector on every frame and ByteTrack
   from ``trackers`` (detections > 0.1 passed in, activation and high-confidence thresholds 0.5,
   frame rate 10, the rest its defaults); then xreid's pipeline, the same detector and ByteTrack plus
   the re-id model (tracks split where their sampled embeddings say the tracker swapped two people,
   pieces linked across occlusions and exits), read back from the case with ``xreid index export --mot``.
2. Throughput: ``xreid index build --video`` on the whole video as a separate process, wall time
   from start to exit (model loading, decoding, detection, tracking, embedding, writing) and its
   peak memory; the same with ``--stride`` 2 and 3 (MOTA / IDF1 then scored on the frames detected).
3. Re-identification across time: each sighting of the stride-1 case that overlaps frames 1-400 is
   assigned the ground-truth person it overlaps most (IoU >= 0.5 frames); querying by one sighting,
   the others of that person must rank first: mAP over the sightings that have another of their
   person, with the case's model (the bundled one), with OMZ 0277 (the same crops, embedded by
   0277) and with a colour histogram of the same crops (HSV 8 x 4 x 4, Bhattacharyya-like cosine
   on square roots).
4. Memory and case size per hour of footage: extrapolated from the stride-1 run (an estimate: the
   part of the process that grows with footage is the crop candidates and sampled embeddings, of
   which the chunk files are a copy; the rest is fixed).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, Report, labelled_models, omz_model, parse, parser  # noqa: E402

VIDEO = SHARED / "data" / "video" / "PETS09-S2L1.avi"
GT = SHARED / "data" / "video" / "PETS09-S2L1-gt-dev.txt"
DETECTOR = SHARED / "models" / "openvino" / "person-detection-retail-0013" / "FP16" / "person-detection-retail-0013.xml"
GT_FRAMES = 400
DEFAULT_REID_MODELS = {"omz-0277": str(omz_model("person-reidentification-retail-0277"))}


def baseline(report: Report) -> dict:
    """Detector on every frame + ByteTrack with the issue's settings; scores on frames 1-400 and the
    frames per second of detection and tracking alone over the whole video."""
    import supervision as sv
    from trackers import ByteTrackTracker

    from xreid.data.video import list_footage, read_frames
    from xreid.evaluation.mot import mot_scores, read_mot
    from xreid.models.detector import Detector

    det = Detector(DETECTOR)
    f = list_footage(VIDEO)[0]
    tracker = ByteTrackTracker(frame_rate=10, track_activation_threshold=0.5, high_conf_det_threshold=0.5)
    rows, spent, frames = [], 0.0, 0
    cpu0 = time.process_time()
    for n, frame in read_frames(f):
        t0 = time.perf_counter()
        boxes = det.detect(frame, 0.1)
        out = tracker.update(sv.Detections(xyxy=boxes[:, :4].astype(float), confidence=boxes[:, 4].astype(float),
                                           class_id=np.zeros(len(boxes), int)))
        spent += time.perf_counter() - t0
        frames += 1
        for (x0, y0, x1, y1), c, t in zip(out.xyxy, out.confidence, out.tracker_id):
            if t >= 0:
                rows.append([n, t + 1, x0, y0, x1 - x0, y1 - y0, c])
    scores = mot_scores(read_mot(GT), np.array(rows), range(1, GT_FRAMES + 1))
    scores["fps_detect_track"] = frames / spent
    scores["cpu_s"] = time.process_time() - cpu0
    return scores


def run_build(case: Path, stride: int, model: str = "default") -> dict:
    """``xreid index build --video`` in its own process: wall seconds, peak RSS (MiB), case bytes."""
    cmd = [sys.executable, "-m", "xreid.cli", "index", "build", "--video", str(VIDEO), "--detector", str(DETECTOR),
           "--stride", str(stride), "--model", model, "--camera", "view1", "--start", "2009-03-01T10:00:00",
           "--out", str(case)]
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage0.ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = usage.ru_maxrss
    cpu = (usage.ru_utime + usage.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    size = sum(p.stat().st_size for p in case.rglob("*") if p.is_file())
    chunks = sum(p.stat().st_size for p in case.rglob("chunk-*.npz"))
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": max(peak, before) / 1024, "case_bytes": size,
            "chunk_bytes": chunks}


def case_tracks(case: Path) -> np.ndarray:
    from xreid.workflows.footage import export_mot

    with tempfile.TemporaryDirectory() as d:
        [path] = export_mot(case, d)
        from xreid.evaluation.mot import read_mot

        return read_mot(path)


def assign_people(tracks: np.ndarray, gt: np.ndarray) -> dict[int, int]:
    """Sighting id -> the ground-truth person it overlaps most (frames with IoU >= 0.5), frames 1-400."""
    from xreid.evaluation.mot import _motmetrics

    mm = _motmetrics()
    votes: dict[int, dict[int, int]] = {}
    for f in range(1, GT_FRAMES + 1):
        g = gt[(gt[:, 0] == f) & (gt[:, 6] != 0)]
        t = tracks[tracks[:, 0] == f]
        if not len(g) or not len(t):
            continue
        d = mm.distances.iou_matrix(g[:, 2:6], t[:, 2:6], max_iou=0.5)
        for j in range(len(t)):
            col = d[:, j]
            if np.all(np.isnan(col)):
                continue
            i = int(np.nanargmin(col))
            votes.setdefault(int(t[j, 1]), {}).setdefault(int(g[i, 1]), 0)
            votes[int(t[j, 1])][int(g[i, 1])] += 1
    return {s: max(v, key=v.get) for s, v in votes.items()}


def sighting_map(vectors: np.ndarray, people: np.ndarray) -> tuple[float, int]:
    """mAP (percent) of querying each sighting against the others; queries without another
    sighting of their person are left out. Returns (mAP, queries)."""
    from xreid.evaluation.metrics import average_precision

    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    aps = []
    for q in range(len(v)):
        others = np.array([i for i in range(len(v)) if i != q])
        match = people[others] == people[q]
        if not match.any():
            continue
        order = np.argsort(-(v[others] @ v[q]), kind="stable")
        aps.append(average_precision(match[order]))
    return (100 * float(np.mean(aps)) if aps else float("nan")), len(aps)


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    hsv = np.asarray(Image.fromarray(rgb).convert("HSV")).reshape(-1, 3).astype(int)
    idx = (hsv[:, 0] * 8 // 256) * 16 + (hsv[:, 1] * 4 // 256) * 4 + hsv[:, 2] * 4 // 256
    h = np.bincount(idx, minlength=128).astype(np.float64)
    return np.sqrt(h / h.sum())


def tracklets(case: Path) -> list:
    """The pieces of the stride-1 build before linking (tracks split where the tracker swapped two
    people, not joined): replayed from the case's committed chunks, no detection run again."""
    import shutil

    from xreid.data.video import list_footage
    from xreid.models.loading import load_embedder
    from xreid.workflows.footage import FOOTAGE, FootageOptions, make_sightings, process_video

    f = list_footage(VIDEO)[0]
    emb = load_embedder("default")

    def embed(crops):
        from xreid.data.transforms import resize_rgb

        return emb.embed_arrays([resize_rgb(c, emb.preprocess.size) for c in crops])

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / FOOTAGE / f.video_id
        target.mkdir(parents=True)
        for chunk in (case / FOOTAGE / f.video_id).glob("chunk-*.npz"):
            shutil.copy(chunk, target / chunk.name)
        vt = process_video(f, None, FootageOptions(), Path(tmp), embed=embed)
    return make_sightings(vt, embed, FootageOptions(link=False))


def reid_rows(items: list[tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]],
              models: dict[str, str] | None = None) -> dict:
    """mAP of querying by one sighting for the case's model (its stored sighting embedding), each
    model of ``models`` (label -> model spec; default OMZ 0277: the mean of its normalised
    embeddings of the same crops) and a colour histogram (mean over the same crops). ``items``:
    (frames, boxes, case embedding, crops) per sighting; only sightings overlapping a ground-truth
    person in frames 1-400."""
    from xreid.data.transforms import resize_rgb
    from xreid.evaluation.mot import read_mot
    from xreid.explain.sightings import mean_embedding
    from xreid.models.loading import load_embedder

    rows = np.array([[n, k + 1, *b[:4], 1.0] for k, (fr, bx, _, _) in enumerate(items) for n, b in zip(fr, bx)])
    rows[:, 4:6] -= rows[:, 2:4]  # x0, y0, x1, y1 -> x, y, w, h
    people = assign_people(rows, read_mot(GT))
    ids = [k for k in range(len(items)) if k + 1 in people]
    person = np.array([people[k + 1] for k in ids])
    out = {"sightings": len(ids), "people": int(len(set(person.tolist())))}
    out["bundled"] = sighting_map(np.stack([items[k][2] for k in ids]), person)
    for label, spec in (models or DEFAULT_REID_MODELS).items():
        m = load_embedder(spec)
        out[label] = sighting_map(np.stack([mean_embedding(m.embed_arrays(
            [resize_rgb(c, m.preprocess.size) for c in items[k][3]])) for k in ids]), person)
    out["colour-histogram"] = sighting_map(np.stack([np.mean([colour_histogram(c) for c in items[k][3]], axis=0)
                                                     for k in ids]), person)
    return out


def reid_across_time(case: Path, models: dict[str, str] | None = None) -> dict:
    """Re-identification across time on the case's sightings and on its tracklets (before linking)."""
    from xreid.data.images import load_image
    from xreid.index.gallery import GalleryIndex
    from xreid.workflows.footage import _decode

    index = GalleryIndex.open(case)
    tracks = case_tracks(case)
    items = []
    for i in range(len(index)):
        row = index.row(i, attributes=False)
        t = tracks[tracks[:, 1] == int(row["sighting"]) + 1]
        boxes = np.concatenate([t[:, 2:4], t[:, 2:4] + t[:, 4:6]], axis=1)
        folder = case / Path(row["path"]).parent
        items.append((t[:, 0].astype(int), boxes, index.vectors[i],
                      [load_image(p) for p in sorted(folder.glob("crop-*.jpg"))]))
    pieces = [(s.frames, s.boxes, s.embedding, [_decode(c.jpeg) for c in s.crops]) for s in tracklets(case)]
    return {"sightings": reid_rows(items, models), "tracklets": reid_rows(pieces, models)}


def main(argv=None) -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--strides", default="1,2,3")
    ap.add_argument("--reid-model", action="append", default=[], metavar="LABEL=MODEL",
                    help="also score re-identification across time with this model (e.g. a model adapted "
                         "with `xreid adapt` on the footage's case); repeatable; OMZ 0277 is always scored")
    ap.add_argument("--reid-only", type=Path, metavar="CASE",
                    help="skip tracking and throughput: score re-identification on this stride-1 case "
                         "(built with `xreid index build --video` from the same footage)")
    args = parse(ap, argv)
    models = {**DEFAULT_REID_MODELS, **labelled_models(args.reid_model, "--reid-model")}
    report = Report(args.out)
    for path in (VIDEO, GT, DETECTOR):
        if not path.is_file():
            sys.exit(f"{path}: not found (the benchmark needs the shared footage and detector)")
    from xreid.evaluation.mot import mot_scores, read_mot

    gt = read_mot(GT)
    figures: dict = {}
    if args.reid_only:
        report.progress(f"re-identification across time on {args.reid_only} ...")
        figures["reid"] = reid_across_time(args.reid_only, models)
        report_reid(report, figures, models)
        report.save(figures)
        return
    report.progress("baseline: detector + ByteTrack ...")
    figures["baseline"] = b = baseline(report)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stride in [int(s) for s in args.strides.split(",")]:
            report.progress(f"xreid index build --video, stride {stride} ...")
            case = Path(tmp) / f"case-{stride}"
            run = run_build(case, stride)
            frames = range(1, GT_FRAMES + 1, stride)
            run["scores"] = mot_scores(gt, case_tracks(case), frames)
            run["fps"] = 795 / run["wall_s"]
            runs[stride] = run
            if stride == 1:
                report.progress("re-identification across time ...")
                figures["reid"] = reid_across_time(case, models)
        figures["xreid"] = {str(k): v for k, v in runs.items()}
    report.print("## Tracking, frames 1-400 of PETS09-S2L1 (thresholds chosen on these frames)\n")
    rows = [["plain baseline: detector + ByteTrack", f"{b['MOTA']:.1f}", f"{b['IDF1']:.1f}", b["IDsw"], b["FP"], b["FN"],
             f"{b['fps_detect_track']:.1f} (detection + tracking only)"]]
    for stride, r in runs.items():
        s = r["scores"]
        rows.append([f"xreid index build --video, stride {stride}" + (" (scored on detected frames)" if stride > 1 else ""),
                     f"{s['MOTA']:.1f}", f"{s['IDF1']:.1f}", s["IDsw"], s["FP"], s["FN"],
                     f"{r['fps']:.1f} (whole process, 795 frames in {r['wall_s']:.0f} s)",
                     f"{r['cpu_s']:.0f} s ({795 / r['cpu_s']:.1f} frames per CPU-second)"])
    rows[0].append(f"{b['cpu_s']:.0f} s ({795 / b['cpu_s']:.1f} frames per CPU-second)")
    report.table(["pipeline", "MOTA", "IDF1", "ID sw.", "FP", "FN", "frames / s (wall)", "CPU time"], rows)
    r1 = runs.get(1)
    if r1:
        hour = 36000 / 795
        grow = r1["chunk_bytes"] * hour / 2**20
        report.print(f"\nstride 1: peak memory {r1['peak_rss_mib']:.0f} MiB for 79.5 s of footage; case "
                     f"{r1['case_bytes'] / 2**20:.1f} MiB ({r1['chunk_bytes'] / 2**20:.1f} MiB of it chunk files).")
        report.print(f"Estimate for one hour of this footage (x{hour:.0f}): case {r1['case_bytes'] * hour / 2**30:.2f} GiB; "
                     f"peak memory about {r1['peak_rss_mib'] + grow:.0f} MiB (the fixed part plus the crop candidates "
                     f"and samples held until the video ends, as large as the chunk files).")
        figures["hour_estimate"] = {"case_gib": r1["case_bytes"] * hour / 2**30,
                                    "peak_mib": r1["peak_rss_mib"] + grow}
    if "reid" in figures:
        report_reid(report, figures, models)
    report.save(figures)


def report_reid(report: Report, figures: dict, models: dict[str, str]) -> None:
    report.print("\n## Re-identification across time (frames 1-400): query by one sighting, find the person's "
                 "others\n")
    rows = []
    for what, label in (("sightings", "sightings (linked)"), ("tracklets", "tracklets (split, not linked)")):
        r = figures["reid"][what]
        for k in ("bundled", *models, "colour-histogram"):
            rows.append([f"{label}: {r['sightings']} of {r['people']} people", k, f"{r[k][0]:.1f}", r[k][1]])
    report.table(["set", "embedding", "mAP", "queries with another sighting of their person"], rows)


if __name__ == "__main__":
    main()
