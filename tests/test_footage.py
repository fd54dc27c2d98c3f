"""Footage -> sightings (``xreid index build --video``): reading videos with PyAV, the SSD detector
wrapper, crop choice and linking formulas, the workflow (bad videos skipped, resume, MOT export)
and ``xreid models get`` against a loopback server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SHARED
from xreid.cli import app
from xreid.data.video import FootageError, ReadStats, cut_video, list_footage, read_footage_csv, read_frames
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.sightings import (LinkParams, TrackEnds, choose_crops, crop_quality, link_tracks, mean_embedding,
                                     occluded_fraction, split_points)
from xreid.index.gallery import GalleryIndex
from xreid.models.detector import ssd_rows_to_boxes
from xreid.models.loading import load_embedder
from xreid.workflows.footage import FootageOptions, export_mot, index_footage

runner = CliRunner()
PETS = SHARED / "data" / "video" / "PETS09-S2L1.avi"
DETECTOR = SHARED / "models" / "openvino" / "person-detection-retail-0013" / "FP16" / "person-detection-retail-0013.xml"
needs_video = pytest.mark.skipif(not (PETS.is_file() and DETECTOR.is_file()),
                                 reason=f"needs the shared footage and detector ({PETS}, {DETECTOR})")


# --- synthetic clips ---------------------------------------------------------------------------------

def people_frame(n: int, size=(161, 97)) -> np.ndarray:
    """Grey background, a red 'person' walking right and a blue one standing (n counts from 1)."""
    w, h = size
    img = np.full((h, w, 3), 128, np.uint8)
    x = 5 + 3 * (n - 1)
    img[30:70, x:x + 16] = (220, 20, 20)
    img[20:60, 120:136] = (20, 20, 220)
    return img


def write_clip(path: Path, frames: int, size=(161, 97), frame=people_frame, fps: int = 10,
               creation_time: str | None = None) -> Path:
    import av

    out = av.open(str(path), "w")
    if creation_time:
        out.metadata["creation_time"] = creation_time
    stream = out.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    stream.bit_rate = 2_000_000
    for n in range(1, frames + 1):
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame(n, size), format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


class ColourDetector:
    """Finds the saturated red and blue blobs of ``people_frame`` (a stand-in for a person detector)."""

    name = "colour"

    def __init__(self, stop_at: int | None = None):
        self.calls, self.stop_at = 0, stop_at

    def identity(self) -> dict:
        return {"detector": self.name}

    def detect(self, frame: np.ndarray, confidence: float = 0.5) -> np.ndarray:
        self.calls += 1
        if self.stop_at is not None and self.calls >= self.stop_at:
            raise KeyboardInterrupt
        f = frame.astype(int)
        boxes = []
        for mask in ((f[..., 0] > 160) & (f[..., 2] < 90), (f[..., 2] > 160) & (f[..., 0] < 90)):
            ys, xs = np.nonzero(mask)
            if len(xs) > 20:
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 0.9])
        return np.array(boxes, np.float32).reshape(-1, 5)


NAMES = ["personalMale", "carryingBackpack", "hairLong"]


@pytest.fixture()
def head():
    return AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {})


@pytest.fixture()
def embedder(tiny_model):
    return load_embedder(tiny_model, backend="torch")


def _index(embedder, head, video, case, detector=None, **kw):
    opts = FootageOptions(**{"chunk_frames": 10, **kw.pop("opts", {})})
    return index_footage(embedder, head, detector or ColourDetector(), video, case, opts=opts, progress=False,
                         say=lambda s: None, **kw)


# --- reading ------------------------------------------------------------------------------------------

def test_read_frames_streams_every_frame_number_and_odd_sizes(tmp_path):
    f = list_footage(write_clip(tmp_path / "odd.avi", 12, size=(161, 97)))[0]
    assert (f.width, f.height, f.frames, f.fps) == (161, 97, 12, 10.0)
    got = list(read_frames(f, stride=3))
    assert [n for n, _ in got] == list(range(1, 13))
    assert [n for n, im in got if im is not None] == [1, 4, 7, 10]
    assert got[0][1].shape == (97, 161, 3)
    assert [n for n, im in read_frames(f, stride=3, first=5) if im is not None] == [7, 10]


def test_one_frame_video(tmp_path):
    f = list_footage(write_clip(tmp_path / "one.avi", 1))[0]
    assert [n for n, _ in read_frames(f)] == [1]


def test_truncated_and_corrupt_videos_are_reported_by_name(tmp_path):
    clip = write_clip(tmp_path / "full.avi", 40)
    data = clip.read_bytes()
    (tmp_path / "trunc.avi").write_bytes(data[: len(data) * 6 // 10])
    (tmp_path / "junk.avi").write_bytes(b"not a video at all" * 100)
    junk = list_footage(tmp_path / "junk.avi")[0]
    assert junk.problems and "cannot open" in junk.problems[0]
    with pytest.raises(FootageError, match="junk.avi"):
        list(read_frames(junk))
    trunc = list_footage(tmp_path / "trunc.avi")[0]
    stats = ReadStats()
    n = sum(1 for _ in read_frames(trunc, stats=stats))
    assert 0 < n < 40
    assert any("truncated" in p for p in stats.problems)


def test_camera_and_start_from_options_then_csv_then_container(tmp_path):
    clip = write_clip(tmp_path / "a.mp4", 3, creation_time="2024-05-01T12:00:00.000000Z")
    f = list_footage(clip)[0]
    assert (f.camera, f.camera_from, f.start_from) == ("a", "file name", "container")
    assert f.start == pytest.approx(1714564800.0)
    (tmp_path / "list.csv").write_text("path,camera,start\na.mp4,gate,2024-06-01T08:00:00\n")
    f = list_footage(tmp_path / "list.csv")[0]
    assert (f.camera, f.camera_from, f.start_from) == ("gate", "csv", "csv")
    assert f.start == pytest.approx(1717228800.0)
    f = list_footage(tmp_path / "list.csv", camera="hall", start="2024-06-02T00:00:00Z")[0]
    assert (f.camera, f.camera_from, f.start_from, f.start) == ("hall", "option", "option", 1717286400.0)
    assert "camera 'hall' (from option)" in f.describe()
    with pytest.raises(ValueError, match="--start: time 'noon'"):
        list_footage(clip, start="noon")


def test_footage_csv_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("video,camera\nx.avi,1\n")
    with pytest.raises(FootageError, match="bad.csv.*'path'"):
        read_footage_csv(bad)
    bad.write_text("path,start\nx.avi,yesterday\n")
    with pytest.raises(FootageError, match="bad.csv: line 2"):
        read_footage_csv(bad)


def test_folder_of_frames_and_folder_of_videos(tmp_path):
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for n in (1, 2, 10):  # natural order: 1, 2, 10
        Image.fromarray(people_frame(n)).save(frames / f"f{n}.png")
    (frames / "f3.png").write_bytes(b"broken")
    f = list_footage(frames, fps=5)[0]
    assert f.is_frame_folder and f.fps == 5 and f.frames == 4
    stats = ReadStats()
    assert [n for n, im in read_frames(f, stats=stats)] == [1, 2, 4]
    assert stats.unreadable == 1 and "f3.png" in stats.problems[0]
    videos = tmp_path / "videos"
    videos.mkdir()
    write_clip(videos / "cam2.avi", 2)
    write_clip(videos / "cam10.avi", 2)
    assert [v.camera for v in list_footage(videos)] == ["cam2", "cam10"]


# --- formulas -----------------------------------------------------------------------------------------

def test_ssd_rows_to_boxes():
    rows = np.array([[0, 1, 0.9, 0.1, 0.2, 0.3, 0.6], [0, 1, 0.3, 0, 0, 0.5, 0.5], [0, 1, 0.8, 0.9, 0.5, 1.2, 1.1],
                     [-1, 0, 0, 0, 0, 0, 0], [0, 1, 0.99, 0, 0, 1, 1]], np.float32)[None, None]
    boxes = ssd_rows_to_boxes(rows, 200, 100, 0.5)
    np.testing.assert_allclose(boxes, [[20, 20, 60, 60, 0.9], [180, 50, 200, 100, 0.8]], rtol=1e-5)


def test_occluded_fraction_by_hand():
    # box 0 (bottom 10) is behind box 1 (bottom 12), which covers its right half
    boxes = np.array([[0, 0, 4, 10], [2, 0, 6, 12]])
    np.testing.assert_allclose(occluded_fraction(boxes), [0.5, 0.0])
    assert occluded_fraction(boxes[:1]).tolist() == [0.0]


def test_crop_quality_and_choice():
    assert crop_quality(0.8, 64, 0.25, False, True) == pytest.approx(0.8 * 0.5 * 0.75)
    assert crop_quality(1.0, 256, 0.0, True, False) == pytest.approx(0.25)
    frames = np.array([1, 2, 3, 10, 20])
    quality = np.array([0.9, 0.95, 0.1, 0.5, 0.5])
    assert choose_crops(frames, quality, 3, min_gap=5) == [1, 3, 4]
    np.testing.assert_allclose(mean_embedding(np.array([[3.0, 4.0], [0.0, 2.0]])), [0.3, 0.9])


def _ends(first, last, x0, x1, emb, b0=False, b1=False):
    box = lambda x: np.array([x, 100, x + 20, 160], np.float32)  # 60 px tall
    return TrackEnds(first, last, box(x0), box(x1), np.asarray(emb, np.float32), b0, b1)


def test_link_tracks_by_hand():
    p = LinkParams(max_gap=5.0, min_similarity=0.6, min_similarity_reentry=0.9, speed=1.0, max_overlap=0.0)
    a = _ends(1, 10, 0, 50, [1, 0])
    near_same = _ends(15, 30, 60, 90, [0.8, 0.6])  # 0.5 s later, 10 px away, cosine 0.8
    near_other = _ends(16, 30, 55, 90, [0, 1])  # cosine 0
    far_same = _ends(20, 30, 600, 650, [1, 0])  # 1 s later, 550 px = 9 box heights away: too far
    assert link_tracks([a, near_same, near_other, far_same], fps=10, p=p) == [0, 0, 2, 3]
    # leaving at the edge and coming back far away: linked only when very similar
    out = _ends(1, 10, 0, 740, [1, 0], b1=True)
    back = _ends(40, 50, 0, 10, [0.95, np.sqrt(1 - 0.95 ** 2)], b0=True)
    back_weak = _ends(40, 50, 0, 10, [0.8, 0.6], b0=True)
    assert link_tracks([out, back], 10, p) == [0, 0]
    assert link_tracks([out, back_weak], 10, p) == [0, 1]
    # too long a gap, or overlapping in time: never
    assert link_tracks([a, _ends(70, 80, 50, 60, [1, 0])], 10, p) == [0, 1]
    assert link_tracks([a, _ends(5, 20, 50, 60, [1, 0])], 10, p) == [0, 1]


def test_overlap_allowed_only_when_asked():
    a = _ends(1, 20, 0, 50, [1, 0])
    b = _ends(15, 40, 52, 90, [1, 0])  # starts 6 frames (0.6 s) before a ends
    assert link_tracks([a, b], 10, LinkParams(max_overlap=0.0)) == [0, 1]
    assert link_tracks([a, b], 10, LinkParams(max_overlap=1.0)) == [0, 0]
    assert link_tracks([a, b], 10, LinkParams(max_overlap=0.5)) == [0, 1]


def test_split_points_by_hand():
    # six samples of one person, then six of another: one split, at sample 6
    v = np.array([[1.0, 0.1]] * 6 + [[0.1, 1.0]] * 6)
    assert split_points(v, window=3, min_similarity=0.5, min_piece=2) == [6]
    assert split_points(v[:6], window=3, min_similarity=0.5, min_piece=2) == []
    assert split_points(v, window=3, min_similarity=0.1, min_piece=2) == []  # similar enough at that threshold


def test_merge_pieces_gives_overlap_to_the_later_piece():
    from xreid.workflows.footage import merge_pieces

    box = lambda k: np.full(5, k, np.float32)
    frames, boxes = merge_pieces([([1, 2, 3, 4], [box(1)] * 4), ([3, 5], [box(2)] * 2)])
    assert frames.tolist() == [1, 2, 3, 5] and boxes[:, 0].tolist() == [1, 1, 2, 2]


# --- the workflow -------------------------------------------------------------------------------------

def test_index_footage_makes_sightings_and_exports_mot(tmp_path, embedder, head):
    clip = write_clip(tmp_path / "cam.avi", 30)
    report = _index(embedder, head, clip, tmp_path / "case", camera="gate", start="2024-05-01T12:00:00Z")
    assert report.added == 2 and report.count == 2 and not report.skipped
    index = GalleryIndex.open(tmp_path / "case")
    rows = [index.row(i) for i in range(len(index))]
    assert {r["camera"] for r in rows} == {"gate"}
    assert all(r["kind"] == "sighting" and r["frame_start"] == "2" and r["frame_end"] == "30" for r in rows)
    assert rows[0]["time"] == "2024-05-01T12:00:00.100000Z"
    assert index.thumbnail(0)[:2] == b"\xff\xd8"
    folder = tmp_path / "case" / Path(rows[0]["path"]).parent
    crops = json.loads((folder / "crops.json").read_text())
    assert 1 <= len(crops) <= 5 and (folder / "keyframe.jpg").is_file() and (folder / "crop-0.jpg").is_file()
    assert all(set(c) >= {"frame", "box", "confidence", "quality", "sharpness", "occluded"} for c in crops)
    [mot] = export_mot(tmp_path / "case", tmp_path / "mot")
    lines = mot.read_text().splitlines()
    assert len(lines) == 2 * 29
    cells = [ln.split(",") for ln in lines]
    assert all(len(c) == 10 and c[7:] == ["-1", "-1", "-1"] for c in cells)
    assert min(int(c[0]) for c in cells) == 2 and {int(c[1]) for c in cells} == {1, 2}
    red = [c for c in cells if float(c[2]) < 100 and c[0] == "2"]
    np.testing.assert_allclose([float(v) for v in red[0][2:6]], [8, 30, 16, 40], atol=1.01)  # red box, frame 2
    result = runner.invoke(app, ["index", "export", str(tmp_path / "case"), "--mot", str(tmp_path / "mot2")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mot2" / mot.name).read_text() == mot.read_text()


def test_bad_videos_are_reported_and_skipped(tmp_path, embedder, head):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_clip(folder / "a_people.avi", 12)
    write_clip(folder / "b_empty.avi", 12, frame=lambda n, size: np.full((size[1], size[0], 3), 128, np.uint8))
    (folder / "c_junk.avi").write_bytes(b"\x00" * 2000)
    data = write_clip(tmp_path / "d.avi", 40).read_bytes()
    (folder / "d_trunc.avi").write_bytes(data[: len(data) * 6 // 10])
    write_clip(folder / "e_one.avi", 1)
    said = []
    report = index_footage(embedder, head, ColourDetector(), folder, tmp_path / "case",
                           opts=FootageOptions(chunk_frames=10), progress=False, say=said.append)
    text = "\n".join(report.skipped)
    assert "b_empty.avi: no person detected" in text
    assert "c_junk.avi: cannot open as a video" in text
    assert "d_trunc.avi: truncated" in text
    assert "e_one.avi: no person" in text  # one frame: detected, but no track can start
    assert report.added == 2 + 2  # a_people and the readable part of d_trunc
    records = {json.loads(p.read_text())["path"]: json.loads(p.read_text())
               for p in (tmp_path / "case" / "footage").glob("*/video.json")}
    assert records[str(folder / "c_junk.avi")]["problems"] and not records[str(folder / "c_junk.avi")]["done"]
    assert records[str(folder / "a_people.avi")]["frames_read"] == 12
    assert any("camera 'a_people' (from file name)" in s for s in said)


def test_interrupted_build_resumes_at_its_last_chunk(tmp_path, embedder, head):
    clip = write_clip(tmp_path / "cam.avi", 40)
    with pytest.raises(KeyboardInterrupt):
        _index(embedder, head, clip, tmp_path / "case", detector=ColourDetector(stop_at=25))
    chunks = sorted((tmp_path / "case" / "footage").glob("*/chunk-*.npz"))
    assert [c.name for c in chunks] == ["chunk-000000.npz", "chunk-000001.npz"]
    again = ColourDetector()
    report = _index(embedder, head, clip, tmp_path / "case", detector=again)
    assert again.calls == 20  # frames 21-40 only
    whole = _index(embedder, head, clip, tmp_path / "whole")
    assert report.count == whole.count == 2
    a, b = GalleryIndex.open(tmp_path / "case"), GalleryIndex.open(tmp_path / "whole")
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
    [ma], [mb] = export_mot(tmp_path / "case", tmp_path / "m1"), export_mot(tmp_path / "whole", tmp_path / "m2")
    assert ma.read_text() == mb.read_text()
    # a finished video is not read again, and another stride on the same case is refused
    assert _index(embedder, head, clip, tmp_path / "more", detector=ColourDetector()).added == 2
    with pytest.raises(ValueError, match="finished index|already"):
        _index(embedder, head, clip, tmp_path / "case")


@pytest.mark.shared
@pytest.mark.slow  # about 25 s on a busy 2-core machine (the bundled model is compiled on first use)
@needs_video
def test_cli_builds_a_case_from_a_cut_of_pets(tmp_path):
    cut = tmp_path / "pets.avi"
    assert cut_video(PETS, cut, 30) == 30
    result = runner.invoke(app, ["index", "build", "--video", str(cut), "--detector", str(DETECTOR), "--camera", "view1",
                                 "--start", "2009-03-01T10:00:00", "--out", str(tmp_path / "case")])
    assert result.exit_code == 0, result.output
    assert "camera 'view1' (from option), start 2009-03-01T10:00:00Z (from option)" in result.output
    index = GalleryIndex.open(tmp_path / "case")
    assert len(index) >= 3
    assert {index.row(i)["camera"] for i in range(len(index))} == {"view1"}


# --- models get ----------------------------------------------------------------------------------------

class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that honours ``Range: bytes=N-`` and records the ranges asked for."""

    ranges: list = []

    def log_message(self, *args):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().send_head()
        start = int(rng.split("=")[1].split("-")[0])
        self.ranges.append((path.name, start))
        data = path.read_bytes()
        if start >= len(data):
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        import io

        return io.BytesIO(data[start:])


