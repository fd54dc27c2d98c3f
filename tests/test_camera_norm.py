"""Per-camera normalisation statistics: estimated by hand, stored in the model file, and used by every
path that knows a crop's camera (evaluation, index build, `xreid adapt --rounds 0`)."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import camera_crops

from xreid.models.camera_norm import running_statistics, with_statistics
from xreid.training.camera_norm import estimate_camera_norms


def _hand_images():
    """Camera 'a': two 2 x 2 crops (channel 0: 0 then 255; channel 1: 51 in both; channel 2: 102 then
    204); camera 'b': one crop; one crop of no known camera."""
    a0 = np.zeros((2, 2, 3), np.uint8)
    a0[..., 1], a0[..., 2] = 51, 102
    a1 = a0.copy()
    a1[..., 0], a1[..., 2] = 255, 204
    other = np.full((2, 2, 3), 9, np.uint8)
    return np.stack([a0, a1, other, other]), ["a", "a", "b", ""]


def test_camera_statistics_by_hand():
    """Camera a's eight values per channel, in [0, 1]: channel 0 four 0s and four 1s (mean 0.5,
    unbiased variance 8 x 0.25 / 7), channel 1 all 0.2 (variance 0), channel 2 four 0.4s and four 0.8s
    (mean 0.6, variance 8 x 0.04 / 7). Camera b (1 crop) is below the minimum and is named; the
    unnamed crop is never a camera. The model is not changed."""
    images, cameras = _hand_images()
    net = nn.Sequential(nn.BatchNorm2d(3)).eval()
    norms, left_out = estimate_camera_norms(net, images, cameras, min_crops=2)
    assert set(norms) == {"a"} and left_out == {"b": 1}
    mean, var = norms["a"]["0"]
    torch.testing.assert_close(mean, torch.tensor([0.5, 0.2, 0.6]))
    torch.testing.assert_close(var, torch.tensor([2 / 7, 0.0, 0.32 / 7]))
    torch.testing.assert_close(net[0].running_mean, torch.zeros(3))  # untouched
    torch.testing.assert_close(net[0].running_var, torch.ones(3))
    assert not net.training


def test_a_camera_of_one_crop_past_a_whole_batch_is_estimated(tiny_model):
    """65 crops in batches of 64 would leave a batch of one, which a batch-norm layer in training mode
    refuses: it joins the batch before (found by a camera of 65 crops)."""
    from xreid.models.checkpoint import load_model_file
    from xreid.training.camera_norm import batch_bounds

    assert batch_bounds(65, 64) == [(0, 65)] and batch_bounds(66, 64) == [(0, 64), (64, 66)]
    assert batch_bounds(1, 64) == [(0, 1)] and batch_bounds(129, 64) == [(0, 64), (64, 129)]
    with pytest.raises(ValueError, match="at least 2"):
        batch_bounds(10, 1)
    net, ckpt = load_model_file(tiny_model)
    h, w = ckpt["spec"]["input_size"]
    images = np.random.default_rng(0).integers(0, 256, (9, h, w, 3), dtype=np.uint8)
    norms, _ = estimate_camera_norms(net.float(), images, ["a"] * 9, batch=4, min_crops=2)
    assert set(norms) == {"a"}


def test_with_statistics_normalises_with_the_camera_and_refuses_a_mismatch():
    net = nn.Sequential(nn.BatchNorm2d(3)).eval()
    stats = {"0": torch.tensor([[0.5, 0.2, 0.6], [0.25, 1.0, 0.04]])}
    cam = with_statistics(net, stats)
    x = torch.tensor([1.0, 0.2, 0.8]).view(1, 3, 1, 1)
    expected = (torch.tensor([1.0, 0.2, 0.8]) - stats["0"][0]) / torch.sqrt(stats["0"][1] + 1e-5)
    torch.testing.assert_close(cam(x).view(3), expected)
    torch.testing.assert_close(net(x).view(3), x.view(3) / (1 + 1e-5) ** 0.5)  # the original keeps its own
    assert running_statistics(cam)["0"].shape == (2, 3)
    with pytest.raises(ValueError, match="do not fit"):
        with_statistics(net, {"1": stats["0"]})
    with pytest.raises(ValueError, match="channels"):
        with_statistics(net, {"0": torch.zeros(2, 4)})


def test_nearest_statistics_by_hand():
    """One channel. Crop 0 (mean 0, variance 1) fits camera a (0, 1) exactly: KL 0, against
    0.5 * (1 + 4 - 1) = 2 for b (mean 2, variance 1). Crop 1 (mean 0, variance 4): a costs
    0.5 * (log(1 / 4) + 4 - 1) = 0.81, c (mean 0.5, variance 4) 0.5 * (0 + (4 + 0.25) / 4 - 1) = 0.03,
    b 0.5 * (log(1 / 4) + 4 + 4 - 1) = 2.81: c, although a's mean is nearer."""
    from xreid.models.camera_norm import nearest_statistics

    cams = {"a": np.array([[0.0], [1.0]]), "b": np.array([[2.0], [1.0]]), "c": np.array([[0.5], [4.0]])}
    assert nearest_statistics(np.array([[0.0], [0.0]]), np.array([[1.0], [4.0]]), cams, eps=0) == ["a", "c"]
    assert nearest_statistics(np.array([[0.0]]), np.array([[4.0]]), {"a": cams["a"], "b": cams["b"]}) == ["a"]


