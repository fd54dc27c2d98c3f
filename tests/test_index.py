"""The persistent gallery index (``xreid index``): build, search with filters, add, resume, export."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_image
from xreid.cli import app
from xreid.distance import rank_gallery
from xreid.explain.attribute_head import AttributeHead
from xreid.index import gallery as gallery_mod
from xreid.index.features import IdentityMismatch, load_features_with_identity
from xreid.index.gallery import (
    Filter,
    GalleryIndex,
    GalleryIndexError,
    IndexWriter,
    Rows,
    decode_probabilities,
    encode_probabilities,
    read_manifest,
    threshold_code,
)
from xreid.index.metadata import fields_from_name, parse_time, read_gallery_csv
from xreid.models.loading import load_embedder
from xreid.workflows.index import add_to_index, build_index, export_index

runner = CliRunner()
NAMES = ["personalMale", "carryingBackpack", "hairLong"]


@pytest.fixture()
def head_path(tmp_path):
    path = tmp_path / "head.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {}).save(path)
    return path


@pytest.fixture()
def embedder(tiny_model):
    return load_embedder(tiny_model, backend="torch")


@pytest.fixture()
def root(tmp_path):
    """A data root with 10 crops in gallery/ (varied colours) and 3 more in more/."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
    for i in range(10):
        write_image(tmp_path / "data" / "gallery" / f"img{i:02d}.jpg", seed=i, colour=colours[i % 5])
    for i in range(3):
        write_image(tmp_path / "data" / "more" / f"new{i}.png", seed=50 + i, colour=colours[i])
    return tmp_path / "data"


def _build(embedder, head_path, root, out, **kw):
    kw.setdefault("images", root / "gallery")
    return build_index(embedder, AttributeHead.load(head_path), root, out, batch_size=kw.pop("batch_size", 3),
                       progress=False, **kw)


def _state(case):
    """Everything an index holds, for comparing two builds."""
    g = GalleryIndex.open(case)
    return {"keys": g.keys.tolist(), "vectors": g.vectors, "codes": g.attribute_codes, "times": g.times,
            "rows": [g.row(i) for i in range(len(g))], "thumbs": [g.thumbnail(i) for i in range(len(g))]}


# --- build and search --------------------------------------------------------------------------------

def test_build_then_search_gives_the_exact_ranking(embedder, head_path, root, tmp_path):
    report = _build(embedder, head_path, root, tmp_path / "case")
    assert (report.added, report.count, report.skipped) == (10, 10, [])
    g = GalleryIndex.open(tmp_path / "case")
    manifest = read_manifest(tmp_path / "case")
    assert manifest["state"] == "ready" and manifest["identity"] == embedder.identity()
    assert manifest["attributes"]["names"] == NAMES and manifest["attributes"]["head_fingerprint"]
    assert len(manifest["segments"]) == 1  # the build's batches merged into one segment
    feats, _ = load_features_with_identity(_export(tmp_path))
    gallery = np.stack([feats[k] for k in g.keys.tolist()])
    query = embedder.embed_paths([root / "more" / "new0.png"]).features[0]
    order, dist = rank_gallery(query, gallery)
    res = g.search(query, k=5)
    assert res.method == "exact"
    assert res.ids.tolist() == order[:5].tolist()
    np.testing.assert_allclose(res.distances, dist[order[:5]], atol=1e-6)
    assert [r["path"] for r in res.rows] == [g.keys[i] for i in order[:5]]
    # thumbnails: JPEG, 128 px high, by id
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(g.thumbnail(int(res.ids[0])))) as im:
        assert im.format == "JPEG" and im.size[1] == 128
    # attribute probabilities are the head's calibrated ones (to the storage step of 1/256)
    head = AttributeHead.load(head_path)
    np.testing.assert_allclose(g.probabilities([0]), head.calibrated(gallery[:1]), atol=1 / 256)


def _export(tmp_path):
    out = tmp_path / "feats.npz"
    export_index(tmp_path / "case", out)
    return out


def test_export_writes_embed_format_with_the_model_identity(embedder, head_path, root, tmp_path):
    _build(embedder, head_path, root, tmp_path / "case")
    feats, identity = load_features_with_identity(_export(tmp_path))
    assert identity == embedder.identity()
    assert sorted(feats) == [f"gallery/img{i:02d}.jpg" for i in range(10)]
    direct = embedder.embed_paths([root / "gallery" / "img03.jpg"]).features[0]
    np.testing.assert_allclose(feats["gallery/img03.jpg"], direct, atol=2e-5)  # batch size moves the last bits