@pytest.fixture()
def model_server(tmp_path, monkeypatch):
    served = tmp_path / "served"
    shutil.copytree(SHARED / "models" / "openvino" / "person-detection-retail-0013",
                    served / "person-detection-retail-0013")
    RangeHandler.ranges = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("XREID_MODEL_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("XREID_MODEL_CACHE", str(tmp_path / "cache"))
    yield served
    server.shutdown()


@pytest.mark.shared
@needs_video
def test_models_get_pinned_atomic_resumable(model_server, tmp_path):
    from xreid.models import zoo
    from xreid.models.detector import resolve_detector

    name = "person-detection-retail-0013"
    with pytest.raises(FileNotFoundError, match="xreid models get"):
        resolve_detector(name)
    folder = zoo.model_path(name).parent
    folder.mkdir(parents=True)
    full = (model_server / name / "FP16" / f"{name}.bin").read_bytes()
    (folder / f"{name}.bin.part").write_bytes(full[:1000])  # an interrupted download
    result = runner.invoke(app, ["models", "get", name])
    assert result.exit_code == 0, result.output
    assert (f"{name}.bin", 1000) in RangeHandler.ranges
    assert hashlib.sha256((folder / f"{name}.bin").read_bytes()).hexdigest() == zoo.KNOWN_MODELS[name].files[f"{name}.bin"]
    assert not list(folder.glob("*.part"))
    assert resolve_detector(name) == folder / f"{name}.xml"
    assert zoo.is_installed(name)
    # a file that does not match its pin is refused by name and not installed
    (folder / f"{name}.xml").unlink()
    xml = model_server / name / "FP16" / f"{name}.xml"
    xml.write_bytes(xml.read_bytes().replace(b"<net", b"<nET", 1))
    result = runner.invoke(app, ["models", "get", name])
    assert result.exit_code != 0
    assert f"{name}.xml" in result.output and "refused" in result.output
    assert not (folder / f"{name}.xml").exists() and not list(folder.glob("*.part"))
    result = runner.invoke(app, ["models", "get", "no-such-model"])
    assert result.exit_code != 0 and "unknown model" in result.output


# --- sightings in the search service, the timeline ----------------------------------------------------------

def test_timeline_and_service_show_sightings(tmp_path, embedder, head):
    from fastapi.testclient import TestClient

    from xreid.serve.app import create_app
    from xreid.serve.case import CaseSession

    clip = write_clip(tmp_path / "cam.avi", 30)
    _index(embedder, head, clip, tmp_path / "case", camera="gate", start="2024-05-01T12:00:00Z")
    head.save(tmp_path / "head.npz")
    session = CaseSession(tmp_path / "case", embedder, head, tmp_path / "no-data-root")
    client = TestClient(create_app(session))
    detail = client.get("/api/items/0/sighting").json()
    assert detail["camera"] == "gate" and detail["frames"] == [2, 30] and detail["keyframe"]
    assert detail["crops"][0]["file"] == "crop-0.jpg"
    assert client.get("/api/items/0/keyframe").content[:2] == b"\xff\xd8"
    assert client.get("/api/items/0/crops/0").content[:2] == b"\xff\xd8"
    assert client.get("/api/items/0/crops/9").status_code == 404
    assert client.get("/api/items/0/image").status_code == 200  # the key crop, read from the case
    # a query box drawn on the clean frame becomes an upload, searched like one
    assert detail["frame"] and client.get("/api/items/0/frame").content[:2] == b"\xff\xd8"
    up = client.post("/api/items/0/frame/box", json={"box": detail["crops"][0]["box"]})
    assert up.status_code == 201, up.text
    hits = client.post("/api/search", json={"uploads": [up.json()["id"]], "k": 2}).json()["results"]
    assert hits[0]["id"] == 0
    small = client.post("/api/items/0/frame/box", json={"box": [1, 1, 4, 4]})
    assert small.status_code == 400 and "too small" in small.text
    data = client.get("/api/timeline").json()
    assert data["lanes"] == ["gate"] and len(data["items"]) == 2 and not data["relative"]
    assert data["items"][0]["start"] == pytest.approx(1714564800.1)
    assert data["items"][0]["end"] == pytest.approx(1714564802.9)
    assert client.get("/api/timeline?items=1&format=svg").text.count("<rect") == 2  # lane + one bar
    assert data["rows"] == {"gate": 2}  # the two people overlap in time: two rows
    assert client.get("/api/timeline?format=png").content[:4] == b"\x89PNG"
    # a search by a sighting: the exported report carries the timeline of the marked results
    found = client.post("/api/search", json={"items": [0], "k": 2}).json()
    client.post("/api/marks", json={"search": found["search"], "item": 1, "mark": "match"})
    report = client.get(f"/api/searches/{found['search']}/report.json").json()
    assert [i["id"] for i in report["timeline"]["items"]] == [1]
    page = client.get(f"/api/searches/{found['search']}/report.html?maps=none").text
    assert '<section id="timeline">' in page
    for suffix in ("html", "json", "png"):
        result = runner.invoke(app, ["index", "timeline", str(tmp_path / "case"), "--out", str(tmp_path / f"t.{suffix}")])
        assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "t.json").read_text())["lanes"] == ["gate"]
    assert "sighting-0" in (tmp_path / "t.html").read_text()


