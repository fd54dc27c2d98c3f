"""Footage: what ``xreid index build --video PATH`` reads, streamed frame by frame.

PATH is a video file (anything the FFmpeg inside PyAV decodes), a folder of videos, a folder of
frame images (one "video", frames in file-name order), or a CSV list of videos (``path`` column,
optional ``camera`` and ``time`` / ``start`` columns; paths relative to the CSV's folder).

Each video's camera and start time come from, in this order: the command's options, the CSV, the
container's ``creation_time`` tag; where none gives a start time the start is unknown (times are
then offsets from the video's first frame). Where each came from is kept (``Footage.camera_from``,
``start_from``) so the command can state it.

Frames are decoded one at a time and never held together: ``read_frames`` yields (frame number
counting from 1, RGB array) and converts only the frames asked for (``stride``), so a long video
costs one frame of memory. Problems are ``FootageError`` naming the file: a file that does not open
is skipped by the caller; a packet that fails to decode is counted as an unreadable frame and
skipped; a stream that ends before the frame count its header states is reported as truncated.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.data.images import ImageError, is_image_file, load_image
from xreid.index.metadata import parse_time

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".webm", ".wmv", ".flv",
                    ".3gp", ".mjpeg", ".h264", ".h265", ".asf")
#: frame rate assumed for a folder of frame images when no --fps is given
DEFAULT_IMAGE_FPS = 10.0
#: this many packets in a row that fail to decode end the video (it is corrupt, not a bad frame)
MAX_BAD_RUN = 50


class FootageError(ValueError):
    """Footage that cannot be read as asked, with the file and the problem in the message."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass
class Footage:
    """One video to index: its file (or folder of frames), camera, start time (seconds since
    1970 UTC, NaN = unknown) and where each came from ('option', 'csv', 'container', 'file name',
    'unknown')."""

    path: Path
    camera: str
    start: float = math.nan
    camera_from: str = "file name"
    start_from: str = "unknown"
    fps: float | None = None  # frames per second: from the container (or --fps for frame folders)
    frames: int | None = None  # frame count the container states (None: unknown)
    width: int = 0
    height: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def is_frame_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def video_id(self) -> str:
        """A stable name for the video inside a case: its stem and 8 hex digits of its absolute path."""
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:8]
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.path.stem or "frames")[:40]
        return f"{stem}-{digest}"

    def describe(self) -> str:
        start = "unknown (times are offsets from its first frame)" if math.isnan(self.start) else \
            _iso(self.start)
        return (f"{self.path}: camera {self.camera!r} (from {self.camera_from}), start {start} (from "
                f"{self.start_from}), {self.fps:g} fps" + (f", {self.frames} frames" if self.frames else "")
                + (f", {self.width}x{self.height}" if self.width else ""))


def _iso(seconds: float) -> str:
    from xreid.index.metadata import format_time

    return format_time(seconds) or "unknown"


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _frame_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: _natural(p.name))


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_footage(path: str | Path, camera: str | None = None, start: str | float | None = None,
                 fps: float | None = None) -> list[Footage]:
    """The videos at ``path`` (file, folder of videos, folder of frames or CSV list), probed, in
    order. ``camera`` / ``start`` (options) win over the CSV and the container. A video that cannot
    be opened is still listed, with its problem in ``problems`` (the caller reports and skips it)."""
    path = Path(path)
    try:
        start_option = parse_time(start) if start is not None and str(start) != "" else None
    except ValueError as exc:
        raise ValueError(f"--start: {exc}") from None
    if not path.exists():
        raise FileNotFoundError(f"{path}: footage not found (give a video file, a folder of videos or frames, "
                                f"or a CSV list)")
    rows: list[tuple[Path, str | None, float | None]]
    if path.is_file() and path.suffix.lower() == ".csv":
        rows = read_footage_csv(path)
    elif path.is_file():
        rows = [(path, None, None)]
    else:
        videos = sorted((p for p in path.iterdir() if p.is_file() and is_video_file(p)), key=lambda p: _natural(p.name))
        if videos:
            rows = [(p, None, None) for p in videos]
        elif _frame_images(path):
            rows = [(path, None, None)]
        else:
            raise FootageError(path, "folder holds no video files and no frame images")
    out = []
    for p, csv_camera, csv_start in rows:
        f = Footage(p, camera=p.stem if p.is_file() else p.name)
        if csv_camera:
            f.camera, f.camera_from = csv_camera, "csv"
        if camera:
            f.camera, f.camera_from = str(camera), "option"
        if csv_start is not None:
            f.start, f.start_from = csv_start, "csv"
        if start_option is not None:
            f.start, f.start_from = start_option, "option"
        probe(f, fps)
        out.append(f)
    return out


