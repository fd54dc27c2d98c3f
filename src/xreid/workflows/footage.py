"""``xreid index build --video``: footage -> detections -> tracks -> sightings in a case.

Per video (``xreid.data.video``): every ``stride``-th frame goes through the person detector
(``xreid.models.detector``), the boxes at or above ``confidence`` through ByteTrack (the
``trackers`` package), and each detection of a track is scored as a crop
(``xreid.explain.sightings.crop_quality``); a track keeps its best crops in memory (JPEG) and the
frame of its best crop, with the box drawn, as its key frame. At the end of the video, tracks
shorter than ``min_track_frames`` detections are dropped, the kept crops are embedded, tracks broken
by occlusion or by leaving and coming back are linked (``link_tracks``), and each linked group
becomes one **sighting**: one row of the gallery index (``xreid.index.gallery``) whose embedding is
the mean of its best crops' normalised embeddings, with camera, start time, and string fields for
the video, frames and time span; its crops, key frame and thumbnail are files in the case.

Case layout added to the index folder::

    footage/VIDEO_ID/chunk-NNNNNN.npz   detections and crop candidates of CHUNK frames (committed chunks)
    footage/VIDEO_ID/tracks.npz         boxes of every sighting per frame (MOT export, timeline)
    footage/VIDEO_ID/files.json         size and SHA-256 of the video's files (``xreid index check``)
    footage/VIDEO_ID/video.json         the video, its camera / start and where they came from, problems,
                                        and 'done' once its sightings are committed
    sightings/VIDEO_ID/SSSSS/crop-K.jpg, keyframe.jpg   what each sighting shows

Resuming. Each chunk file is written atomically when its frames are done. A resumed build replays
the tracker over the committed chunks' detections (ByteTrack is deterministic, so track ids are the
same), takes their crop candidates, and goes on detecting from the first frame not committed. A
video whose ``video.json`` says done is skipped. Nothing committed is recomputed.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xreid.data.video import Footage, FootageError, ReadStats, list_footage, read_frames
from xreid.explain.query_check import check_query
from xreid.explain.sightings import (MIN_CROP_GAP, LinkParams, TrackEnds, choose_crops, crop_quality, link_tracks,
                                     mean_embedding, occluded_fraction, split_points, touches_border)
from xreid.index.gallery import THUMB_HEIGHT, IndexWriter, Rows
from xreid.index.metadata import format_time
from xreid.index.sightings import FILES, FOOTAGE, SIGHTINGS, footage_checks
from xreid.io import atomic_write, write_json

log = logging.getLogger(__name__)

KEYFRAME_WIDTH = 640
#: sampled embeddings are held (and committed) as half floats: they are held until the video ends, and
#: only their cosines matter (splitting at 0.55, linking at 0.9), which float16 keeps to about 1e-4
SAMPLE_DTYPE = np.float16
#: crop candidates are kept per block of this many frames of a track, the best CROPS_PER_BLOCK each
CROP_BLOCK, CROPS_PER_BLOCK = 40, 2


@dataclass
class FootageOptions:
    """How footage becomes sightings (defaults chosen on frames 1-400 of PETS09-S2L1; the similarity thresholds
    with the bundled model, whose cosine scale they are on)."""

    confidence: float = 0.1  # detections at or above this go to the tracker (its low-score stage)
    stride: int = 1  # detect on every stride-th frame
    activation: float = 0.5  # ByteTrack: a new track needs a detection this confident
    high: float = 0.5  # ByteTrack: first-stage (high-confidence) threshold
    lost_seconds: float = 1.0  # ByteTrack: how long a lost track is kept for re-association
    min_track_frames: int = 5  # tracks with fewer detections are dropped (mostly false detections)
    crops: int = 5  # best crops kept per sighting
    sample_every: int = 4  # embed every n-th clean detection of a track (for splitting swapped tracks and linking)
    max_sample_occlusion: float = 0.3  # detections more hidden than this are not sampled
    split: bool = True
    split_window: int = 8  # samples averaged on each side of a candidate split
    split_similarity: float = 0.2  # a track whose two sides are less similar than this is split (bundled model's scale)
    chunk_frames: int = 500  # frames per committed chunk
    link: bool = True
    link_params: LinkParams = field(default_factory=LinkParams)
    fps: float | None = None  # frame rate of a folder of frame images

    def tracker(self, fps: float):
        from trackers import ByteTrackTracker

        rate = fps / self.stride
        return ByteTrackTracker(frame_rate=rate, track_activation_threshold=self.activation,
                                high_conf_det_threshold=self.high, lost_track_buffer=max(1, round(30 * self.lost_seconds)))

    def identity(self) -> dict:
        d = asdict(self)
        d.pop("chunk_frames")
        return json.loads(json.dumps(d))


@dataclass
class Crop:
    frame: int
    box: np.ndarray  # x0, y0, x1, y1, conf
    quality: float
    measures: tuple[float, float, float, float]  # contrast, sharpness, uniform rows, occluded
    jpeg: bytes


@dataclass
class Track:
    """One ByteTrack track: its boxes per frame and its best crop candidates."""

    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)
    samples: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame, embedding)
    touched: bool = False  # changed in the current chunk


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _decode(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def keyframe_image(frame: np.ndarray, box: np.ndarray, width: int = KEYFRAME_WIDTH) -> bytes:
    """A JPEG of ``frame`` scaled to ``width`` pixels wide with ``box`` drawn on it."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    s = min(1.0, width / w)
    img = Image.fromarray(frame).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    x0, y0, x1, y1 = (float(v) * s for v in box[:4])
    ImageDraw.Draw(img).rectangle([x0, y0, x1, y1], outline=(255, 40, 40), width=3)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def thumbnail_bytes(rgb: np.ndarray, height: int = THUMB_HEIGHT) -> bytes:
    from PIL import Image

    h, w = rgb.shape[:2]
    buf = io.BytesIO()
    Image.fromarray(rgb).resize((max(1, round(w * height / h)), height), Image.BILINEAR).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The box in whole pixels inside the frame; None when under 8 x 16 pixels (no usable crop)."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box[:4])
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return None if x1 - x0 < 8 or y1 - y0 < 16 else (x0, y0, x1, y1)