def test_timeline_of_footage_without_start_uses_offsets():
    from xreid.index.sightings import timeline

    rows = [{"id": 0, "path": "sightings/v/00000/crop-0.jpg", "camera": "b", "time": None, "offset_start": "1.0",
             "offset_end": "4.0"},
            {"id": 1, "path": "sightings/v/00001/crop-0.jpg", "camera": "a", "time": None, "offset_start": "2.5",
             "offset_end": "3.0"},
            {"id": 2, "path": "peta/x.jpg", "camera": "a", "time": None}]
    data = timeline(rows)
    assert data == {"relative": True, "lanes": ["a", "b"], "rows": {"a": 1, "b": 1},
                    "items": [{"id": 1, "camera": "a", "video": None, "start": 2.5, "end": 3.0, "probability": None,
                               "row": 0},
                              {"id": 0, "camera": "b", "video": None, "start": 1.0, "end": 4.0, "probability": None,
                               "row": 0}]}


def test_pack_rows_by_hand():
    from xreid.index.sightings import pack_rows

    items = [{"start": 0, "end": 5}, {"start": 1, "end": 2}, {"start": 3, "end": 4}, {"start": 6, "end": 7}]
    assert pack_rows(items) == 2
    assert [i["row"] for i in items] == [0, 1, 1, 0]


