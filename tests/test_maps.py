import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xreid.cli import app
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.maps.attention import implicit_attention
from xreid.explain.maps.attribute import attribute_maps
from xreid.explain.maps.base import SaliencyMap, gradcam, last_feature_maps
from xreid.explain.maps.occlusion import occlusion_pair
from xreid.explain.maps.pair import pair_maps, top_contributing_dims
from xreid.rendering.maps import overlay_jpeg
from xreid.models.embedders import Embedder, Preprocess
from xreid.workflows.export import export_model
from xreid.models.networks import build_model
from xreid.models.reid_net import ModelSpec
from xreid.models.checkpoint import save_model_file

runner = CliRunner()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelSpec(input_size=(64, 32)), pretrained=True).eval()


def test_top_contributing_dims_hand_computed():
    q = np.array([1.0, 2.0, 0.0, -1.0])
    g = np.array([1.0, 1.0, 5.0, -3.0])
    # products of normalised vectors are proportional to (1, 2, 0, 3)
    assert top_contributing_dims(q, g, 2).tolist() == [3, 1]


def test_gradcam_maps(model):
    rng = torch.Generator().manual_seed(0)
    q, g = torch.rand(1, 3, 64, 32, generator=rng), torch.rand(3, 3, 64, 32, generator=rng)
    dims, q_maps, g_maps = pair_maps(model, q, g, k=2, gallery_keys=["a", "b", "c"])
    assert len(dims) == 3 and len(q_maps[0]) == 2 and g_maps[2][1].image == "c"
    for m in q_maps[0] + g_maps[0]:
        assert m.values.shape == (64, 32) and (m.values >= 0).all()
    att = implicit_attention(model, q, dims=6)
    assert att.values.shape == (64, 32) and not att.is_empty
    head = AttributeHead(["a", "b"], np.random.default_rng(0).normal(size=(1280, 2)), np.array([0.5, 0.5]), {})
    am = attribute_maps(model, head, q, ["b"])
    assert am[0].label == "b" and am[0].values.shape == (64, 32)


def test_signed_gradcam_explains_the_negated_output():
    """sign -1 on a dim is Grad-CAM of minus that dim: what drives a negative value further down.
    (A model with a reduction layer, as the bundled one: its dims mix channels of either sign.)"""
    torch.manual_seed(0)
    reduced = build_model(ModelSpec(input_size=(64, 32), embedding_dim=16), pretrained=True).eval()
    x = torch.rand(2, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    signed = gradcam(reduced, last_feature_maps(reduced, x)[0], lambda e: e, [3, 3], (64, 32), signs=[-1.0, 1.0])
    negated = gradcam(reduced, last_feature_maps(reduced, x[:1])[0], lambda e: -e, [3], (64, 32))
    plain = gradcam(reduced, last_feature_maps(reduced, x[1:])[0], lambda e: e, [3], (64, 32))
    np.testing.assert_allclose(signed[0], negated[0], atol=1e-6)
    np.testing.assert_allclose(signed[1], plain[0], atol=1e-6)
    unsigned = gradcam(reduced, last_feature_maps(reduced, x[:1])[0], lambda e: e, [3], (64, 32))[0]
    assert negated[0].max() > 0 and unsigned.max() > 0
    assert np.abs(negated[0] - unsigned).max() > 0.1 * unsigned.max()


def test_gradcam_matches_a_hand_computed_grad_cam_and_runs_each_image_once():
    """Grad-CAM by definition (gradient of the output through the whole network, channel weights = its
    spatial mean, ReLU of the weighted sum of the last map), for outputs read from shared images."""
    torch.manual_seed(0)
    reduced = build_model(ModelSpec(input_size=(64, 32), embedding_dim=16), pretrained=True).eval()
    x = torch.rand(2, 3, 64, 32, generator=torch.Generator().manual_seed(2))
    rows, targets = [0, 0, 1, 0], [3, 7, 3, 11]
    calls = []
    hook = reduced.backbone.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    maps = gradcam(reduced, last_feature_maps(reduced, x)[0], lambda e: e, targets, (64, 32), rows=rows)
    hook.remove()
    assert calls == [2]  # one backbone pass over the two distinct images, not four
    for out, (row, dim) in enumerate(zip(rows, targets)):
        captured = {}
        h = reduced.backbone.register_forward_hook(lambda m, i, o, c=captured: c.setdefault("map", o))
        emb = reduced(x[row:row + 1].clone().requires_grad_(True))
        h.remove()
        (grad,) = torch.autograd.grad(emb[0, dim], captured["map"])
        cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * captured["map"]).sum(1, keepdim=True))
        expected = torch.nn.functional.interpolate(cam, size=(64, 32), mode="bilinear")[0, 0].detach().numpy()
        np.testing.assert_allclose(maps[out], expected, rtol=1e-4, atol=1e-6)
    assert np.abs(maps[0] - maps[1]).max() > 0  # different dims of one image: different maps


class LeftHalfColour(Embedder):
    """A black box whose embedding is the mean colour of the image's left half (plus a constant)."""

    name = "left-half"
    preprocess = Preprocess(height=16, width=8)

    def run(self, inputs):
        return np.concatenate([inputs[:, :, :, :4].mean(axis=(2, 3)), np.ones((len(inputs), 1))], axis=1)


def test_occlusion_finds_the_only_region_that_matters():
    img = np.zeros((16, 8, 3), np.uint8)
    img[:, :4] = 250
    emb = LeftHalfColour()
    m = occlusion_pair(emb, img, emb.embed_arrays(img[None])[0], "g", patch_fraction=0.25)
    assert m.values[:, :2].mean() > 0 and np.allclose(m.values[:, 6:], 0)


def test_all_zero_map_is_reported_not_drawn():
    m = SaliencyMap(np.zeros((8, 4)), "pair", "dim 3", "g")
    assert m.is_empty
    jpeg = overlay_jpeg(np.zeros((8, 4, 3), np.uint8), m)
    assert jpeg.startswith(b"\xff\xd8")


def test_cli_explain_with_maps_torch_and_onnx(model, mini_peta, tmp_path):
    path = tmp_path / "tiny.pt"
    save_model_file(model, model.spec, path, meta={})
    head = tmp_path / "h.npz"
    AttributeHead(["personalMale", "hairLong"], np.random.default_rng(0).normal(size=(1280, 2)),
                  np.array([0.5, 0.5]), {}).save(head)
    for spec in (str(path), export_model(str(path), "onnx", tmp_path / "tiny.onnx")["path"]):
        out, js = tmp_path / "r.html", tmp_path / "r.json"
        res = runner.invoke(app, ["explain", "--model", spec, "--head", str(head), "--data-root", str(mini_peta),
                                  "--protocol", "peta-reid", "--out", str(out), "--json", str(js),
                                  "--maps", "pair,attention,attributes", "--map-dims", "2"])
        assert res.exit_code == 0, res.output
        data = json.loads(js.read_text())
        entries = data["maps"]["maps"]
        assert entries and all((tmp_path / "r_maps").joinpath(e["file"].split("/")[-1]).is_file() for e in entries)
        kinds = {e["kind"] for e in entries}
        assert kinds == ({"pair-sum", "pair", "attention", "attribute"} if spec.endswith(".pt")
                         else {"occlusion-pair", "occlusion-attribute"})
        assert "<figure><img src=\"data:image/jpeg;base64," in out.read_text()
    res = runner.invoke(app, ["explain", "--model", str(path), "--head", str(head), "--data-root", str(mini_peta),
                              "--protocol", "peta-reid", "--out", str(out), "--maps", "heat"])
    assert res.exit_code == 2 and "unknown map type" in res.output