class VideoTracker:
    """Detections -> ByteTrack -> tracks with crop candidates, one video; resumable by chunks."""

    def __init__(self, footage: Footage, opts: FootageOptions, embed=None):
        self.footage, self.opts, self.embed = footage, opts, embed
        self.tracker = opts.tracker(footage.fps or 10.0)
        self.tracks: dict[int, Track] = {}
        self.chunk_dets: list[tuple[int, np.ndarray]] = []
        self.chunk_samples: list[tuple[int, int, np.ndarray]] = []  # (track, frame, embedding) of this chunk
        self.pending: list[tuple[int, int, np.ndarray]] = []  # (track, frame, crop) waiting to be embedded
        self.chunk_first = 1
        self.last_frame = 0  # the last frame read (detected or not)

    def step(self, n: int, dets: np.ndarray, frame: np.ndarray | None) -> None:
        """Frame ``n``'s detections (``k x 5``) through the tracker; with the frame's pixels, score
        the crops of tracked boxes and keep the best."""
        import supervision as sv

        self.chunk_dets.append((n, dets))
        det = sv.Detections(xyxy=dets[:, :4].astype(np.float64), confidence=dets[:, 4].astype(np.float64),
                            class_id=np.zeros(len(dets), int))
        out = self.tracker.update(det)
        ids = np.asarray(out.tracker_id, int)
        keep = ids >= 0
        boxes = np.concatenate([out.xyxy[keep], out.confidence[keep, None]], axis=1).astype(np.float32)
        ids = ids[keep]
        occ = occluded_fraction(boxes[:, :4]) if frame is not None else None
        for k, (tid, box) in enumerate(zip(ids.tolist(), boxes)):
            t = self.tracks.setdefault(tid, Track())
            t.frames.append(n)
            t.boxes.append(box)
            t.touched = True
            if frame is not None:
                pixels = pixel_box(box, frame.shape[1], frame.shape[0])
                if pixels is None:
                    continue
                self._consider_crop(t, n, box, pixels, float(occ[k]), frame)
                if (self.embed is not None and (len(t.frames) - 1) % self.opts.sample_every == 0
                        and occ[k] <= self.opts.max_sample_occlusion):
                    x0, y0, x1, y1 = pixels
                    self.pending.append((tid, n, frame[y0:y1, x0:x1].copy()))
                    if len(self.pending) >= 32:
                        self.flush_samples()
        if len(self.pending) >= 32:
            self.flush_samples()

    def flush_samples(self) -> None:
        """Embed the sampled crops waiting (in batches, as they come)."""
        if not self.pending:
            return
        vectors = np.asarray(self.embed([c for _, _, c in self.pending])).astype(SAMPLE_DTYPE)
        for (tid, n, _), v in zip(self.pending, vectors):
            self.tracks[tid].samples.append((n, v))
            self.chunk_samples.append((tid, n, v))
        self.pending = []

    def _consider_crop(self, t: Track, n: int, box: np.ndarray, pixels: tuple[int, int, int, int], occluded: float,
                       frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = pixels
        border = touches_border(box, w, h)
        # cheap part first: a crop that cannot enter the kept set is not measured
        upper = crop_quality(float(box[4]), y1 - y0, occluded, border, True)
        block = n // CROP_BLOCK
        mine = [c for c in t.crops if c.frame // CROP_BLOCK == block]
        near = [c for c in mine if abs(c.frame - n) < MIN_CROP_GAP]
        if len(mine) >= CROPS_PER_BLOCK and upper <= min(c.quality for c in mine) and not near:
            return
        if near and upper <= max(c.quality for c in near):
            return
        crop = frame[y0:y1, x0:x1]
        check = check_query(crop)
        q = crop_quality(float(box[4]), y1 - y0, occluded, border, check.usable)
        mine.append(Crop(n, box.copy(), q, (check.contrast, check.sharpness, check.uniform_rows, occluded),
                         _jpeg(crop)))
        # candidates: the best CROPS_PER_BLOCK of each block of frames (the final choice is per sighting)
        chosen = choose_crops(np.array([c.frame for c in mine]), np.array([c.quality for c in mine]), CROPS_PER_BLOCK)
        t.crops = [c for c in t.crops if c.frame // CROP_BLOCK != block] + [mine[i] for i in sorted(chosen)]

    # -- chunks --

    def chunk_arrays(self) -> dict[str, np.ndarray]:
        """The current chunk (detections of its frames, crop candidates and key frames of the
        tracks it touched) as arrays for an .npz (no pickled objects)."""
        frames = np.array([n for n, d in self.chunk_dets for _ in range(max(1, len(d)))], np.int64)
        boxes = np.concatenate([d if len(d) else np.full((1, 5), np.nan, np.float32) for _, d in self.chunk_dets]) \
            if self.chunk_dets else np.zeros((0, 5), np.float32)
        self.flush_samples()
        cutoff = self.crop_cutoff()
        crop_rows, blobs = [], []
        for tid, t in self.tracks.items():
            if not t.touched:
                continue
            for c in (c for c in t.crops if c.frame >= cutoff):
                crop_rows.append([tid, c.frame, *c.box.tolist(), c.quality, *c.measures])
                blobs.append(c.jpeg)
        touched = np.array([tid for tid, t in self.tracks.items() if t.touched], np.int64)
        dim = len(self.chunk_samples[0][2]) if self.chunk_samples else 0
        return {"sample_track": np.array([s[0] for s in self.chunk_samples], np.int64),
                "sample_frame": np.array([s[1] for s in self.chunk_samples], np.int64),
                "sample_vec": np.array([s[2] for s in self.chunk_samples], SAMPLE_DTYPE).reshape(len(self.chunk_samples), dim),
                "crop_cutoff": np.array(cutoff, np.int64),
                "det_frame": frames, "det_box": boxes.astype(np.float32), "touched": touched,
                "crop": np.array(crop_rows, np.float64).reshape(-1, 12),
                **_pack("crop_jpeg", blobs)}

    def crop_cutoff(self) -> int:
        """Crop candidates from this frame on may have changed in the current chunk."""
        return (self.chunk_first // CROP_BLOCK) * CROP_BLOCK

    def end_chunk(self) -> None:
        if self.chunk_dets:
            self.chunk_first = self.chunk_dets[-1][0] + 1
        self.chunk_dets, self.chunk_samples = [], []
        for t in self.tracks.values():
            t.touched = False

    def replay(self, data: dict[str, np.ndarray]) -> int:
        """Run the tracker over a committed chunk's detections and take its crops; returns its last frame."""
        frames, boxes = data["det_frame"], data["det_box"]
        last = 0
        for n in np.unique(frames).tolist():
            d = boxes[frames == n]
            self.step(int(n), d[~np.isnan(d[:, 0])], None)
            last = int(n)
        crops, blobs = data["crop"], _unpack(data, "crop_jpeg")
        cutoff = int(data["crop_cutoff"])
        for tid in data["touched"].tolist():
            if tid in self.tracks:
                self.tracks[tid].crops = [c for c in self.tracks[tid].crops if c.frame < cutoff]
        for tid, n, v in zip(data["sample_track"].tolist(), data["sample_frame"].tolist(),
                             data["sample_vec"].astype(SAMPLE_DTYPE)):
            self.tracks.setdefault(int(tid), Track()).samples.append((int(n), v))
        for row, blob in zip(crops, blobs):
            t = self.tracks.setdefault(int(row[0]), Track())
            t.crops.append(Crop(int(row[1]), row[2:7].astype(np.float32), float(row[7]), tuple(row[8:12].tolist()),
                                blob))
        self.end_chunk()
        return last


def _pack(name: str, blobs: list[bytes]) -> dict[str, np.ndarray]:
    lengths = np.array([len(b) for b in blobs], np.int64)
    return {name: np.frombuffer(b"".join(blobs), np.uint8), f"{name}_len": lengths}


def _unpack(data: dict[str, np.ndarray], name: str) -> list[bytes]:
    raw, lengths = data[name].tobytes(), data[f"{name}_len"]
    ends = np.cumsum(lengths)
    return [raw[e - n:e] for e, n in zip(ends.tolist(), lengths.tolist())]


@dataclass
class Sighting:
    """One person's continuous presence in one video (one or more linked tracks)."""

    tracks: list[int]
    frames: np.ndarray
    boxes: np.ndarray  # n x 5
    crops: list[Crop]
    embedding: np.ndarray
    keyframe: bytes = b""  # the best crop's frame, scaled, with its box drawn
    frame: bytes = b""  # the same frame at full size, clean (a query box may be drawn on it)


@dataclass
class Piece:
    """A track, or the part of one between two splits."""

    frames: list[int]
    boxes: list[np.ndarray]
    crops: list[Crop]
    samples: list[np.ndarray]
    track: int


def track_pieces(tid: int, t: Track, opts: FootageOptions) -> list[Piece]:
    """The track cut where its sampled embeddings say it holds two people (``split_points``)."""
    cuts: list[int] = []
    if opts.split and len(t.samples) >= 2 * max(2, opts.split_window // 2):
        idx = split_points(np.stack([v for _, v in t.samples]), opts.split_window, opts.split_similarity,
                           max(2, opts.split_window // 2))
        cuts = [t.samples[i][0] for i in idx]
    bounds = [min(t.frames)] + cuts + [max(t.frames) + 1]
    frames = np.array(t.frames)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        keep = np.flatnonzero((frames >= lo) & (frames < hi))
        if not len(keep):
            continue
        out.append(Piece([t.frames[i] for i in keep], [t.boxes[i] for i in keep],
                         [c for c in t.crops if lo <= c.frame < hi], [v for n, v in t.samples if lo <= n < hi], tid))
    return out


def merge_pieces(parts: list[tuple[list[int], list[np.ndarray]]]) -> tuple[np.ndarray, np.ndarray]:
    """Frames and boxes of linked pieces (in start order) as one sequence; where two overlap, the
    frames from the later piece's start on are the later piece's."""
    frames: list[int] = []
    boxes: list[np.ndarray] = []
    for fr, bx in parts:
        cut = int(np.searchsorted(np.array(frames, np.int64), fr[0])) if frames else 0
        frames, boxes = frames[:cut] + list(fr), boxes[:cut] + list(bx)
    return np.array(frames, np.int64), np.stack(boxes)


def make_sightings(vt: VideoTracker, embed, opts: FootageOptions) -> list[Sighting]:
    """Tracks -> sightings: drop short tracks, split swapped ones, embed, link, choose crops."""
    fps = vt.footage.fps or 10.0
    pieces = [p for tid, t in sorted(vt.tracks.items()) if len(t.frames) >= opts.min_track_frames and t.crops
              for p in track_pieces(tid, t, opts)]
    pieces = [p for p in pieces if p.crops]
    if not pieces:
        return []
    # every piece's best crops are embedded: they make the sighting embedding (and link pieces without samples)
    best = [choose_crops(np.array([c.frame for c in p.crops]), np.array([c.quality for c in p.crops]), opts.crops)
            for p in pieces]
    all_crops = [c for p, b in zip(pieces, best) for c in (p.crops[i] for i in b)]
    vectors = embed([_decode(c.jpeg) for c in all_crops])
    vec_of = {id(c): v for c, v in zip(all_crops, vectors)}
    w, h = vt.footage.width or 1 << 30, vt.footage.height or 1 << 30
    ends = []
    for p, b in zip(pieces, best):
        rows = p.samples or [vec_of[id(p.crops[i])] for i in b]
        ends.append(TrackEnds(p.frames[0], p.frames[-1], p.boxes[0], p.boxes[-1], mean_embedding(np.stack(rows)),
                              touches_border(p.boxes[0], w, h, 12), touches_border(p.boxes[-1], w, h, 12)))
    labels = link_tracks(ends, fps, opts.link_params) if opts.link else list(range(len(pieces)))
    out = []
    for group in sorted(set(labels)):
        members = sorted((i for i in range(len(pieces)) if labels[i] == group), key=lambda i: pieces[i].frames[0])
        frames, boxes = merge_pieces([(pieces[m].frames, pieces[m].boxes) for m in members])
        crops = [pieces[m].crops[i] for m in members for i in best[m]]
        chosen = [crops[i] for i in choose_crops(np.array([c.frame for c in crops]),
                                                 np.array([c.quality for c in crops]), opts.crops)]
        out.append(Sighting(sorted({pieces[m].track for m in members}), frames, boxes, chosen,
                            mean_embedding(np.stack([vec_of[id(c)] for c in chosen]))))
    out.sort(key=lambda s: (int(s.frames[0]), s.tracks[0]))
    return out


@dataclass
class FootageReport:
    case: Path
    videos: list[dict] = field(default_factory=list)  # per video: path, camera, start, sightings, frames, problems
    added: int = 0
    count: int = 0
    skipped: list[str] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0  # wall time


def _video_dir(case: Path, f: Footage) -> Path:
    return case / FOOTAGE / f.video_id


def _chunks(folder: Path) -> list[Path]:
    return sorted(folder.glob("chunk-*.npz"))


def process_video(f: Footage, detector, opts: FootageOptions, case: Path, bar=None, embed=None) -> VideoTracker:
    """Detect and track one video, committing a chunk every ``opts.chunk_frames`` frames; resumes
    after the last committed chunk. Problems met while reading go to ``f.problems``."""
    folder = _video_dir(case, f)
    folder.mkdir(parents=True, exist_ok=True)
    vt = VideoTracker(f, opts, embed)
    last = 0
    for path in _chunks(folder):
        try:
            with np.load(path, allow_pickle=False) as data:
                last = vt.replay({k: data[k] for k in data.files})
        except (OSError, ValueError, KeyError) as exc:  # a damaged chunk and those after it are redone
            log.warning("%s: unreadable chunk (%s); detecting its frames again", path, exc)
            for later in _chunks(folder):
                if later.name >= path.name:
                    later.unlink()
            break
    if bar is not None and last:
        bar.update(last)
    stats = ReadStats()
    seq = len(_chunks(folder))
    started = time.perf_counter()
    done = 0
    in_chunk = 0
    vt.last_frame = last
    for n, frame in read_frames(f, opts.stride, first=last + 1, stats=stats):
        vt.last_frame = n
        if frame is not None:
            dets = detector.detect(frame, opts.confidence)
            vt.step(n, dets, frame)
        in_chunk += 1
        done += 1
        if bar is not None:
            bar.update(1)
            if done % 25 == 0:
                el = time.perf_counter() - started
                bar.set_postfix_str(f"{n / (f.fps or 10):.0f} s of footage, {done / max(el, 1e-9):.1f} frames/s")
        if in_chunk >= opts.chunk_frames:
            _commit_chunk(folder, seq, vt)
            seq, in_chunk = seq + 1, 0
    if vt.chunk_dets:
        _commit_chunk(folder, seq, vt)
    f.problems += stats.problems
    return vt


def _commit_chunk(folder: Path, seq: int, vt: VideoTracker) -> None:
    arrays = vt.chunk_arrays()
    atomic_write(folder / f"chunk-{seq:06d}.npz", lambda fh: np.savez(fh, **arrays))
    vt.end_chunk()


def draw_keyframes(f: Footage, sightings: list[Sighting]) -> None:
    """Each sighting's key frame: the frame of its best crop with the box drawn (and the clean frame,
    for drawing a query box on it), read in one more pass over the video that converts only those
    frames."""
    wanted: dict[int, list[Sighting]] = {}
    for s in sightings:
        if s.crops:
            wanted.setdefault(s.crops[0].frame, []).append(s)
    if not wanted:
        return
    try:
        for n, frame in read_frames(f, only=set(wanted)):
            for s in wanted.get(n, []) if frame is not None else []:
                s.keyframe = keyframe_image(frame, s.crops[0].box)
                s.frame = _jpeg(frame)
            if n >= max(wanted):
                break
    except FootageError as exc:
        log.warning("%s; key frames missing", exc)


def _write_sightings(case: Path, f: Footage, sightings: list[Sighting], head, writer: IndexWriter,
                     detector_name: str) -> int:
    """The sightings of one video as rows of the index, their crops and key frames as files."""
    if not sightings:
        return 0
    fps = f.fps or 10.0
    base = case / SIGHTINGS / f.video_id
    keys, fields, times, thumbs = [], [], [], []
    emb = np.stack([s.embedding for s in sightings])
    probs = head.calibrated(emb)
    track_rows = []
    for i, s in enumerate(sightings):
        folder = base / f"{i:05d}"
        for k, c in enumerate(s.crops):
            atomic_write(folder / f"crop-{k}.jpg", lambda fh, b=c.jpeg: fh.write(b))
        if s.keyframe:
            atomic_write(folder / "keyframe.jpg", lambda fh, b=s.keyframe: fh.write(b))
            atomic_write(folder / "frame.jpg", lambda fh, b=s.frame: fh.write(b))
        write_json(folder / "crops.json", [{"frame": c.frame, "box": [round(float(v), 1) for v in c.box[:4]],
                                            "confidence": round(float(c.box[4]), 4), "quality": round(c.quality, 4),
                                            "contrast": round(c.measures[0], 2), "sharpness": round(c.measures[1], 4),
                                            "uniform_rows": round(c.measures[2], 4),
                                            "occluded": round(c.measures[3], 4)} for c in s.crops])
        first, last = int(s.frames[0]), int(s.frames[-1])
        t0, t1 = (first - 1) / fps, (last - 1) / fps
        keys.append(f"{SIGHTINGS}/{f.video_id}/{i:05d}/crop-0.jpg")
        fields.append({"camera": f.camera, "kind": "sighting", "video": f.video_id, "sighting": str(i),
                       "frame_start": str(first), "frame_end": str(last), "offset_start": f"{t0:.2f}",
                       "offset_end": f"{t1:.2f}", "end": format_time(f.start + t1) or "",
                       "crops": str(len(s.crops)), "tracks": " ".join(str(t) for t in s.tracks),
                       "detector": detector_name})
        times.append(f.start + t0 if not math.isnan(f.start) else math.nan)
        thumbs.append(thumbnail_bytes(_decode(s.crops[0].jpeg)))
        for n, b in zip(s.frames.tolist(), s.boxes):
            track_rows.append([n, i + 1, *b.tolist()])
    tracks = np.array(track_rows, np.float64).reshape(-1, 7)
    atomic_write(_video_dir(case, f) / "tracks.npz", lambda fh: np.savez(fh, rows=tracks))
    if all(k in writer.keys for k in keys):  # committed by a run stopped before it marked the video done
        return len(sightings)
    writer.commit(Rows(keys, emb, probs, fields, np.array(times, np.float64), thumbs))
    return len(sightings)


def _video_record(f: Footage, **extra) -> dict:
    return {"path": str(f.path), "video_id": f.video_id, "camera": f.camera, "camera_from": f.camera_from,
            "start": format_time(f.start), "start_from": f.start_from, "fps": f.fps, "frames": f.frames,
            "width": f.width, "height": f.height, "problems": list(f.problems), **extra}


def crop_embedder(embedder):
    """``embed(crops) -> vectors``: RGB crops of any size through ``embedder``, 64 at a time (one
    video's crops: ``embedder.for_camera`` of its camera, when the model holds camera statistics)."""
    def embed(crops: list[np.ndarray]) -> np.ndarray:
        from xreid.data.transforms import resize_rgb

        return np.concatenate([embedder.embed_arrays([resize_rgb(c, embedder.preprocess.size) for c in crops[i:i + 64]])
                               for i in range(0, len(crops), 64)])

    return embed


@dataclass
class VideoResult:
    """What detecting, tracking and sighting one video gives, before anything joins the index."""

    footage: Footage  # with the problems met on the way
    sightings: list[Sighting]
    frames: int  # the last frame read


def track_video(f: Footage, detector, opts: FootageOptions, case: Path, embed, bar=None) -> VideoResult:
    """One video to sightings (``process_video``, ``make_sightings``, key frames); its chunks are
    committed in ``case`` as it goes, its sightings are not written (``_commit_video`` does that,
    once, in the process holding the index writer)."""
    try:
        vt = process_video(f, detector, opts, case, bar, embed)
    except FootageError as exc:
        f.problems.append(exc.problem)
        vt = None
    sightings = make_sightings(vt, embed, opts) if vt is not None else []
    draw_keyframes(f, sightings)
    if vt is not None and not sightings:
        f.problems.append("no person detected" if not vt.tracks else "no person tracked long enough")
    return VideoResult(f, sightings, vt.last_frame if vt else 0)


class VideoWorker:
    """A Ray actor tracking whole videos (``index_footage(..., ray=...)``): ``make()`` loads the
    embedder and the detector once per actor; ``run`` is ``track_video`` for one video."""

    def __init__(self, make, opts: FootageOptions, case: str):
        from xreid.workflows.loading import claim_ray_cpus

        claim_ray_cpus()  # the models on the CPUs Ray gave this actor
        self.embedder, self.detector = make()
        self.opts, self.case = opts, Path(case)

    def run(self, f: Footage) -> VideoResult:
        return track_video(f, self.detector, self.opts, self.case, crop_embedder(self.embedder.for_camera(f.camera)))


def ray_videos(videos: list[Footage], opts: FootageOptions, case: Path, make, concurrency: int = 2,
               address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0):
    """``track_video``'s results for ``videos``, in their order, computed one video per task on
    ``concurrency`` Ray actors (``VideoWorker``; ``address`` as ``xreid.index.ray_sharded.connect``).
    Every node must see the videos and the case at the same paths (the actors read the videos and
    commit chunks in the case). A killed actor is restarted and its video retried, resuming from the
    chunks it committed; the caller writes each result's sightings once."""
    import ray
    from ray.util import ActorPool

    from xreid.index.ray_sharded import connect

    connect(address)
    actor = ray.remote(VideoWorker).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=-1,
                                           max_task_retries=-1)
    pool = ActorPool([actor.remote(make, opts, str(case)) for _ in range(max(1, min(concurrency, len(videos))))])
    yield from pool.map(lambda a, f: a.run.remote(f), videos)


def _commit_video(case: Path, result: VideoResult, head, writer: IndexWriter, detector_name: str,
                  report: "FootageReport", say) -> None:
    """A tracked video's sightings into the index (written once: keys the index holds are not
    added again), its record marked done."""
    f = result.footage
    n = _write_sightings(case, f, result.sightings, head, writer, detector_name)
    for p in f.problems:
        report.skipped.append(f"{f.path}: {p}")
        say(f"{f.path}: {p}")
    record = _video_record(f, done=True, sightings=n, frames_read=result.frames)
    write_json(_video_dir(case, f) / FILES, footage_checks(case, f.video_id))
    write_json(_video_dir(case, f) / "video.json", record)
    report.videos.append(record)
    report.added += n


def index_footage(embedder, head, detector, video: str | Path, case: Path, camera: str | None = None,
                  start: str | None = None, opts: FootageOptions | None = None, head_name: str = "",
                  append: bool = False, progress: bool = True, say=print, ray: dict | None = None,
                  scan_floor: float | None = None) -> FootageReport:
    """Index the footage at ``video`` into the case ``case`` (a new or interrupted build, or with
    ``append`` a finished one; ``scan_floor``: the ANN's, as ``IndexWriter.update_ann`` takes it). Each video's camera / start and where they came from are stated
    with ``say``; videos that cannot be read or show nobody are reported and skipped. ``ray``: track
    the videos on a Ray cluster, one video per task (``ray_videos``' options, with ``make``
    returning the embedder and the detector); the sightings are the same as in one process."""
    from tqdm import tqdm

    from xreid.binding import head_binding

    opts = opts or FootageOptions()
    if opts.stride < 1:
        raise ValueError(f"--stride must be at least 1 (got {opts.stride})")
    if not 0.0 < opts.confidence <= 1.0:
        raise ValueError(f"--confidence must be in (0, 1] (got {opts.confidence})")
    head.check_model(embedder, where="attribute head")
    videos = list_footage(video, camera, start, opts.fps)
    report = FootageReport(Path(case))
    began = time.perf_counter()
    open_writer = (IndexWriter.append(case, embedder.identity(), head.names, head_binding(head, head_name)) if append
                   else IndexWriter.create(case, embedder.identity(), head.names, head_binding(head, head_name),
                                           head.embedding_dim, source=str(video)))
    with open_writer as writer:
        settings = {"detector": detector.identity(), "options": opts.identity()}
        known = writer.manifest.get("footage")
        if known and known != settings and not append:
            raise ValueError(f"{case}: an interrupted build with other detector or tracking options "
                             f"({known}); rerun it with those options or delete {case}")
        if known != settings:
            writer._publish({**writer.manifest, "footage": settings})
        todo = []
        for f in videos:
            say(f.describe() if not f.problems else f"{f.path}: {'; '.join(f.problems)}")
            record_path = _video_dir(case, f) / "video.json"
            if record_path.is_file() and json.loads(record_path.read_text()).get("done"):
                say(f"{f.path}: already indexed, skipped")
                report.videos.append(json.loads(record_path.read_text()))
                continue
            if f.problems:  # not marked done: a later run tries the file again
                report.skipped.append(f"{f.path}: {'; '.join(f.problems)}")
                write_json(record_path, _video_record(f, done=False, sightings=0))
                continue
            if ray is not None:
                todo.append(f)
                continue
            bar = tqdm(total=f.frames or None, desc=f.path.name[:30], unit="frame", disable=not progress)
            try:
                result = track_video(f, detector, opts, case, crop_embedder(embedder.for_camera(f.camera)), bar)
            finally:
                bar.close()
            _commit_video(case, result, head, writer, detector.name, report, say)
        if todo:
            bar = tqdm(total=len(todo), desc="videos on Ray", unit="video", disable=not progress)
            try:
                for result in ray_videos(todo, opts, case, **ray):
                    _commit_video(case, result, head, writer, detector.name, report, say)
                    bar.update(1)
            finally:
                bar.close()
        manifest = writer.finish(scan_floor=scan_floor)
        report.count = manifest["count"]
    report.seconds = time.perf_counter() - began
    return report


def export_mot(case: str | Path, out: str | Path) -> list[Path]:
    """Write each indexed video's sightings in the MOTChallenge format (``frame,id,x,y,w,h,conf,-1,-1,-1``,
    frames from 1, one id per sighting) as ``OUT/VIDEO_ID.txt``; returns the files."""
    case, out = Path(case), Path(out)
    written = []
    for folder in sorted((case / FOOTAGE).glob("*/")):
        path = folder / "tracks.npz"
        if not path.is_file():
            continue
        with np.load(path, allow_pickle=False) as data:
            rows = data["rows"]
        rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
        lines = "".join(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4] - r[2]:.2f},{r[5] - r[3]:.2f},"
                        f"{r[6]:.4f},-1,-1,-1\n" for r in rows)
        target = out / f"{folder.name}.txt"
        atomic_write(target, lambda fh, t=lines: fh.write(t.encode()))
        written.append(target)
    return written


def case_timeline(case: str | Path, ids: list[int] | None = None) -> dict:
    """The timeline data of the case's sightings (``ids``: only those rows; default every sighting)."""
    from xreid.index.gallery import GalleryIndex
    from xreid.index.sightings import is_sighting_key, timeline

    index = GalleryIndex.open(case)
    chosen = range(len(index)) if ids is None else ids
    rows = [index.row(int(i), attributes=False) for i in chosen]
    return timeline([r for r in rows if is_sighting_key(r["path"])])


def export_timeline(case: str | Path, out: str | Path, ids: list[int] | None = None) -> dict:
    """Write the timeline of the case's sightings to ``out``: .html (page with the SVG), .json (the
    data) or .png (for printing). Returns the data."""
    from xreid.rendering.timeline import timeline_html, timeline_png

    out = Path(out)
    data = case_timeline(case, ids)
    suffix = out.suffix.lower()
    if suffix == ".json":
        write_json(out, data)
    elif suffix in (".html", ".htm"):
        atomic_write(out, lambda fh: fh.write(timeline_html(data, f"Sightings in {Path(case).name}").encode()))
    elif suffix == ".png":
        timeline_png(data, out, f"Sightings in {Path(case).name}")
    else:
        raise ValueError(f"{out}: the timeline is written as .html, .json or .png")
    return data