def _synthetic(case, n=3000, dim=16, seed=0, ann_min_rows=1000, batch=700):
    """An index of random vectors with hand-made metadata: camera c1..c4, time = row seconds,
    probabilities, a 'site' field; built through the writer (no images)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    probs = rng.random((n, 3))
    probs[0, 0], probs[1, 0] = 0.5, 0.49999  # the 0.5 boundary is exact
    cams = rng.integers(1, 5, n)
    sites = rng.choice(["north", "south", ""], n)
    identity = {"model": "synthetic", "fingerprint": "f" * 16, "preprocess": {}, "flip": False}
    with IndexWriter.create(case, identity, NAMES, {"head": "h", "head_fingerprint": "0"}, dim) as w:
        for s in range(0, n, batch):
            e = min(n, s + batch)
            fields = [{"camera": f"market/{cams[i]}", **({"site": sites[i]} if sites[i] else {})} for i in range(s, e)]
            w.commit(Rows([f"p/{i}.jpg" for i in range(s, e)], x[s:e], probs[s:e], fields, np.arange(s, e) * 1.0))
        w.finish(ann_min_rows=ann_min_rows)
    return x, probs, cams, sites


def test_ann_search_with_filters_matches_exact_filtered_search(tmp_path, monkeypatch):
    monkeypatch.setattr(gallery_mod, "EXACT_LIMIT", 100)  # a small index stands in for a large one
    x, probs, cams, sites = _synthetic(tmp_path / "case")
    g = GalleryIndex.open(tmp_path / "case")
    assert g.ann is not None and g.manifest["ann"]["rows"] == 3000
    rng = np.random.default_rng(5)
    hits = total = 0
    for where, keep in [(None, np.ones(3000, bool)),
                        (Filter(camera="2"), cams == 2),
                        (Filter(attributes={"carryingBackpack": True}), probs[:, 1] >= 0.5)]:
        for _ in range(10):
            q = rng.standard_normal(16)
            res = g.search(q, k=10, where=where)
            ex = g.search(q, k=10, where=where, exact=True)
            assert ex.method == "exact" and res.method == "ann"
            assert keep[res.ids].all()
            sel = np.flatnonzero(keep)
            order, dist = rank_gallery(q, x[sel])
            assert ex.ids.tolist() == sel[order[:10]].tolist()
            hits += len(np.intersect1d(res.ids, ex.ids))
            total += 10
            # distances are exact cosine distances wherever the row came from
            np.testing.assert_allclose(res.distances, rank_gallery(q, x[res.ids])[1], atol=1e-5)
    assert hits / total >= 0.95


def test_filters_restrict_results_to_the_rows_that_meet_them(tmp_path):
    x, probs, cams, sites = _synthetic(tmp_path / "case", ann_min_rows=10**9)
    g = GalleryIndex.open(tmp_path / "case")
    q = np.random.default_rng(1).standard_normal(16)
    times = np.arange(3000.0)
    cases = [
        (Filter(camera=3), cams == 3),
        (Filter(camera=["market/1", "4"]), (cams == 1) | (cams == 4)),
        (Filter(after=1000, before=1200), (times >= 1000) & (times < 1200)),
        (Filter(attributes={"personalMale": True, "hairLong": False}), (probs[:, 0] >= 0.5) & (probs[:, 2] < 0.5)),
        (Filter(attributes={"carryingBackpack": 0.9}), probs[:, 1] >= 0.90234375),  # ceil(0.9 * 256) / 256
        (Filter(fields={"site": "north"}), sites == "north"),
        (Filter(camera="2", after=500, attributes={"personalMale": True}, fields={"site": ["north", "south"]}),
         (cams == 2) & (times >= 500) & (probs[:, 0] >= 0.5) & (sites != "")),
        (Filter(fields={"site": "nowhere"}), np.zeros(3000, bool)),
    ]
    for where, keep in cases:
        res = g.search(q, k=3000, where=where)
        assert sorted(res.ids.tolist()) == np.flatnonzero(keep).tolist(), where
        assert res.candidates == keep.sum()
    # the 0.5 boundary: p = 0.5 passes 'present', p = 0.49999 does not
    assert encode_probabilities([0.5, 0.49999, 1.0, 0.0]).tolist() == [128, 127, 255, 0] and threshold_code(0.5) == 128
    assert 0 in g.search(q, 3000, Filter(attributes={"personalMale": True})).ids
    assert 1 not in g.search(q, 3000, Filter(attributes={"personalMale": True})).ids
    row = g.row(7)
    assert row["camera"] == f"market/{cams[7]}" and row["time"] == "1970-01-01T00:00:07Z"
    with pytest.raises(ValueError, match="unknown attribute 'carryingbackpack' \\(did you mean carryingBackpack"):
        g.search(q, where=Filter(attributes={"carryingbackpack": True}))
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        g.search(q, where=Filter(fields={"colour": "red"}))


def test_csv_metadata_is_indexed_and_searchable(embedder, head_path, root, tmp_path):
    listing = tmp_path / "gallery.csv"
    listing.write_text("path,cam,timestamp,site,pid\n"
                       + "".join(f"gallery/img{i:02d}.jpg,{1 + i % 2},2024-05-01T12:{i:02d}:00Z,"
                                 f"{'north' if i < 5 else 'south'},P{i // 2}\n" for i in range(10)))
    _build(embedder, head_path, root, tmp_path / "case", images=None, list_file=listing)
    g = GalleryIndex.open(tmp_path / "case")
    assert read_manifest(tmp_path / "case")["columns"] == {"camera": "string", "time": "time", "pid": "string",
                                                           "site": "string"}
    q = g.vectors[0]
    res = g.search(q, k=10, where=Filter(camera="2", fields={"site": "south"},
                                         after="2024-05-01T12:06:00Z"))
    assert sorted(r["path"] for r in res.rows) == ["gallery/img07.jpg", "gallery/img09.jpg"]
    assert res.rows[0]["site"] == "south" and res.rows[0]["pid"] in ("P3", "P4")
    assert g.row(3)["time"] == "2024-05-01T12:03:00Z"


def test_market_and_peta_names_give_camera_and_person_id():
    assert fields_from_name("bounding_box_test/0002_c3s1_000451_03.jpg") == {"camera": "market/3",
                                                                             "pid": "market/0002"}
    assert fields_from_name("VIPeR/archive/001_45_2.jpg") == {"camera": "VIPeR/2", "pid": "VIPeR/001"}
    assert fields_from_name("camera3/person_7.jpg") == {}  # folder names say nothing


# --- add, resume, atomicity ---------------------------------------------------------------------------

def test_add_appends_and_refuses_another_model(embedder, head_path, root, tmp_path, tiny_model):
    case = tmp_path / "case"
    _build(embedder, head_path, root, case)
    before = _state(case)
    report = add_to_index(embedder, AttributeHead.load(head_path), root, case, images=root / "more",
                          batch_size=2, progress=False)
    assert (report.added, report.count) == (3, 13)
    g = GalleryIndex.open(case)
    assert g.keys.tolist() == before["keys"] + [f"more/new{i}.png" for i in range(3)]
    np.testing.assert_array_equal(g.vectors[:10], before["vectors"])  # ids never move
    assert g.search(embedder.embed_paths([root / "more" / "new1.png"]).features[0], k=1).ids.tolist() == [11]
    again = add_to_index(embedder, AttributeHead.load(head_path), root, case, images=root / "more",
                         progress=False)
    assert (again.added, again.already, again.count) == (0, 3, 13)
    flipped = load_embedder(tiny_model, backend="torch", flip_average=True)
    with pytest.raises(IdentityMismatch) as err:
        add_to_index(flipped, AttributeHead.load(head_path), root, case, images=root / "more", progress=False)
    assert "flip differ" in str(err.value) and '"flip": false' in str(err.value) and '"flip": true' in str(err.value)
    other_head = tmp_path / "other_head.npz"
    AttributeHead(NAMES, np.ones((1280, 3)), np.full(3, 0.4), {}).save(other_head)
    with pytest.raises(GalleryIndexError, match="another attribute head"):
        add_to_index(embedder, AttributeHead.load(other_head), root, case, images=root / "more", progress=False)
    assert GalleryIndex.open(case).keys.tolist() == g.keys.tolist()


def test_interrupted_build_resumes_to_the_same_index(embedder, head_path, root, tmp_path, monkeypatch):
    _build(embedder, head_path, root, tmp_path / "whole")
    real_run, calls = embedder.run, {"n": 0}

    def failing_run(inputs):
        calls["n"] += 1
        if calls["n"] > 2:  # the third batch fails: two batches of 3 are committed
            raise KeyboardInterrupt
        return real_run(inputs)

    monkeypatch.setattr(embedder, "run", failing_run)
    with pytest.raises(KeyboardInterrupt):
        _build(embedder, head_path, root, tmp_path / "case")
    manifest = read_manifest(tmp_path / "case")
    assert manifest["state"] == "building" and manifest["count"] == 6
    for seg in manifest["segments"]:
        assert (tmp_path / "case" / "segments" / seg["file"]).is_file()
        assert all((tmp_path / "case" / "segments" / p).is_file() for p in seg["packs"])
    assert len(GalleryIndex.open(tmp_path / "case")) == 6  # what was committed is readable
    with pytest.raises(GalleryIndexError, match="build was interrupted"):
        add_to_index(embedder, AttributeHead.load(head_path), root, tmp_path / "case", images=root / "more",
                     progress=False)
    monkeypatch.setattr(embedder, "run", real_run)
    report = _build(embedder, head_path, root, tmp_path / "case")
    assert (report.added, report.already, report.count) == (4, 6, 10)
    assert len(read_manifest(tmp_path / "case")["segments"]) == 1  # a resumed build ends in one segment too
    whole, resumed = _state(tmp_path / "whole"), _state(tmp_path / "case")
    assert whole["keys"] == resumed["keys"] and whole["rows"] == resumed["rows"]
    assert whole["thumbs"] == resumed["thumbs"]
    np.testing.assert_allclose(whole["vectors"], resumed["vectors"], atol=1e-6)
    np.testing.assert_array_equal(whole["codes"], resumed["codes"])
    with pytest.raises(GalleryIndexError, match="already holds a finished index"):
        _build(embedder, head_path, root, tmp_path / "case")


def test_a_crash_between_segment_and_manifest_keeps_the_last_commit(embedder, head_path, root, tmp_path,
                                                                    monkeypatch):
    real_write, calls = gallery_mod._write_manifest, {"n": 0}

    def crashing_write(case, manifest):
        calls["n"] += 1
        if calls["n"] == 3:  # the first write creates the index; the third would commit the 2nd batch
            raise OSError("disk full")
        real_write(case, manifest)

    monkeypatch.setattr(gallery_mod, "_write_manifest", crashing_write)
    with pytest.raises(OSError, match="disk full"):
        _build(embedder, head_path, root, tmp_path / "case")
    manifest = read_manifest(tmp_path / "case")
    assert manifest["count"] == 3 and [s["file"] for s in manifest["segments"]] == ["seg-000000.npz"]
    on_disk = sorted(p.name for p in (tmp_path / "case" / "segments").iterdir())
    assert "seg-000001.npz" in on_disk  # written, never committed
    assert len(GalleryIndex.open(tmp_path / "case")) == 3
    monkeypatch.setattr(gallery_mod, "_write_manifest", real_write)
    assert _build(embedder, head_path, root, tmp_path / "case").count == 10
    listed = {f for s in read_manifest(tmp_path / "case")["segments"] for f in [s["file"], *s["packs"]]}
    assert {p.name for p in (tmp_path / "case" / "segments").iterdir()} == listed  # orphans removed


def test_another_model_cannot_resume_a_build(embedder, head_path, root, tmp_path, tiny_model):
    (tmp_path / "case").mkdir()
    identity = {**embedder.identity(), "flip": True}
    with IndexWriter.create(tmp_path / "case", identity, NAMES, {"head": "x", "head_fingerprint": "0"}, 1280):
        pass
    with pytest.raises(IdentityMismatch, match="Resuming would mix two models"):
        _build(embedder, head_path, root, tmp_path / "case")


def test_only_one_writer_at_a_time(tmp_path):
    identity = {"model": "m", "fingerprint": "f", "preprocess": {}, "flip": False}
    with IndexWriter.create(tmp_path / "case", identity, NAMES, {"head_fingerprint": "0"}, 4):
        with pytest.raises(GalleryIndexError, match="another xreid process is writing"):
            IndexWriter.create(tmp_path / "case", identity, NAMES, {"head_fingerprint": "0"}, 4)


# --- CSV and times --------------------------------------------------------------------------------------

def test_bad_csv_is_a_clear_error_naming_file_and_line(tmp_path):
    no_path = tmp_path / "no_path.csv"
    no_path.write_text("\nfile,camera\na.jpg,1\n")
    with pytest.raises(ValueError, match=r"no_path\.csv:2: header row has no 'path' column"):
        read_gallery_csv(no_path)
    bad_time = tmp_path / "bad_time.csv"
    bad_time.write_text("path,time\na.jpg,2024-05-01T10:00:00\nb.jpg,yesterday\n")
    with pytest.raises(ValueError, match=r"bad_time\.csv:3: time 'yesterday' is neither ISO 8601"):
        read_gallery_csv(bad_time)
    too_many = tmp_path / "cells.csv"
    too_many.write_text("path,camera\na.jpg,1,extra\n")
    with pytest.raises(ValueError, match=r"cells\.csv:2: 3 cells but the header names 2 columns"):
        read_gallery_csv(too_many)
    twice = tmp_path / "twice.csv"
    twice.write_text("path\na.jpg\na.jpg\n")
    with pytest.raises(ValueError, match=r"twice\.csv:3: a\.jpg is listed twice \(first on line 2\)"):
        read_gallery_csv(twice)


def test_times_parse_as_iso_8601_or_seconds():
    assert parse_time("1700000000") == 1700000000.0
    assert parse_time("2024-05-01T12:00:00Z") == parse_time("2024-05-01T14:00:00+02:00") == \
        parse_time("2024-05-01 12:00:00")
    assert math.isclose(parse_time("1970-01-02"), 86400.0)
    with pytest.raises(ValueError, match="neither ISO 8601"):
        parse_time("12/05/2024")


# --- the commands -------------------------------------------------------------------------------------

def test_cli_build_search_add_export(tiny_model, head_path, root, tmp_path):
    case, search = tmp_path / "case", ["--model", str(tiny_model), "--backend", "torch"]
    model = [*search, "--head", str(head_path)]
    listing = tmp_path / "g.csv"
    listing.write_text("path,camera,time\n" + "".join(f"gallery/img{i:02d}.jpg,{i % 3},{1000 + i}\n"
                                                     for i in range(10)))
    res = runner.invoke(app, ["index", "build", *model, "--data-root", str(root), "--list", str(listing),
                              "--out", str(case), "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert "10 images indexed (10 added)" in res.output
    res = runner.invoke(app, ["index", "search", str(case), *search, "--query", str(root / "more" / "new0.png"),
                              "--camera", "1", "--after", "1003", "--filter", "carryingBackpack=no", "--top-k", "3"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip().startswith(("1.", "2.", "3."))]
    assert lines and all("camera=1" in ln for ln in lines)
    res = runner.invoke(app, ["index", "search", str(case), *search, "--query", str(root / "more" / "new0.png"),
                              "--filter", "colour=red"])
    assert res.exit_code == 2 and "unknown attribute 'colour'" in res.output and "field of this index: camera" in res.output
    res = runner.invoke(app, ["index", "add", str(case), *model, "--flip", "--data-root", str(root),
                              "--images", str(root / "more")])
    assert res.exit_code == 2 and "flip differ" in res.output
    res = runner.invoke(app, ["index", "add", str(case), *model, "--data-root", str(root), "--images",
                              str(root / "more")])
    assert res.exit_code == 0 and "13 images indexed (3 added)" in res.output, res.output
    res = runner.invoke(app, ["index", "export", str(case), "--out", str(tmp_path / "f.npz")])
    assert res.exit_code == 0 and "13 embeddings written" in res.output
    feats, identity = load_features_with_identity(tmp_path / "f.npz")
    assert len(feats) == 13 and identity["fingerprint"] == load_embedder(tiny_model, backend="torch").fingerprint
    bad = tmp_path / "bad.csv"
    bad.write_text("path,time\ngallery/img00.jpg,noon\n")
    res = runner.invoke(app, ["index", "build", *model, "--data-root", str(root), "--list", str(bad),
                              "--out", str(tmp_path / "other")])
    assert res.exit_code == 2 and "bad.csv:2: time 'noon'" in res.output
    assert json.loads((case / "manifest.json").read_text())["count"] == 13


def test_description_search_ranks_every_kept_row_by_the_formula(tmp_path):
    from xreid.explain.describe import Term
    from xreid.explain.description_score import description_scores
    from xreid.index.describe import search_description

    x, probs, cams, sites = _synthetic(tmp_path / "case", n=600, ann_min_rows=10_000)
    g = GalleryIndex.open(tmp_path / "case")
    terms = [Term("personalMale", False, "woman"), Term("carryingBackpack", True, "backpack")]
    rel = np.array([0.9, 0.55, 0.8])  # backpack unreliable
    res = search_description(g, terms, k=20, where=Filter(camera="2"), reliability=rel, rule="geomean",
                             unreliable_weight=0.5)
    kept = np.flatnonzero(cams == 2)
    assert res.lookalikes and g.lookalike_codes is not None
    stored = decode_probabilities(g.description_codes()[:, kept].T)[:, :2]  # what it ranks by (bin centres)
    expected = description_scores(stored, [False, True], np.array([1.0, 0.5]), "geomean")
    order = kept[np.lexsort((kept, -expected))][:20]
    assert res.ids.tolist() == order.tolist()
    assert res.candidates == len(kept) and all(r["camera"] == "market/2" for r in res.rows)
    assert res.scores == pytest.approx(np.sort(expected)[::-1][:20], rel=1e-5)
    assert [e.reliable for e in res.evidence[0]] == [True, False]
    assert res.evidence[0][1].probability == pytest.approx(stored[kept.tolist().index(res.ids[0]), 1], abs=1e-6)
    assert res.evidence[0][1].own == pytest.approx(g.probabilities([res.ids[0]])[0, 1], abs=1e-6)
    with pytest.raises(ValueError, match="no attribute hairShort"):
        search_description(g, [Term("hairShort", True, "short hair")])


def test_lookalikes_are_computed_over_the_whole_index_when_a_build_or_add_finishes(tmp_path, caplog):
    from xreid.explain.description_score import LOOKALIKE_WEIGHT, LOOKALIKES
    from xreid.index.lookalikes import lookalike_codes, nearest_rows

    case = tmp_path / "case"
    x, probs, cams, sites = _synthetic(case, n=900, ann_min_rows=10_000, batch=400)
    g = GalleryIndex.open(case)
    info = g.manifest["lookalikes"]
    assert info["rows"] == 900 and info["m"] == LOOKALIKES and info["weight"] == LOOKALIKE_WEIGHT
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = nearest_rows(unit, LOOKALIKES)
    assert (g.lookalikes == expected).all()
    assert (g.lookalike_codes == lookalike_codes(g.attribute_codes, expected)).all()
    assert (lookalike_codes(g.attribute_codes, expected, block=7) == g.lookalike_codes).all()  # blocks change nothing
    # p' = (1 - a) p + a mean of the look-alikes' p, on the stored bin centres
    p = g.probabilities()
    want = (1 - LOOKALIKE_WEIGHT) * p[7] + LOOKALIKE_WEIGHT * p[expected[7]].mean(0)
    assert decode_probabilities(g.lookalike_codes[:, 7]) == pytest.approx(want, abs=1 / 256)
    # an add recomputes them for every row: a new row may be an old row's look-alike
    identity = {"model": "synthetic", "fingerprint": "f" * 16, "preprocess": {}, "flip": False}
    twin = x[:5] + 1e-3
    with IndexWriter.append(case, identity, NAMES, {"head": "h", "head_fingerprint": "0"}) as w:
        w.commit(Rows([f"q/{i}.jpg" for i in range(5)], twin, probs[:5], [{}] * 5, np.zeros(5)))
        w.finish(ann_min_rows=10_000)
    g = GalleryIndex.open(case)
    assert g.manifest["lookalikes"]["rows"] == 905 and g.lookalikes[:5, 0].tolist() == list(range(900, 905))
    both = np.concatenate([unit, twin / np.linalg.norm(twin, axis=1, keepdims=True)]).astype(np.float32)
    assert (g.lookalikes == nearest_rows(both, LOOKALIKES)).all()  # the add's update equals a full search
    assert [p.name for p in case.glob("near-*.npz")] == [g.manifest["lookalikes"]["file"]]  # the old one removed
    # a damaged file is named; the search then reads each image alone
    (case / g.manifest["lookalikes"]["file"]).write_bytes(b"junk")
    with caplog.at_level("WARNING"):
        g = GalleryIndex.open(case)
    assert g.lookalike_codes is None and "near-" in caplog.text and (g.description_codes() == g.attribute_codes).all()
    from xreid.index.integrity import check_files

    assert not check_files(case, g.manifest).clean
    from xreid.workflows.index import check_index

    _, done = check_index(case, repair=True)
    assert any("look-alikes" in d for d in done) and GalleryIndex.open(case).lookalike_codes is not None


@pytest.mark.parametrize("rule", ["geomean", "min", "mean"])
def test_description_search_pruning_is_exact(tmp_path, monkeypatch, rule):
    from xreid.explain.describe import Term
    from xreid.index import describe as describe_mod

    _synthetic(tmp_path / "case", n=3000, ann_min_rows=10_000)
    g = GalleryIndex.open(tmp_path / "case")
    rel = np.array([0.9, 0.55, 0.8])
    for terms in ([Term("personalMale", True, "man"), Term("carryingBackpack", False, "no backpack")],
                  [Term("hairLong", True, "long hair"), Term("carryingBackpack", True, "backpack"),
                   Term("personalMale", False, "woman")]):
        for where in (None, Filter(camera="3")):
            full = describe_mod.search_description(g, terms, 15, where, rel, rule=rule, unreliable_weight=0.0)
            for sample in (16_384, 64):  # a small sample also takes the term-by-term pass
                monkeypatch.setattr(describe_mod, "PRUNE_FROM", 10)
                monkeypatch.setattr(describe_mod, "SAMPLE", sample)
                pruned = describe_mod.search_description(g, terms, 15, where, rel, rule=rule, unreliable_weight=0.0)
                monkeypatch.setattr(describe_mod, "PRUNE_FROM", 50_000)
                assert pruned.ids.tolist() == full.ids.tolist()
                assert pruned.scores == pytest.approx(full.scores)
                assert pruned.scored < full.scored and pruned.candidates == full.candidates


def test_cli_search_by_description_and_json(tiny_model, head_path, root, tmp_path):
    case, search = tmp_path / "case", ["--model", str(tiny_model), "--backend", "torch"]
    model = [*search, "--head", str(head_path)]
    res = runner.invoke(app, ["index", "build", *model, "--data-root", str(root), "--images", str(root / "gallery"),
                              "--out", str(case)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "d.json"
    res = runner.invoke(app, ["index", "search", str(case), *model, "--describe", "woman, rucksack, no hatt, fluffy",
                              "--top-k", "4", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "described: woman, backpack" in res.output and "not understood: fluffy" in res.output
    data = json.loads(out.read_text())
    g = GalleryIndex.open(case)
    p = decode_probabilities(g.description_codes().T)[:, :2]  # smoothed over each row's look-alikes
    expected = np.argsort(-np.sqrt((1 - p[:, 0]) * p[:, 1]), kind="stable")[:4]  # geomean, both reliable
    assert [r["id"] for r in data["results"]] == expected.tolist()
    first = data["results"][0]
    assert first["key"] == g.keys[first["id"]] and {e["name"] for e in first["evidence"]} == {"personalMale",
                                                                                             "carryingBackpack"}
    assert first["evidence"][0]["probability"] == pytest.approx(1 - p[first["id"], 0], abs=1e-4)
    assert data["description"]["unmatched"] == ["fluffy"] and first["reason"].startswith("Fits ")
    # image search with --json; then joined to a description
    res = runner.invoke(app, ["index", "search", str(case), *model, "--query", str(root / "more" / "new0.png"),
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["kind"] == "image" and len(data["results"]) == 10 and "distance" in data["results"][0]
    res = runner.invoke(app, ["index", "search", str(case), *model, "--query", str(root / "more" / "new0.png"),
                              "--describe", "backpack", "--json", str(out), "--top-k", "5"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["joined"] in ("rerank", "filter") and data["results"][0]["evidence"][0]["name"] == "carryingBackpack"
    res = runner.invoke(app, ["index", "search", str(case), *model, "--describe", "fluffy"])
    assert res.exit_code == 2 and "names an attribute of this index" in res.output
    res = runner.invoke(app, ["index", "search", str(case), *model])
    assert res.exit_code == 2 and "--describe" in res.output