def test_add_footage_to_a_case(tmp_path, embedder, head):
    a, b = write_clip(tmp_path / "a.avi", 12), write_clip(tmp_path / "b.avi", 12)
    assert _index(embedder, head, a, tmp_path / "case").count == 2
    said = []
    report = index_footage(embedder, head, ColourDetector(), b, tmp_path / "case", camera="door", append=True,
                           opts=FootageOptions(chunk_frames=10), progress=False, say=said.append)
    assert report.added == 2 and report.count == 4
    again = index_footage(embedder, head, ColourDetector(), a, tmp_path / "case", append=True,
                          opts=FootageOptions(chunk_frames=10), progress=False, say=said.append)
    assert again.added == 0 and again.count == 4 and any("already indexed" in s for s in said)
    index = GalleryIndex.open(tmp_path / "case")
    assert sorted(index.row(i)["camera"] for i in range(4)) == ["a", "a", "door", "door"]


def test_timeline_page_carries_its_data_as_json_even_with_markup_in_names():
    import re

    from xreid.index.sightings import timeline
    from xreid.rendering.timeline import timeline_html

    rows = [{"id": 0, "path": "sightings/v/00000/crop-0.jpg", "camera": "gate <b>&'\"", "time": None,
             "offset_start": "1.0", "offset_end": "4.0"}]
    data = timeline(rows)
    page = timeline_html(data)
    block = re.search(r"<script type='application/json' id='timeline-data'>(.*?)</script>", page, re.S).group(1)
    assert "<b>" not in block and json.loads(block) == data  # readable JSON, no markup to break out with
    assert "gate &lt;b&gt;&amp;" in page  # the table shows the name escaped


