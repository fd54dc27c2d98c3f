"""Per-camera centring (`xreid adapt ... --out SITE.xcam`): the formula by hand, the file bound to its
base model, and a black-box model centred end to end (embedding by camera, an index built from a
camera list)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import camera_crops
from test_serve_browser import page  # noqa: F401  (fixture)

from xreid.cli import app
from xreid.models.camera_centring import CameraCentring, camera_means, centre


def test_camera_means_and_centring_by_hand():
    """Unit embeddings (0.6, 0.8), (0, 1) of camera a, (1, 0) and (0.8, 0.6) of camera b, (0, 1) of no
    camera (not counted), and (1, 0) of camera c (1 crop: under the minimum of 2, named): a's mean
    (0.3, 0.9), b's (0.9, 0.3). Centring (3, 4) on a's mean: (0.6, 0.8) - (0.3, 0.9) = (0.3, -0.1),
    scaled to unit length. A crop of no known camera goes to the nearest mean: (1, 0) to b's
    (similarity 0.9 against 0.3), giving (0.1, -0.3) scaled."""
    feats = np.array([[3.0, 4.0], [0.0, 2.0], [5.0, 0.0], [4.0, 3.0], [0.0, 0.5], [2.0, 0.0]])
    means, left_out = camera_means(feats, ["a", "a", "b", "b", "", "c"], min_crops=2)
    assert set(means) == {"a", "b"} and left_out == {"c": 1}
    np.testing.assert_allclose(means["a"], [0.3, 0.9])
    np.testing.assert_allclose(means["b"], [0.9, 0.3])
    np.testing.assert_allclose(centre(feats[:1], means["a"]), [[0.3 / 0.1 ** 0.5, -0.1 / 0.1 ** 0.5]], rtol=1e-6)
    c = CameraCentring("m", {"fingerprint": "fp"}, ("a", "b"), np.stack([means["a"], means["b"]]), (2, 2))
    np.testing.assert_allclose(c.centred(feats[:1], "a"), centre(feats[:1], means["a"]))
    np.testing.assert_allclose(c.centred(feats[[2, 0]], None), [[0.1 / 0.1 ** 0.5, -0.3 / 0.1 ** 0.5],
                                                                [0.3 / 0.1 ** 0.5, -0.1 / 0.1 ** 0.5]], rtol=1e-6)
    np.testing.assert_allclose(c.centred(feats[2:3], "c"), centre(feats[2:3], means["b"]))  # c has no mean
    with pytest.raises(ValueError, match="one camera per crop"):
        camera_means(feats, ["a"], 2)
    with pytest.raises(ValueError, match="dimensions"):
        centre(feats, np.zeros(3))


@pytest.fixture()
def black_box(tmp_path, tiny_model):
    """The tiny xreid model exported to ONNX: a model xreid cannot fine-tune."""
    from xreid.workflows.export import export_model

    torch.set_num_threads(1)
    return export_model(str(tiny_model), "onnx", tmp_path / "tiny.onnx")["path"]


def _centre(tmp_path, model, rows, crops, *extra):
    (tmp_path / "list.csv").write_text("path,camera\n" + "".join(f"{p},{c}\n" for p, c in rows))
    out = tmp_path / "site.xcam"
    res = CliRunner().invoke(app, ["adapt", str(tmp_path / "list.csv"), "--out", str(out), "--model", str(model),
                                   "--data-root", str(crops), *extra])
    return out, res


def test_a_black_box_centred_per_camera_end_to_end(tmp_path, black_box):
    """`xreid adapt LIST --model X.onnx --out site.xcam`: each camera with enough crops gets the mean of
    its crops' unit embeddings (one with too few is named); `--model site.xcam` then embeds a crop of a
    known camera centred on its camera's mean, any other on its nearest mean, and an index built from
    the camera list holds those vectors."""
    from xreid.explain.attribute_head import AttributeHead
    from xreid.index.gallery import GalleryIndex
    from xreid.models.loading import load_embedder
    from xreid.training.camera_norm import MIN_CROPS
    from xreid.workflows.index import build_index

    crops = tmp_path / "crops"
    rows = camera_crops(crops) + camera_crops(crops, cameras=("c3",), per=MIN_CROPS - 1, seed=1)
    # three crops of camera c1 that look like c2's: their nearest mean is not their camera's
    rows += [(p, "c1") for p, c in camera_crops(crops, cameras=("x", "c1-odd"), per=3, seed=2) if c == "c1-odd"]
    out, res = _centre(tmp_path, black_box, rows, crops)
    assert res.exit_code == 0, res.output
    assert "a mean for 2 camera(s): c1, c2" in res.output and f"c3 ({MIN_CROPS - 1})" in res.output
    base = load_embedder(black_box)
    raw = base.embed_paths([crops / p for p, _ in rows]).features
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    saved = CameraCentring.load(out)
    assert saved.cameras == ("c1", "c2") and saved.counts == (13, 10) and saved.base_fingerprint == base.fingerprint
    np.testing.assert_allclose(saved.means[0], unit[list(range(10)) + [-3, -2, -1]].mean(0), atol=1e-5)
    np.testing.assert_allclose(saved.means[1], unit[10:20].mean(0), atol=1e-5)

    emb = load_embedder(out)
    assert emb.name == "site" and emb.fingerprint != base.fingerprint and emb.camera_names() == ("c1", "c2")
    picked = [0, 10, 20, 1, 11]
    got = emb.embed_paths([crops / rows[i][0] for i in picked], cameras=["c1", "c2", "c3", None, None]).features

    def want(i, mean):
        v = unit[i] - mean
        return v / np.linalg.norm(v)

    def nearest(i):
        return saved.means[int(np.argmax(saved.means @ unit[i]))]

    np.testing.assert_allclose(got[0], want(0, saved.means[0]), atol=1e-4)
    np.testing.assert_allclose(got[1], want(10, saved.means[1]), atol=1e-4)
    for k, i in enumerate(picked[2:], start=2):  # too few crops (c3), or unknown: the nearest mean
        np.testing.assert_allclose(got[k], want(i, nearest(i)), atol=1e-4)
    np.testing.assert_allclose(nearest(1), saved.means[0])  # the crops' colour casts tell their cameras apart
    np.testing.assert_allclose(nearest(11), saved.means[1])
    assert np.abs(got[0] - want(0, saved.means[1])).max() > 1e-3  # the camera's own mean matters
    np.testing.assert_allclose(emb.embed_paths([crops / rows[1][0]]).features[0], got[3], atol=1e-5)

    dim = got.shape[1]
    build_index(emb, AttributeHead(["a", "b"], np.zeros((dim, 2)), np.full(2, 0.5)), crops, tmp_path / "case",
                list_file=tmp_path / "list.csv", progress=False)
    index = GalleryIndex.open(tmp_path / "case", ann=False)
    np.testing.assert_allclose(nearest(len(rows) - 1), saved.means[1])  # an odd c1 crop: nearest is c2's
    for i in range(len(index.keys)):
        j = [p for p, _ in rows].index(index.key(i))
        cam = rows[j][1]
        mean = saved.means[saved.cameras.index(cam)] if cam in saved.cameras else nearest(j)
        np.testing.assert_allclose(index.vectors_of([i])[0], want(j, mean), atol=2e-3)


def test_centring_refuses_what_it_cannot_do(tmp_path, black_box, tiny_model):
    """No cameras in the input, training options with a .xcam output, an existing output, a changed base
    model and a damaged file: each a clear error naming the file."""
    from xreid.binding import IdentityMismatch
    from xreid.models.loading import load_embedder

    crops = tmp_path / "crops"
    rows = camera_crops(crops)
    (tmp_path / "nocams.csv").write_text("path\n" + "".join(f"{p}\n" for p, _ in rows))
    res = CliRunner().invoke(app, ["adapt", str(tmp_path / "nocams.csv"), "--out", str(tmp_path / "x.xcam"),
                                   "--model", str(black_box), "--data-root", str(crops)])
    assert res.exit_code != 0 and "no crop names its camera" in res.output and "nocams.csv" in res.output
    out, res = _centre(tmp_path, black_box, rows, crops, "--rounds", "3")
    assert res.exit_code != 0 and "no training" in res.output and not out.exists()
    out, res = _centre(tmp_path, black_box, rows, crops)
    assert res.exit_code == 0, res.output
    again = CliRunner().invoke(app, ["adapt", str(tmp_path / "list.csv"), "--out", str(out), "--model",
                                     str(black_box), "--data-root", str(crops)])
    assert again.exit_code != 0 and "already exists" in again.output

    from xreid.models.checkpoint import load_model_file, save_model_file
    from xreid.workflows.export import export_model

    net, ckpt = load_model_file(tiny_model)  # another model exported to the same path
    with torch.no_grad():
        next(net.parameters()).mul_(1.5)
    save_model_file(net, net.spec, tmp_path / "other.pt", meta={})
    export_model(str(tmp_path / "other.pt"), "onnx", black_box)
    with pytest.raises(IdentityMismatch, match="site.xcam"):
        load_embedder(out)
    (tmp_path / "bad.xcam").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.xcam"):
        load_embedder(tmp_path / "bad.xcam")
    (tmp_path / "cut.xcam").write_bytes(out.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match="cut.xcam: unreadable"):
        load_embedder(tmp_path / "cut.xcam")
    np.save(tmp_path / "arr.npy", np.zeros(3))
    (tmp_path / "arr.npy").rename(tmp_path / "arr.xcam")
    with pytest.raises(ValueError, match="arr.xcam: not a camera-centred model"):
        load_embedder(tmp_path / "arr.xcam")


def test_a_centred_model_is_used_as_it_was_measured(tmp_path, black_box):
    """The means hold for the set-up they were measured with: flip averaging asked for on load is refused,
    and a base model that moved is named with the .xcam file."""
    from xreid.binding import IdentityMismatch
    from xreid.models.loading import load_embedder

    crops = tmp_path / "crops"
    out, res = _centre(tmp_path, black_box, camera_crops(crops), crops)
    assert res.exit_code == 0, res.output
    with pytest.raises(IdentityMismatch, match="site.xcam: its means were measured with another model set-up"):
        load_embedder(out, flip_average=True)
    Path(black_box).rename(tmp_path / "moved.onnx")
    with pytest.raises(FileNotFoundError, match="site.xcam: its base model"):
        load_embedder(out)


def test_a_centred_model_gets_its_own_head_and_explains(tmp_path, black_box, mini_peta):
    """The centred model is a model like any other: `xreid attributes fit --model SITE.xcam` fits a head on
    its embeddings, which `explain` then uses (the black-box maps); the base model's head is refused."""
    import json

    crops = tmp_path / "crops"
    out, res = _centre(tmp_path, black_box, camera_crops(crops), crops)
    assert res.exit_code == 0, res.output
    head = tmp_path / "head.npz"
    runner = CliRunner()
    res = runner.invoke(app, ["attributes", "fit", "--model", str(out), "--data-root", str(mini_peta), "--out", str(head),
                              "--epochs", "20"])
    assert res.exit_code == 0, res.output
    js = tmp_path / "r.json"
    res = runner.invoke(app, ["explain", "--model", str(out), "--head", str(head), "--data-root", str(mini_peta),
                              "--protocol", "peta-reid", "--test-set", "VIPeR", "--query-index", "1",
                              "--out", str(tmp_path / "r.html"), "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert json.loads(js.read_text())["results"]
    base_head = tmp_path / "base_head.npz"
    res = runner.invoke(app, ["attributes", "fit", "--model", str(black_box), "--data-root", str(mini_peta),
                              "--out", str(base_head), "--epochs", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["explain", "--model", str(out), "--head", str(base_head), "--data-root", str(mini_peta),
                              "--protocol", "peta-reid", "--test-set", "VIPeR", "--query-index", "1",
                              "--out", str(tmp_path / "r2.html")])
    assert res.exit_code != 0 and "base_head.npz" in res.output


def test_a_query_may_say_its_camera_in_the_service_and_the_cli(tmp_path, black_box, page):
    """A case built with a centred model: GET /api/info lists the cameras it embeds in their own way; a
    search naming the uploads' camera ranks by that camera's embedding of them, one without a camera by
    the nearest mean's, and a camera the model does not know is refused naming the known ones; `xreid
    index search --query-camera` does the same."""
    import io

    from fastapi.testclient import TestClient

    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.loading import load_embedder
    from xreid.serve.app import create_app
    from xreid.serve.case import CaseSession
    from xreid.workflows.index import build_index

    crops = tmp_path / "crops"
    rows = camera_crops(crops)
    rows += [(p, "c1") for p, c in camera_crops(crops, cameras=("x", "c1-odd"), per=3, seed=2) if c == "c1-odd"]
    out, res = _centre(tmp_path, black_box, rows, crops)
    assert res.exit_code == 0, res.output
    emb = load_embedder(out)
    dim = emb.embed_paths([crops / rows[0][0]]).features.shape[1]
    head = AttributeHead(["a", "b"], np.zeros((dim, 2)), np.full(2, 0.5))
    head.meta.update(model=emb.name, model_fingerprint=emb.fingerprint)
    head.save(tmp_path / "head.npz")
    build_index(emb, head, crops, tmp_path / "case", list_file=tmp_path / "list.csv", progress=False)
    session = CaseSession(tmp_path / "case", emb, AttributeHead.load(tmp_path / "head.npz"), crops)
    odd = crops / rows[-1][0]  # a c1 crop that looks like c2's: its nearest mean is c2's
    try:
        client = TestClient(create_app(session))
        assert client.get("/api/info").json()["query_cameras"] == ["c1", "c2"]
        up = client.post("/api/uploads?name=q.png", content=odd.read_bytes(),
                         headers={"content-type": "application/octet-stream"}).json()
        by_camera = client.post("/api/search", json={"uploads": [up["id"]], "k": 5, "camera": "c1"}).json()
        unknown = client.post("/api/search", json={"uploads": [up["id"]], "k": 5}).json()
        assert by_camera["query"]["camera"] == "c1" and unknown["query"]["camera"] is None
        for reply, cam in ((by_camera, "c1"), (unknown, None)):
            q = emb.for_camera(cam).embed_paths([odd]).features[0]
            dist = 1 - session.index.vectors_of([r["id"] for r in reply["results"]]) @ (q / np.linalg.norm(q))
            np.testing.assert_allclose([r["distance"] for r in reply["results"]], dist, atol=2e-3)
        assert [r["distance"] for r in by_camera["results"]] != [r["distance"] for r in unknown["results"]]
        items_only = client.post("/api/search", json={"items": [0], "k": 3, "camera": "c1"}).json()
        assert items_only["query"]["camera"] is None  # no upload was embedded as c1's
        bad = client.post("/api/search", json={"uploads": [up["id"]], "camera": "c9"})
        assert bad.status_code == 400 and "c1, c2" in str(bad.json())
    finally:
        session.close()
    _page_sends_the_query_camera(CaseSession(tmp_path / "case", emb, AttributeHead.load(tmp_path / "head.npz"), crops),
                                 odd, page)
    base = ["index", "search", str(tmp_path / "case"), "--model", str(out), "--query", str(odd), "--top-k", "3"]
    ok = CliRunner().invoke(app, base + ["--query-camera", "c1"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, base + ["--query-camera", "c9"])
    assert bad.exit_code != 0 and "the model knows c1, c2" in bad.output


def _page_sends_the_query_camera(session, image, page) -> None:
    """The search page offers the model's cameras for an upload and sends the one chosen with the search."""
    from test_serve_browser import serving

    with serving(session) as url:
        page.goto(url)
        page.wait_for_selector("#attributes select")
        assert page.locator("#query-camera option").all_inner_texts() == ["unknown", "c1", "c2"]
        page.select_option("#query-camera", "c1")
        with page.expect_request(lambda r: r.url.endswith("/api/search")) as request:
            page.set_input_files("#file", str(image))
        assert request.value.post_data_json["camera"] == "c1"
        page.wait_for_selector(".result")
        assert not page.errors, page.errors


def test_fused_evaluation_refuses_queries_of_unknown_camera():
    """`xreid eval --fusion F --no-query-cameras` is refused, not run with the cameras silently."""
    from xreid.errors import InvalidInput
    from xreid.workflows.evaluate import evaluate_model

    with pytest.raises(InvalidInput, match="no-query-cameras"):
        evaluate_model(None, "peta-reid", Path("."), fusion=object(), query_cameras=False)