def read_footage_csv(path: Path) -> list[tuple[Path, str | None, float | None]]:
    """(video path, camera or None, start or None) per row of a footage CSV: header row with a
    ``path`` column, optional ``camera``/``cam`` and ``time``/``start``/``timestamp`` columns."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next((r for r in reader if any(c.strip() for c in r)), None)
        if header is None:
            raise FootageError(path, "empty list (a header row with a 'path' column is required)")
        names = [c.strip().lower() for c in header]
        if "path" not in names:
            raise FootageError(path, f"header row has no 'path' column (got: {', '.join(names)}); "
                                     f"e.g. path,camera,start")
        col = {role: next((i for i, n in enumerate(names) if n in aliases), None)
               for role, aliases in (("path", ("path",)), ("camera", ("camera", "cam")),
                                     ("start", ("start", "time", "timestamp", "start_time")))}
        rows = []
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            line = reader.line_num
            cell = (lambda role: row[col[role]].strip() if col[role] is not None and col[role] < len(row) else "")
            if not cell("path"):
                raise FootageError(path, f"line {line}: empty path")
            video = Path(cell("path")).expanduser()
            video = video if video.is_absolute() else path.parent / video
            start = None
            if cell("start"):
                try:
                    start = parse_time(cell("start"))
                except ValueError as exc:
                    raise FootageError(path, f"line {line}: {exc}") from None
            rows.append((video, cell("camera") or None, start))
    if not rows:
        raise FootageError(path, "lists no videos")
    return rows


def probe(f: Footage, fps: float | None = None) -> None:
    """Fill in frame rate, frame count, size and (when no option or CSV gave one) the container's
    creation time; a video that does not open gets a problem instead."""
    if f.is_frame_folder:
        images = _frame_images(f.path)
        f.fps, f.frames = float(fps or DEFAULT_IMAGE_FPS), len(images)
        if not images:
            f.problems.append("no frame images")
        else:
            try:
                first = load_image(images[0])
                f.height, f.width = first.shape[:2]
            except ImageError:
                pass
        return
    if not f.path.is_file():
        f.problems.append("file not found")
        return
    import av

    try:
        with av.open(str(f.path)) as container:
            if not container.streams.video:
                f.problems.append("holds no video stream")
                return
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            f.fps = float(fps or (float(rate) if rate else 0.0) or 25.0)
            f.frames = int(stream.frames) or None
            f.width, f.height = stream.codec_context.width, stream.codec_context.height
            created = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
            if created and f.start_from == "unknown":
                try:
                    f.start, f.start_from = parse_time(created), "container"
                except ValueError:
                    pass
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        f.problems.append(f"cannot open as a video ({_av_message(exc)})")


def _av_message(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":")[-1].strip() or type(exc).__name__


@dataclass
class ReadStats:
    """What reading a video met: frames decoded, frames that failed, and problems in words."""

    decoded: int = 0
    unreadable: int = 0
    problems: list[str] = field(default_factory=list)


def read_frames(f: Footage, stride: int = 1, first: int = 1, stats: ReadStats | None = None,
                only: set[int] | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield (frame number from 1, H x W x 3 uint8 RGB) for every frame from ``first`` on; frames
    not on the stride (``(n - 1) % stride != 0``) are decoded (the codec needs them) but yielded
    with None instead of pixels, so the caller still sees every frame number. Unreadable frames are
    counted in ``stats`` and skipped; a truncated stream is noted there. With ``only``, just those
    frame numbers get pixels."""
    stats = stats if stats is not None else ReadStats()
    wanted = ((lambda n: n in only) if only is not None else (lambda n: n >= first and (n - 1) % stride == 0))
    if f.is_frame_folder:
        for n, p in enumerate(_frame_images(f.path), start=1):
            stats.decoded += 1
            if n < first:
                continue
            if not wanted(n):
                yield n, None
                continue
            try:
                yield n, load_image(p)
            except ImageError as exc:
                stats.unreadable += 1
                stats.problems.append(f"frame {n}: {exc.problem} ({p.name})")
        return
    import av

    try:
        container = av.open(str(f.path))
    except (av.error.FFmpegError, OSError) as exc:
        raise FootageError(f.path, f"cannot open as a video ({_av_message(exc)})") from None
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n, bad_run = 0, 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                stats.problems.append(f"stream broken after frame {n} ({_av_message(exc)})")
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                stats.unreadable += 1
                bad_run += 1
                if stats.unreadable <= 5:
                    stats.problems.append(f"frame {n + 1}: unreadable ({_av_message(exc)})")
                if bad_run >= MAX_BAD_RUN:
                    stats.problems.append(f"{MAX_BAD_RUN} unreadable packets in a row after frame {n}: stopped")
                    break
                continue
            bad_run = 0
            for frame in frames:
                n += 1
                stats.decoded += 1
                if n < first:
                    continue
                yield n, frame.to_ndarray(format="rgb24") if wanted(n) else None
    if f.frames and stats.decoded + stats.unreadable < f.frames:
        stats.problems.append(f"truncated: its header states {f.frames} frames, {stats.decoded} could be read")


def cut_video(src: str | Path, dst: str | Path, frames: int, start: int = 1, fps: float | None = None) -> int:
    """Write frames ``start .. start + frames - 1`` of ``src`` to ``dst`` (MPEG-4 in the container
    ``dst``'s suffix names); returns how many were written. For tests and examples."""
    import av

    f = Footage(Path(src), camera="")
    probe(f)
    if f.problems:
        raise FootageError(src, f.problems[0])
    out = av.open(str(dst), "w")
    stream = out.add_stream("mpeg4", rate=int(round(fps or f.fps or 10)))
    stream.width, stream.height, stream.pix_fmt = f.width, f.height, "yuv420p"
    stream.bit_rate = 4_000_000
    written = 0
    try:
        for n, rgb in read_frames(f, first=start):
            if n >= start + frames:
                break
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
            written += 1
        for packet in stream.encode():
            out.mux(packet)
    finally:
        out.close()
    return written
