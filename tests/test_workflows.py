"""The explain workflow as a user meets it: identities, the query in its own gallery, bad files,
unusable options and outputs. Each test is one problem a new user's probe found."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import write_image
from xreid.cli import app
from xreid.explain.attribute_head import AttributeHead
from xreid.models.loading import load_embedder
from xreid.workflows.explain import explain, write_report

runner = CliRunner()
NAMES = ["personalMale", "hairLong"]


@pytest.fixture()
def head_path(tmp_path):
    path = tmp_path / "head.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 2)), np.array([0.5, 0.5]), {}).save(path)
    return path


@pytest.fixture()
def folder(tmp_path):
    """A gallery folder whose sub-folder names look like identities but are not known to be."""
    gal = tmp_path / "gallery"
    for i in range(4):
        write_image(gal / ("alice" if i < 2 else "bob") / f"{i}.jpg", seed=i)
    return gal


def _explain(tiny_model, head_path, query, gallery, root, **kw):
    return explain(load_embedder(tiny_model, backend="torch"), AttributeHead.load(head_path), query, gallery,
                   data_root=root, **kw)


def test_folder_names_never_mark_matches(tiny_model, head_path, folder, tmp_path):
    query = tmp_path / "q" / "alice" / "q.jpg"
    write_image(query, seed=0)  # the same picture as gallery/alice/0.jpg, another file
    out = _explain(tiny_model, head_path, query, folder, tmp_path)
    assert all(r.is_match is None for r in out.results)  # no identity is known
    first = out.results[0]
    assert first.key == "gallery/alice/0.jpg" and first.identical_to_query and first.distance < 1e-6
    assert any("same picture as the query" in n for n in out.notes)


def test_query_inside_its_gallery_is_left_out_and_said(tiny_model, head_path, folder, tmp_path):
    query = folder / "alice" / "1.jpg"
    out = _explain(tiny_model, head_path, query, folder, tmp_path)
    assert "gallery/alice/1.jpg" not in [r.key for r in out.results] and len(out.results) == 3
    assert any("query itself is in the gallery" in n for n in out.notes)


def test_npz_gallery_without_identities_marks_nothing(tiny_model, head_path, folder, tmp_path):
    feats = tmp_path / "g.npz"
    res = runner.invoke(app, ["embed", "--model", str(tiny_model), "--data-root", str(tmp_path), "--images",
                              str(folder), "--out", str(feats)])
    assert res.exit_code == 0, res.output
    query = tmp_path / "q.jpg"
    write_image(query, seed=3)
    out = _explain(tiny_model, head_path, query, feats, tmp_path)
    assert len(out.results) == 4 and all(r.is_match is None for r in out.results)


def test_csv_gallery_with_known_identities_marks_matches(tiny_model, head_path, folder, tmp_path):
    listing = tmp_path / "gallery.csv"
    listing.write_text("path,person_id\n" + "".join(
        f"gallery/{'alice' if i < 2 else 'bob'}/{i}.jpg,{'A' if i < 2 else 'B'}\n" for i in range(4)))
    query = tmp_path / "q.jpg"
    write_image(query, seed=2)
    out = _explain(tiny_model, head_path, query, listing, tmp_path, query_id="B")
    assert {r.key: r.is_match for r in out.results} == {
        "gallery/alice/0.jpg": False, "gallery/alice/1.jpg": False, "gallery/bob/2.jpg": True, "gallery/bob/3.jpg": True}


def test_bad_files_are_skipped_reported_and_kept_in_the_outputs(tiny_model, head_path, folder, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2100)  # a small "bomb" stands for a 20000 x 20000 PNG
    Image.new("RGB", (100, 100)).save(folder / "bob" / "bomb.png")  # 10000 px > 2 x 2100: DecompressionBombError
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    query = tmp_path / "q.jpg"
    write_image(query, seed=9)
    out = _explain(tiny_model, head_path, query, folder, tmp_path)
    assert len(out.results) == 4
    assert any("bomb.png" in s and "too large" in s for s in out.skipped)
    assert any("loop_a.jpg" in s and "loop" in s for s in out.skipped)
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    write_report(out, html, js)
    assert "bomb.png" in html.read_text() and any("bomb.png" in s for s in json.loads(js.read_text())["skipped"])


def test_symlink_loop_query_is_a_clear_error(tiny_model, head_path, folder, tmp_path):
    loop = tmp_path / "q.jpg"
    os.symlink(tmp_path / "q2.jpg", loop)
    os.symlink(loop, tmp_path / "q2.jpg")
    res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--head", str(head_path), "--query", str(loop),
                              "--gallery", str(folder), "--data-root", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "q.jpg" in res.output and "symbolic link" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_unwritable_output_is_refused_before_any_work(tiny_model, head_path, folder, tmp_path, monkeypatch):
    import xreid.workflows.explain as workflow

    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(workflow, "explain", lambda *a, **k: pytest.fail("work started before the output check"))
    for args in (["--out", str(tmp_path / "afile" / "r.html")],
                 ["--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "afile" / "r.json")],
                 ["--out", str(folder)]):
        res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--head", str(head_path), "--query",
                                  str(folder / "bob" / "2.jpg"), "--gallery", str(folder), *args])
        assert res.exit_code == 2 and ("cannot be written" in res.output or "is a folder" in res.output), res.output
    res = runner.invoke(app, ["embed", "--model", str(tiny_model), "--images", str(folder), "--out",
                              str(tmp_path / "afile" / "f.npz")])
    assert res.exit_code == 2 and "cannot be written" in res.output


@pytest.mark.parametrize("args,message", [
    (["--top-k", "0"], "top-k must be at least 1"),
    (["--top-k", "-3"], "top-k must be at least 1"),
    (["--threshold", "-1"], "threshold must be in [0, 0.5)"),
    (["--threshold", "0.7"], "threshold must be in [0, 0.5)"),
    (["--filter", "personalMale=yes,personalMale=no"], "named twice"),
    (["--maps", "pair,pair"], "named twice"),
])
def test_options_are_checked(tiny_model, head_path, folder, tmp_path, args, message):
    res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--head", str(head_path), "--query",
                              str(folder / "bob" / "2.jpg"), "--gallery", str(folder), "--data-root", str(tmp_path),
                              "--out", str(tmp_path / "r.html"), *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_head_whose_names_do_not_match_its_weights_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, weights=np.zeros((8, 3), np.float32), positive_ratio=np.zeros(3), names=np.array(["a", "b"]),
             meta=np.array("{}"))
    with pytest.raises(ValueError, match="bad.npz: attribute head: 2 attribute names but weights of shape"):
        AttributeHead.load(path)


def test_head_fitted_on_another_model_of_the_same_width_is_refused(tiny_model, head_path, folder, tmp_path):
    other = tmp_path / "other.pt"
    shutil.copy(tiny_model, other)
    with open(other, "ab") as fh:  # same weights, another file: another fingerprint
        fh.write(b"\0")
    embedder = load_embedder(tiny_model, backend="torch")
    head = AttributeHead.load(head_path)
    head.meta["model_fingerprint"] = load_embedder(other, backend="torch").fingerprint
    assert head.meta["model_fingerprint"] != embedder.fingerprint
    with pytest.raises(ValueError, match="fitted on model"):
        explain(embedder, head, folder / "bob" / "2.jpg", folder, data_root=tmp_path)
    head.meta["model_fingerprint"] = embedder.fingerprint
    assert explain(embedder, head, folder / "bob" / "2.jpg", folder, data_root=tmp_path).results


def test_occlusion_maps_for_an_xreid_model(tiny_model, head_path, folder, tmp_path):
    out = _explain(tiny_model, head_path, folder / "bob" / "2.jpg", folder, tmp_path, top_k=2, maps="occlusion")
    kinds = {m.kind for m in out.maps.maps}
    assert kinds == {"occlusion-pair"} and not out.maps.substituted
    pairs = {(m.image, m.pair) for m in out.maps.maps}
    assert {("query", r.key) for r in out.results} <= pairs and {(r.key, None) for r in out.results} <= pairs


def test_npz_gallery_from_another_model_is_refused(tiny_model, head_path, folder, tmp_path):
    feats = tmp_path / "g.npz"
    res = runner.invoke(app, ["embed", "--model", str(tiny_model), "--data-root", str(tmp_path), "--images",
                              str(folder), "--out", str(feats), "--flip"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--head", str(head_path), "--query",
                              str(folder / "bob" / "2.jpg"), "--gallery", str(feats), "--data-root", str(tmp_path),
                              "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "g.npz" in res.output and "flip" in res.output, res.output


def test_corrupt_black_box_model_is_one_clear_line(tmp_path):
    bad = tmp_path / "model.xml"
    bad.write_text('<?xml version="1.0"?>\n<net name="x" version="11"><layers><layer id="0"')
    res = runner.invoke(app, ["eval", "--model", str(bad), "--data-root", str(tmp_path)])
    assert res.exit_code == 2
    message = res.output.strip()
    assert message.startswith(f"error: {bad}: cannot load OpenVINO model") and len(message.splitlines()) == 1, message