def test_representative_crop_pair_by_hand():
    from xreid.explain.sightings import crop_distances, representative_pair, typical_view

    d = np.array([[0.10, 0.40, 0.30],
                  [0.25, 0.31, 0.90]])
    assert representative_pair(d, 0.30) == (0, 2)  # |0.30 - 0.30| = 0
    assert representative_pair(d, 0.28) == (0, 2)  # 0.02 beats 0.03 (0.25 and 0.31)
    assert representative_pair(d, 0.28, query_view=1) == (1, 0)  # 0.03 ties 0.03: the better crop (j = 0)
    assert representative_pair(d, 5.0) == (1, 2)
    v = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    np.testing.assert_allclose(crop_distances(v[:1], v), [[0.0, 0.4, 1.0]])
    assert typical_view(v, np.array([0.5, 0.6])) == 1  # the mean of the three points nearest the middle one


def test_why_reads_a_sighting_through_its_best_crops(tmp_path, embedder, head):
    """'Why?' on a pair of sightings reads every best crop of both: the distances of all crop pairs
    are reported, and the picture shown is the crop whose distance stands for the ranking's. Here
    the result's key crop is then replaced by a copy of the query's crop shown (distance 0, which
    stands for nothing): the explanation must show another crop."""
    import shutil

    from xreid.serve.case import CaseSession
    from xreid.workflows.explain import render_explained

    clip = write_clip(tmp_path / "cam.avi", 60)
    _index(embedder, head, clip, tmp_path / "case", camera="gate")
    session = CaseSession(tmp_path / "case", embedder, head, tmp_path / "no-data-root")
    index = session.index
    assert all(len(index.view_paths(i)) >= 2 for i in range(len(index)))  # several crops per sighting
    s = session.search(items=[0], k=2)
    ex = session.explain(s["search"], [1], maps="none")
    [r] = ex.results
    c = r.crops
    assert c is not None and len(c.query) >= 2 and len(c.result) >= 2
    assert np.asarray(c.distances).shape == (len(c.query), len(c.result))
    assert c.distance == pytest.approx(r.distance)
    gaps = np.abs(np.asarray(c.distances)[c.shown[0]] - r.distance)
    assert gaps[c.shown[1]] == gaps.min()
    assert any("The query is a sighting" in n for n in ex.notes)
    shutil.copyfile(index.view_paths(0)[c.shown[0]], index.view_paths(1)[0])
    ex = session.explain(s["search"], [1], maps="pair")
    [r] = ex.results
    c = r.crops
    assert np.asarray(c.distances)[c.shown[0], 0] == pytest.approx(0, abs=1e-5)
    assert c.shown[1] != 0 and c.result[c.shown[1]] != "crop-0.jpg"  # not the key crop
    assert ex.picture(r.key) is ex.shown[r.key] and ex.maps is not None and ex.maps.maps
    page = render_explained(ex)
    assert "Read through the best crops" in page and page.count('<figure class="crop') == len(c.result)
    assert ex.to_dict()["results"][0]["crops"]["result"] == c.result


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("span", [3.0, 0.8, 47.0, 5 * 3600 + 17.0, 40 * 3600.0, 9 * 86400.0])
def test_timeline_tick_labels_are_distinct_for_seconds_to_days(span, relative):
    import calendar

    from xreid.index.sightings import timeline
    from xreid.rendering.timeline import time_ticks, timeline_svg

    t0 = 12.3 if relative else calendar.timegm((2024, 5, 1, 23, 0, 0)) + 0.3
    ticks = time_ticks(t0, t0 + span, relative)
    labels = [label for _, label in ticks]
    assert 2 <= len(ticks) <= 7 and len(set(labels)) == len(labels), labels
    assert all(t0 - 1e-6 <= t <= t0 + span + 1e-6 for t, _ in ticks)
    steps = np.diff([t for t, _ in ticks])
    np.testing.assert_allclose(steps, steps[0], atol=1e-3)  # evenly spaced, round steps
    if not relative and span > 86400:
        assert all(any(c.isdigit() for c in label.split()[0]) and "-" in label for label in labels)  # dated
    # the SVG shows the same distinct labels
    start = "" if relative else "2024-05-01T23:00:00.3Z"
    rows = [{"id": 0, "path": "sightings/v/00000/crop-0.jpg", "camera": "a", "time": start or None,
             "offset_start": "0", "offset_end": f"{span}", "end": ""}]
    if relative:
        rows[0].update(offset_start=f"{t0}", offset_end=f"{t0 + span}")
    svg = str(timeline_svg(timeline(rows)))
    shown = [label for label in labels if f">{label}</text>" in svg]
    assert shown == labels