def test_first_norm_input_stops_at_the_first_batch_norm_run():
    class Boom(nn.Module):
        def forward(self, x):
            raise AssertionError("the forward pass went past the first batch-norm layer")

    from xreid.models.camera_norm import first_norm_input

    conv = nn.Conv2d(3, 4, 1)
    net = nn.Sequential(conv, nn.BatchNorm2d(4), Boom(), nn.BatchNorm2d(4)).eval()
    x = torch.rand(2, 3, 5, 5)
    name, got = first_norm_input(net, x)
    assert name == "1"
    torch.testing.assert_close(got, conv(x))
    with pytest.raises(ValueError, match="no batch-norm"):
        first_norm_input(nn.Sequential(nn.Conv2d(3, 4, 1)), x)


def _adapted(tmp_path, tiny_model, rows, crops):
    """`xreid adapt --rounds 0` on a camera list: the model file with each camera's statistics."""
    from typer.testing import CliRunner

    from xreid.cli import app

    (tmp_path / "list.csv").write_text("path,camera\n" + "".join(f"{p},{c}\n" for p, c in rows))
    out = tmp_path / "cn.pt"
    res = CliRunner().invoke(app, ["adapt", str(tmp_path / "list.csv"), "--out", str(out), "--model", str(tiny_model),
                                   "--rounds", "0", "--min-samples", "2", "--data-root", str(crops)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_adapt_stores_each_cameras_statistics_and_the_embedder_routes_by_camera(tmp_path, tiny_model):
    """`xreid adapt --rounds 0`: the weights are the model's, each camera with enough crops gets its
    statistics, one with too few is named; embedding with cameras gives each crop its camera's
    variant; a camera without statistics, an unknown one and a crop embedded without cameras get the
    statistics of the camera the crop looks most like."""
    from xreid.models.checkpoint import read_camera_norms
    from xreid.models.loading import load_embedder
    from xreid.training.camera_norm import MIN_CROPS

    torch.set_num_threads(1)
    crops = tmp_path / "crops"
    rows = camera_crops(crops) + camera_crops(crops, cameras=("c3",), per=MIN_CROPS - 1, seed=1)
    out, output = _adapted(tmp_path, tiny_model, rows, crops)
    assert "statistics for 2 camera(s)" in output and f"c3 ({MIN_CROPS - 1})" in output
    assert sorted(read_camera_norms(out)) == ["c1", "c2"]
    assert read_camera_norms(tiny_model) == {}
    meta = torch.load(out, weights_only=True)["meta"]["adapted"]
    assert meta["cameras"] == ["c1", "c2"] and meta["cameras_left_out"] == {"c3": MIN_CROPS - 1}
    base, emb = load_embedder(tiny_model), load_embedder(out)
    assert emb.camera_names() == ("c1", "c2") and base.camera_names() == ()
    paths = [crops / rows[0][0], crops / rows[10][0], crops / "missing.png", crops / rows[20][0], crops / rows[1][0]]
    cams = ["c1", "c2", "c1", "c3", None]
    res = emb.embed_paths(paths, cameras=cams)
    assert res.kept == [0, 1, 3, 4] and len(res.skipped) == 1 and "missing.png" in str(res.skipped[0])
    own = base.embed_paths([paths[i] for i in res.kept]).features
    np.testing.assert_allclose(res.features[0], emb.for_camera("c1").embed_paths([paths[0]]).features[0], atol=1e-5)
    np.testing.assert_allclose(res.features[1], emb.for_camera("c2").embed_paths([paths[1]]).features[0], atol=1e-5)
    assert np.abs(res.features[:2] - own[:2]).max() > 1e-2  # the camera's statistics change the embedding
    # c3 (no statistics), unknown, and crops embedded without cameras: the camera each looks most like
    from xreid.models.camera_norm import nearest_cameras

    kept = [paths[i] for i in res.kept]
    inputs = emb.preprocess.apply(np.stack([np.asarray(__import__("PIL.Image").Image.open(p).convert("RGB")
                                                       .resize((emb.preprocess.width, emb.preprocess.height)))
                                            for p in kept]))
    nearest = nearest_cameras(emb.model, emb.camera_norms, torch.from_numpy(inputs))
    assert nearest[0] == "c1" and nearest[1] == "c2"  # a known camera's crop looks most like its camera
    for row, cam in enumerate(nearest):
        want = emb.for_camera(cam).embed_paths([kept[row]]).features[0]
        np.testing.assert_allclose(emb.embed_paths([kept[row]]).features[0], want, atol=3e-4)
        if row >= 2:  # embedded in a batch of two: float error of another batch size
            np.testing.assert_allclose(res.features[row], want, atol=3e-4)
    assert emb.for_camera("c3") is emb and emb.for_camera("c1") is emb.for_camera("c1")
    # without --camera-norm: the model as it was
    from typer.testing import CliRunner

    from xreid.cli import app

    res = CliRunner().invoke(app, ["adapt", str(tmp_path / "list.csv"), "--out", str(tmp_path / "no.pt"), "--model",
                                   str(tiny_model), "--rounds", "0", "--no-camera-norm", "--data-root", str(crops)])
    assert res.exit_code == 0 and "statistics" not in res.output, res.output
    assert read_camera_norms(tmp_path / "no.pt") == {}


def test_index_build_and_evaluation_embed_each_crop_with_its_camera(tmp_path, tiny_model):
    """A case built from a camera list holds each crop's vector from its camera's statistics; evaluation
    hands each protocol image's camera to the embedder."""
    from xreid.data.protocol import Protocol, TestSet
    from xreid.data.records import ImageRecord
    from xreid.evaluation.evaluate import evaluate_protocol
    from xreid.explain.attribute_head import AttributeHead
    from xreid.index.gallery import GalleryIndex
    from xreid.models.loading import load_embedder
    from xreid.workflows.index import build_index

    torch.set_num_threads(1)
    crops = tmp_path / "crops"
    rows = camera_crops(crops)
    out, _ = _adapted(tmp_path, tiny_model, rows, crops)
    emb, base = load_embedder(out), load_embedder(tiny_model)
    dim = emb.embed_paths([crops / rows[0][0]]).features.shape[1]
    head = AttributeHead(["a", "b"], np.zeros((dim, 2)), np.full(2, 0.5))
    build_index(emb, head, crops, tmp_path / "case", list_file=tmp_path / "list.csv", progress=False)
    index = GalleryIndex.open(tmp_path / "case", ann=False)
    for i in range(len(index.keys)):
        key = index.key(i)
        camera = dict(rows)[key]
        want = emb.for_camera(camera).embed_paths([crops / key]).features[0]
        plain = base.embed_paths([crops / key]).features[0]  # the network's own statistics
        np.testing.assert_allclose(index.vectors_of([i])[0], want / np.linalg.norm(want), atol=2e-3)
        assert np.abs(index.vectors_of([i])[0] - plain / np.linalg.norm(plain)).max() > 1e-3

    calls = []
    original = emb.embed_paths

    def spy(paths, batch_size=64, progress=False, on_batch=None, cameras=None):
        calls.append(None if cameras is None else list(cameras))
        return original(paths, batch_size, progress, on_batch, cameras)

    emb.embed_paths = spy
    recs = [ImageRecord(path=p, pid=f"p{j % 5}", cam=c) for j, (p, c) in enumerate(rows)]
    proto = Protocol("cams", crops, [TestSet("s", recs[:5] + recs[10:15], recs[5:10] + recs[15:])], [], [], [])
    with_cams = evaluate_protocol(emb, proto, progress=False)
    assert calls == [[r.cam for r in proto.test_images()]]
    # queries as uploads of unknown camera: embedded again without cameras, the galleries as before
    calls.clear()
    unknown = evaluate_protocol(emb, proto, progress=False, query_cameras=False)
    assert calls == [[r.cam for r in proto.test_images()], None]
    assert unknown.options["query_cameras"] is False
    # each synthetic camera's crops are told apart by their first-layer statistics, so the queries of
    # unknown camera are embedded with their own camera's statistics again (with the network's own,
    # as before the nearest camera, the figures differed)
    assert unknown.mean["mAP"] == pytest.approx(with_cams.mean["mAP"], abs=1e-9)


def test_a_gallery_of_known_cameras_is_embedded_with_their_statistics(tmp_path, tiny_model):
    """The explanation's in-memory gallery (a folder or list with cameras) ranks by the same vectors an
    index of the same list holds: each image with its camera's statistics."""
    from xreid.models.loading import load_embedder
    from xreid.workflows.explain import _embed_files

    torch.set_num_threads(1)
    crops = tmp_path / "crops"
    rows = camera_crops(crops)
    out, _ = _adapted(tmp_path, tiny_model, rows, crops)
    emb = load_embedder(out)
    picked = [rows[0], rows[15]]
    gal = _embed_files(emb, [crops / p for p, _ in picked], [p for p, _ in picked], [None, None], [],
                       cameras=[c for _, c in picked])
    for (p, c), v in zip(picked, gal.vectors):
        want = emb.for_camera(c).embed_paths([crops / p]).features[0]
        np.testing.assert_allclose(v / np.linalg.norm(v), want / np.linalg.norm(want), atol=1e-4)


def test_appearance_groups_split_crops_by_their_look():
    """Two looks (dark and bright crops, 10 each, mixed): two groups, each one look; too few crops for
    two groups of ``min_crops``: no groups."""
    from xreid.models.camera_norm import APPEARANCE_GROUP
    from xreid.training.camera_norm import appearance_groups

    rng = np.random.default_rng(0)
    dark = rng.normal(50, 20, (10, 8, 4, 3))
    bright = rng.normal(200, 20, (10, 8, 4, 3))
    images = np.clip(np.concatenate([dark, bright]), 0, 255).astype(np.uint8)[rng.permutation(20)]
    is_dark = images.mean((1, 2, 3)) < 128
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    names = np.array(appearance_groups(net, images, groups=4, min_crops=8))
    assert set(names) == {APPEARANCE_GROUP + "01", APPEARANCE_GROUP + "02"}  # 20 // 8 = 2 groups at most
    assert len(set(names[is_dark])) == 1 and len(set(names[~is_dark])) == 1 and names[is_dark][0] != names[~is_dark][0]
    assert appearance_groups(net, images[:15], groups=4, min_crops=8) == [""] * 15


def test_adapt_without_cameras_groups_crops_by_look(tmp_path, tiny_model):
    """`xreid adapt FOLDER --rounds 0` on crops that name no camera: statistics per appearance group;
    the groups are no cameras a query can name, and every crop is embedded with its nearest group's."""
    from typer.testing import CliRunner

    from xreid.cli import app
    from xreid.models.camera_norm import is_appearance_group
    from xreid.models.checkpoint import read_camera_norms
    from xreid.models.loading import load_embedder

    torch.set_num_threads(1)
    crops = tmp_path / "crops"
    rows = camera_crops(crops)  # two colour casts, 10 crops each; the folder names no camera
    out = tmp_path / "groups.pt"
    res = CliRunner().invoke(app, ["adapt", str(crops), "--out", str(out), "--model", str(tiny_model), "--rounds", "0",
                                   "--min-samples", "2"])
    assert res.exit_code == 0, res.output
    assert "statistics for 2 appearance group(s) (the crops name no cameras)" in res.output
    norms = read_camera_norms(out)
    assert len(norms) == 2 and all(is_appearance_group(g) for g in norms)
    emb = load_embedder(out)
    assert emb.camera_names() == ()  # nothing for the page's "photo's camera"
    paths = [crops / p for p, _ in rows]
    feats = emb.embed_paths(paths).features
    plain = load_embedder(tiny_model).embed_paths(paths).features
    assert np.abs(feats - plain).max() > 1e-2
    groups = {g: emb.for_camera(g).embed_paths(paths).features for g in norms}
    picked = [min(groups, key=lambda g: np.abs(groups[g][i] - feats[i]).max()) for i in range(len(paths))]
    for i, g in enumerate(picked):
        np.testing.assert_allclose(feats[i], groups[g][i], atol=3e-4)
    assert len(set(picked[:10])) == 1 and len(set(picked[10:])) == 1 and picked[0] != picked[10]  # one group a cast


def test_routing_never_hooks_the_shared_network_and_the_identity_names_it(tmp_path, tiny_model, monkeypatch):
    """Choosing a crop's camera hooks a private copy of the network (other threads embed and explain
    with the shared one, and camera copies are made from it); a model with camera statistics says in
    its identity that it embeds in PyTorch with that rule, so older embeddings are never mixed in."""
    from xreid.models.camera_norm import ROUTING
    from xreid.models.loading import load_embedder

    torch.set_num_threads(1)
    crops = tmp_path / "crops"
    rows = camera_crops(crops)
    out, _ = _adapted(tmp_path, tiny_model, rows, crops)
    emb = load_embedder(out)
    shared = set(map(id, emb.model.modules()))
    hooked = []
    real = nn.Module.register_forward_pre_hook

    def spy(module, hook, *a, **k):
        hooked.append(id(module))
        return real(module, hook, *a, **k)

    monkeypatch.setattr(nn.Module, "register_forward_pre_hook", spy)
    emb.embed_paths([crops / rows[0][0], crops / rows[10][0]])
    assert hooked and not shared & set(hooked)  # routing ran, on its own copy
    for variant in (emb.for_camera("c1"), emb.for_camera("c2")):
        assert all(not m._forward_pre_hooks for m in variant.model.modules())
    ident, plain = emb.identity(), load_embedder(tiny_model).identity()
    assert ident["camera_routing"] == ROUTING and ident["backend"] == "torch" and "camera_routing" not in plain