def test_timeline_ticks_by_hand():
    from xreid.rendering.timeline import tick_step, time_ticks

    assert tick_step(3.0) == 0.5 and tick_step(3600.0) == 600 and tick_step(5 * 86400.0) == 86400
    assert time_ticks(0.3, 3.3, True) == [(0.5, "0.5 s"), (1.0, "1.0 s"), (1.5, "1.5 s"), (2.0, "2.0 s"),
                                          (2.5, "2.5 s"), (3.0, "3.0 s")]
    assert [label for _, label in time_ticks(12, 19000, True)] == ["1:00:00", "2:00:00", "3:00:00", "4:00:00",
                                                                   "5:00:00"]


def test_index_check_finds_and_repairs_damaged_footage_files(tmp_path, embedder, head):
    """A flipped byte in a crop and a truncated chunk are named by `xreid index check`; --repair moves
    them (and the chunk after the damaged one) aside and marks the video not done, and `index add
    --video` makes the files again from the committed chunks, the rows unchanged."""
    clip = write_clip(tmp_path / "cam.avi", 30)
    case = tmp_path / "case"
    _index(embedder, head, clip, case, camera="gate")  # chunks of 10 frames: 3
    out = runner.invoke(app, ["index", "check", str(case)])
    assert out.exit_code == 0 and "intact" in out.output and "without a recorded checksum" not in out.output, out.output
    [video] = [p.name for p in (case / "footage").iterdir()]
    listing = json.loads((case / "footage" / video / "files.json").read_text())
    assert any(k.endswith("crop-0.jpg") for k in listing) and any("chunk-" in k for k in listing)
    crop = case / "sightings" / video / "00001" / "crop-1.jpg"
    good_crop = crop.read_bytes()
    data = bytearray(good_crop)
    data[len(data) // 2] ^= 0x10
    crop.write_bytes(bytes(data))
    chunk = case / "footage" / video / "chunk-000001.npz"
    chunk.write_bytes(chunk.read_bytes()[:-40])
    out = runner.invoke(app, ["index", "check", str(case)])
    assert out.exit_code == 1 and "run again with --repair" in out.output
    assert f"damaged: {crop}: content changed" in out.output and f"damaged: {chunk}: truncated" in out.output
    out = runner.invoke(app, ["index", "check", str(case), "--repair"])
    assert out.exit_code == 0 and "repaired" in out.output and f"--video {clip}" in out.output, out.output
    moved = case / "damaged" / "footage" / video
    assert (moved / "chunk-000001.npz").is_file() and (moved / "chunk-000002.npz").is_file()  # the later one too
    assert (case / "damaged" / "sightings" / video / "00001" / "crop-1.jpg").is_file() and not crop.exists()
    assert not json.loads((case / "footage" / video / "video.json").read_text())["done"]
    assert runner.invoke(app, ["index", "check", str(case)]).exit_code == 0
    report = index_footage(embedder, head, ColourDetector(), clip, case, camera="gate", append=True,
                           opts=FootageOptions(chunk_frames=10), progress=False, say=lambda s: None)
    assert report.count == 2 and len(GalleryIndex.open(case)) == 2  # no row added twice
    assert crop.read_bytes() == good_crop and (case / "footage" / video / "chunk-000002.npz").is_file()
    out = runner.invoke(app, ["index", "check", str(case)])
    assert out.exit_code == 0 and "intact" in out.output, out.output


def test_description_search_ranks_sightings(tmp_path, embedder, head, tiny_model):
    """`xreid index search CASE --describe` on a footage case ranks its sightings by the formula
    (issue 32, item 2), with camera filters, evidence and the sighting's fields in --json; the
    service's description search does the same."""
    from fastapi.testclient import TestClient

    from xreid.explain.description_score import description_scores
    from xreid.index.gallery import decode_probabilities
    from xreid.serve.app import create_app
    from xreid.serve.case import CaseSession

    a, b = write_clip(tmp_path / "a.avi", 20), write_clip(tmp_path / "b.avi", 20, frame=lambda n, size: people_frame(
        n, size)[:, ::-1].copy())  # the same two people, mirrored: other crops, other probabilities
    _index(embedder, head, a, tmp_path / "case", camera="gate", start="2024-05-01T12:00:00Z")
    index_footage(embedder, head, ColourDetector(), b, tmp_path / "case", camera="door", append=True,
                  opts=FootageOptions(chunk_frames=10), progress=False, say=lambda s: None)
    head.save(tmp_path / "head.npz")
    index = GalleryIndex.open(tmp_path / "case")
    assert len(index) == 4
    p = decode_probabilities(index.description_codes().T)  # each sighting read with its look-alikes
    assert index.lookalike_codes is not None
    score = description_scores(p[:, :2], [True, True], np.ones(2), "geomean")  # "man, backpack"; no reliability
    alone = description_scores(index.probabilities()[:, :2], [True, True], np.ones(2), "geomean")
    assert len(np.unique(score)) >= 2 and not np.allclose(score, alone)  # smoothed; ties go by id
    expected = np.lexsort((np.arange(4), -score))
    model = ["--model", str(tiny_model), "--backend", "torch", "--head", str(tmp_path / "head.npz")]
    out = tmp_path / "d.json"
    res = runner.invoke(app, ["index", "search", str(tmp_path / "case"), *model, "--describe", "a man with a backpack",
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "described: man, backpack" in res.output and "4 images, 4 pass the filter" in res.output
    data = json.loads(out.read_text())
    assert [r["id"] for r in data["results"]] == expected.tolist()
    first = data["results"][0]
    assert first["key"].startswith("sightings/") and first["kind"] == "sighting"
    assert {"frame_start", "frame_end", "video", "camera", "time"} <= set(first)
    assert first["score"] == pytest.approx(score[expected[0]], abs=1e-5)
    assert [e["text"] for e in first["evidence"]] == ["man", "backpack"]
    res = runner.invoke(app, ["index", "search", str(tmp_path / "case"), *model, "--describe", "man, backpack",
                              "--camera", "door", "--json", str(out)])
    assert res.exit_code == 0, res.output
    door = [i for i in expected if index.row(int(i))["camera"] == "door"]
    assert [r["id"] for r in json.loads(out.read_text())["results"]] == door and len(door) == 2
    # the service: a description alone ranks the sightings the same way; a result's sighting detail opens
    session = CaseSession(tmp_path / "case", embedder, head, tmp_path / "no-data-root")
    client = TestClient(create_app(session))
    body = client.post("/api/search", json={"description": "man, backpack", "k": 4}).json()
    assert body["kind"] == "description" and [r["id"] for r in body["results"]] == expected.tolist()
    detail = client.get(f"/api/items/{body['results'][0]['id']}/sighting").json()
    assert detail["camera"] in ("gate", "door") and detail["keyframe"]


def test_a_model_with_camera_statistics_embeds_each_video_with_its_cameras(tmp_path, embedder, head):
    """The same clip indexed as camera 'gate' (a camera the model holds statistics for) and as
    'door' (none): the sightings of 'gate' use its statistics, not the plain model's; those of 'door'
    take the statistics of the camera its crops look most like, here the only one, 'gate'."""
    from xreid.training.camera_norm import estimate_camera_norms

    clip = write_clip(tmp_path / "cam.avi", 12)
    plain = _index(embedder, head, clip, tmp_path / "plain", camera="door")
    crops = np.random.default_rng(0).integers(0, 256, (16, *embedder.preprocess.size, 3), dtype=np.uint8)
    embedder.camera_norms, _ = estimate_camera_norms(embedder.model, crops, ["gate"] * 16)
    _index(embedder, head, clip, tmp_path / "door", camera="door")
    _index(embedder, head, clip, tmp_path / "gate", camera="gate")
    vectors = {n: GalleryIndex.open(tmp_path / n).vectors_of(range(plain.count)) for n in ("plain", "door", "gate")}
    np.testing.assert_allclose(vectors["door"], vectors["gate"], atol=1e-4)
    assert np.abs(vectors["gate"] - vectors["plain"]).max() > 1e-2
