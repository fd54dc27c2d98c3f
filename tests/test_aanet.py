"""AANet: building blocks by hand, the network, its losses and its training."""

import math

import numpy as np
import pytest
import torch

from conftest import TINY_ATTRIBUTES, assert_same_weights, tiny_aanet_config
from xreid.models.aanet import (
    AANetHeads,
    _quantiles,
    aanet_extra,
    attention_map,
    attribute_region,
    balanced_descriptor,
    band_edges,
    band_pool,
    class_activation_maps,
    in_attention_map,
    peak_rows,
    region_pool,
    uncertainty_weighted_loss,
)
from xreid.training.losses import aanet_losses


def test_uncertainty_weighting_by_hand():
    # L = 2 / 1^2 + log 1 + 3 / 2^2 + log 2
    loss = uncertainty_weighted_loss(torch.tensor([2.0, 3.0]), torch.log(torch.tensor([1.0, 2.0])))
    assert loss.item() == pytest.approx(2.0 + 0.75 + math.log(2.0))
    s = torch.zeros(2, requires_grad=True)  # d/ds (L e^{-2s} + s) at s = 0: 1 - 2 L
    uncertainty_weighted_loss(torch.tensor([2.0, 0.25]), s).backward()
    torch.testing.assert_close(s.grad, torch.tensor([-3.0, 0.5]))
    with pytest.raises(ValueError, match="uncertainties"):
        uncertainty_weighted_loss(torch.ones(3), torch.zeros(4))


def test_peak_rows():
    x = torch.zeros(1, 2, 3, 2)
    x[0, 0, 2, 1] = 5.0  # channel 0 peaks on row 2
    x[0, 1, 1, 0] = 1.0  # channel 1 on row 1
    assert peak_rows(x).tolist() == [[2, 1]]


def test_band_edges_at_peak_quantiles_by_hand():
    # peaks on rows 0, 2, ..., 10 of 12: quantiles k/6 at 1.67, 3.33, 5, 6.67, 8.33 (linear interpolation),
    # each band ending with the row nearest its quantile: edges 3, 4, 6, 8, 9
    edges = band_edges(torch.tensor([[0, 2, 4, 6, 8, 10]]), 12)
    assert edges.tolist() == [[0, 3, 4, 6, 8, 9, 12]]
    # every peak on the top row: the bands are pushed apart, one row each, the last takes the rest
    assert band_edges(torch.zeros(1, 5, dtype=torch.long), 8).tolist() == [[0, 1, 2, 3, 4, 5, 8]]
    # every peak on the bottom row: squeezed from below the same way
    assert band_edges(torch.full((1, 5), 7), 8).tolist() == [[0, 3, 4, 5, 6, 7, 8]]
    with pytest.raises(ValueError, match="5 rows"):
        band_edges(torch.zeros(1, 3, dtype=torch.long), 5)


def test_band_and_region_pooling_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).view(1, 1, 6, 1).expand(1, 1, 6, 2)
    assert band_pool(x, torch.tensor([[0, 1, 6]])).flatten().tolist() == [1.0, 4.0]
    assert region_pool(x).flatten().tolist() == [1.5, 3.5, 5.5, 3.5]  # top, middle, bottom, whole
    for h in range(3, 40):  # the thirds' edges sit at round(h / 3) and round(2 h / 3) rows
        rows = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
        top, middle = round(h / 3), round(2 * h / 3)
        expected = [rows[..., :top, :].mean(), rows[..., top:middle, :].mean(), rows[..., middle:, :].mean()]
        torch.testing.assert_close(region_pool(rows)[0, :3, 0], torch.stack(expected), msg=str(h))


def test_cam_mean_is_the_logit_and_aam_by_hand():
    torch.manual_seed(0)
    f, w = torch.randn(2, 3, 4, 2), torch.randn(3, 5)
    cams = class_activation_maps(f, w)
    torch.testing.assert_close(cams.mean((2, 3)), f.mean((2, 3)) @ w)
    cams = torch.tensor([[[[0.0, 1.0, 2.0, 3.0]], [[4.0, 0.0, 0.0, 0.0]], [[9.0, 9.0, 9.0, 0.0]]]])
    # attributes 0 and 1: scaled [0, 1/3, 2/3, 1] and [1, 0, 0, 0], max [1, 1/3, 2/3, 1], mean 0.75
    aam = attention_map(cams, [0, 1])
    torch.testing.assert_close(aam, torch.tensor([[[1.0, 0.0, 0.0, 1.0]]]))


def test_aanet_heads_shapes_and_losses_train():
    torch.manual_seed(0)
    heads = AANetHeads(channels=8, classes=5, regions=[0, 2, 3], aam_attributes=[0, 1], hidden=16)
    x = torch.randn(2, 8, 12, 4, requires_grad=True)
    out = heads(x)
    assert out["global_logits"].shape == (2, 5) and out["part_logits"].shape == (2, 6, 5)
    assert out["attribute_logits"].shape == (2, 3) and out["cams"].shape == (2, 3, 12, 4)
    assert out["aam"].shape == (2, 12, 4) and out["descriptor"].shape == (2, 16 + 6 * 16 + 4 * 16 + 16)
    # attribute 1 reads the bottom third: its logit is its CAM's mean over the bottom rows
    torch.testing.assert_close(out["attribute_logits"][:, 1], out["cams"][:, 1, 8:].mean((1, 2)))
    labels = torch.tensor([0, 3])
    ce = torch.nn.functional.cross_entropy
    losses = torch.stack([ce(out["global_logits"], labels),
                          ce(out["part_logits"].flatten(0, 1), labels.repeat_interleave(6)),
                          torch.nn.functional.binary_cross_entropy_with_logits(out["attribute_logits"],
                                                                               torch.ones(2, 3)),
                          ce(out["aam_logits"], labels)])
    uncertainty_weighted_loss(losses, heads.log_sigma).backward()
    assert heads.log_sigma.grad.abs().min() > 0 and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="regions"):
        AANetHeads(channels=8, classes=5, regions=[4], aam_attributes=[])


def test_attribute_regions_and_attention_members():
    region = {n: attribute_region(n) for n in ["hairLong", "accessoryHat", "upperBodyJacket", "carryingBackpack",
                                               "lowerBodyJeans", "footwearShoes", "personalMale", "personalLess30",
                                               "notAnAttribute"]}
    assert region == {"hairLong": 0, "accessoryHat": 0, "upperBodyJacket": 1, "carryingBackpack": 1,
                      "lowerBodyJeans": 2, "footwearShoes": 2, "personalMale": 3, "personalLess30": 3,
                      "notAnAttribute": 3}
    members = ["personalMale", "hairShort", "upperBodyRed", "lowerBodyBlue", "lowerBodyShorts", "female", "upGray"]
    others = ["personalLess30", "upperBodyJacket", "carryingBackpack", "footwearBlack", "accessoryHat", "backpack",
              "notAnAttribute"]
    assert all(in_attention_map(n) for n in members) and not any(in_attention_map(n) for n in others)
    extra = aanet_extra(["hairLong", "carryingBackpack", "personalMale"], hidden=8)
    assert extra == {"attributes": ["hairLong", "carryingBackpack", "personalMale"], "regions": [0, 1, 3],
                     "aam": [0, 2], "hidden": 8}


def test_quantiles_equal_torch_quantile():
    values = torch.tensor([[3.0, 0.0, 6.0, 6.0, 1.0], [2.0, 2.0, 2.0, 2.0, 9.0]])
    q = torch.tensor([0.0, 1 / 6, 0.5, 0.9, 1.0])
    torch.testing.assert_close(_quantiles(values, q), torch.quantile(values, q, dim=1).T)


def _aanet_spec(classes=3):
    from xreid.models.reid_net import ModelSpec

    return ModelSpec(input_size=(96, 32), last_stride=1, num_classes=classes, head="aanet",
                     extra=aanet_extra(["hairLong", "upperBodyRed", "lowerBodyJeans"], hidden=8))


def test_aanet_network_embeds_its_descriptor_and_ships_without_classifiers(tmp_path):
    from xreid.models.checkpoint import load_model_file, save_model_file
    from xreid.models.networks import build_model

    torch.manual_seed(0)
    net = build_model(_aanet_spec()).eval()
    images = torch.rand(2, 3, 96, 32)
    emb = net(images)
    assert emb.shape == (2, 12 * 8) and net.embedding_dim == 96
    net.train()
    out = net(images)
    assert out["global_logits"].shape == (2, 3) and out["cams"].shape == (2, 3, 6, 2)
    net.eval()
    save_model_file(net, net.spec, tmp_path / "m.pt", {})
    state = torch.load(tmp_path / "m.pt", weights_only=True)["state_dict"]
    assert not [k for k in state if "classifier" in k] and "heads.log_sigma" in state
    loaded, _ = load_model_file(tmp_path / "m.pt")
    assert loaded.heads.global_id.classifier is None
    torch.testing.assert_close(loaded(images), net(images), atol=2e-2, rtol=2e-2)  # fp16 weights
    assert loaded.attribute_maps(images).shape == (2, 3, 6, 2)
    # the report's attribute maps of this model are its own CAMs, upsampled, negative part dropped
    from xreid.explain.attribute_head import AttributeHead
    from xreid.explain.maps.attribute import attribute_maps, has_native_maps

    head = AttributeHead(["hairLong", "personalMale"], np.random.default_rng(0).normal(size=(96, 2)), np.full(2, 0.5))
    assert has_native_maps(loaded, ["hairLong"]) and not has_native_maps(loaded, ["personalMale"])
    native = attribute_maps(loaded, head, images[:1], ["hairLong"])[0]
    cam = loaded.attribute_maps(images[:1])[0, 0]
    assert native.values.shape == (96, 32) and native.values.min() >= 0
    # bilinear upsampling by 16 keeps each cell's value at its centre pixel
    assert native.values[8 + 16 * 2, 8 + 16 * 1] == pytest.approx(max(float(cam[2, 1]), 0.0), abs=1e-5)
    gradcam = attribute_maps(loaded, head, images[:1], ["hairLong"], native=False)[0]
    assert not np.allclose(gradcam.values, native.values)
    assert attribute_maps(loaded, head, images[:1], ["personalMale"])[0].values.shape == (96, 32)  # Grad-CAM
    bad = _aanet_spec()
    bad.extra = {"attributes": ["hairLong"]}
    with pytest.raises(ValueError, match="regions, aam"):
        build_model(bad)
    short = _aanet_spec()
    short.input_size = (64, 32)  # 4 rows at 1/16
    with pytest.raises(ValueError, match="64 pixels tall gives 4 rows with last_stride 1"):
        build_model(short)


def test_balanced_descriptor_by_hand():
    """V = 2: the global vector at unit length; the parts, regions and attention-map vectors each at
    unit length (each its own norm and direction), each group scaled to the branch weight's length."""
    hidden = 2
    glob = torch.tensor([[3.0, 4.0]])
    global_v = torch.tensor([[9.0, 9.0]])  # the paper's concatenation holds the pre-BN vector: not used
    parts = torch.tensor([[2.0, 0.0, 0.0, 3.0, 1.0, 1.0, 0.0, 0.5, 4.0, 0.0, 0.0, 1.0]])
    regions = torch.tensor([[0.0, 5.0, 6.0, 8.0, 1.0, 0.0, 0.0, 2.0]])
    aam = torch.tensor([[1.0, 1.0]])
    out = {"global_bn": glob, "descriptor": torch.cat([global_v, parts, regions, aam], 1)}
    got = balanced_descriptor(out, branch_weight=0.5)
    p, r, a = 0.5 / math.sqrt(6), 0.5 / 2, 0.5  # each group's weight / sqrt(its vectors)
    want = ([0.6, 0.8] + [p, 0, 0, p, p / math.sqrt(2), p / math.sqrt(2), 0, p, p, 0, 0, p]
            + [0, r, 0.6 * r, 0.8 * r, r, 0, 0, r] + [a / math.sqrt(2), a / math.sqrt(2)])
    torch.testing.assert_close(got, torch.tensor([want]))
    assert got.shape[1] == 12 * hidden
    for group in (got[0, 2:14], got[0, 14:22], got[0, 22:]):  # each group has the weight's length
        assert float(group.norm()) == pytest.approx(0.5)
    assert aanet_extra(["hairLong"], 2, "balanced", 0.5)["branch_weight"] == 0.5
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="branch weight"):
            aanet_extra(["hairLong"], 2, "balanced", bad)
    with pytest.raises(ValueError, match="only for the 'balanced' descriptor"):
        aanet_extra(["hairLong"], 2, "all", 0.5)


def test_a_balanced_aanet_keeps_its_weight_in_the_file_and_exports_for_any_batch(tmp_path):
    from xreid.models.aanet import descriptor_branches
    from xreid.models.checkpoint import save_model_file
    from xreid.models.embedders import CompiledEmbedder
    from xreid.models.loading import load_embedder
    from xreid.models.networks import build_model

    torch.manual_seed(0)
    spec = _aanet_spec()
    spec.extra = aanet_extra(["hairLong", "upperBodyRed", "personalMale"], hidden=8, descriptor="balanced",
                             branch_weight=0.25)
    net = build_model(spec).eval()
    images = torch.rand(3, 3, 96, 32)
    out = net.heads(net.feature_map(images))
    assert net.embedding_dim == 96 and net.descriptor_branches() == descriptor_branches("all", 8)
    torch.testing.assert_close(net(images), balanced_descriptor(out, 0.25))
    save_model_file(net, net.spec, tmp_path / "b.pt", {})
    torch_embedder = load_embedder(tmp_path / "b.pt", backend="torch")
    assert torch_embedder.model.branch_weight == 0.25
    compiled = load_embedder(tmp_path / "b.pt")
    assert isinstance(compiled, CompiledEmbedder), "the balanced AANet did not export; it ran in PyTorch"
    crops = np.random.default_rng(0).integers(0, 255, size=(3, 96, 32, 3), dtype=np.uint8)
    x = torch_embedder.embed_arrays(crops)
    for batch in (crops, crops[:1]):  # the exported graph takes any batch size
        np.testing.assert_allclose(compiled.embed_arrays(batch), x[:len(batch)], atol=1e-3, rtol=1e-3)


def test_aanet_losses_leave_crops_without_identity_out():
    torch.manual_seed(0)
    net = build_model_train()
    images = torch.rand(5, 3, 96, 32)
    labels = torch.tensor([0, 0, 1, 1, -1])
    out = net(images)
    has = torch.tensor([True, False, True, True, True])
    attr = torch.randint(0, 2, (4, 3))
    terms = aanet_losses(out, labels, attr, has, net.heads.log_sigma, np.full(3, 0.4))
    assert set(terms) == {"global", "part", "attr_branch", "aam", "aanet"}
    # log sigma 0: the weighted sum is the plain sum
    assert terms["aanet"].item() == pytest.approx(sum(terms[k].item() for k in ["global", "part", "attr_branch", "aam"]))
    ids_only = {k: v[:4] for k, v in out.items() if k.endswith("logits")}
    alone = aanet_losses({**out, **ids_only}, labels[:4], attr[:3], has[:4], net.heads.log_sigma, np.full(3, 0.4))
    for k in ["global", "part", "aam"]:
        assert alone[k].item() == pytest.approx(terms[k].item())
    terms["aanet"].backward()
    assert net.heads.log_sigma.grad.abs().min() > 0


def build_model_train():
    from xreid.models.networks import build_model

    return build_model(_aanet_spec()).train()


def _train_config(tmp_path, name="aanet", attributes=TINY_ATTRIBUTES):
    from xreid.training.config import load_config

    return load_config(tiny_aanet_config(tmp_path, name, train="epochs: 2, swa_epochs: 1", attributes=attributes))


def test_aanet_trains_resumes_and_ships_its_attribute_layer(mini_peta, tmp_path):
    """`model.head: aanet` trains end to end: the four task losses logged per epoch, exact resume, a model
    file whose embedding is the 12 x V descriptor (also through the compiled runtime the CLI uses) and
    the bias-free attribute layer on that descriptor shipped as the model's head."""
    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.embedders import CompiledEmbedder
    from xreid.models.loading import load_embedder, model_head_path
    from xreid.training.trainer import train

    torch.set_num_threads(1)
    straight = train(_train_config(tmp_path, "straight"), mini_peta, progress=False)
    meta = torch.load(straight, weights_only=True)["meta"]
    assert all({"global", "part", "attr_branch", "aam", "aanet", "attr"} <= set(h) for h in meta["history"])
    cfg = _train_config(tmp_path, "resumed")
    train(cfg, mini_peta, progress=False, max_batches=3)
    resumed = train(cfg, mini_peta, resume=True, progress=False)
    assert_same_weights(straight, resumed)
    head = AttributeHead.load(model_head_path(straight))
    assert head.weights.shape == (96, 3)
    torch_embedder = load_embedder(straight, backend="torch")
    compiled = load_embedder(straight)
    assert isinstance(compiled, CompiledEmbedder), "the AANet network did not export; it ran in PyTorch"
    crops = np.random.default_rng(0).integers(0, 255, size=(3, 96, 32, 3), dtype=np.uint8)
    x = torch_embedder.embed_arrays(crops)
    assert x.shape == (3, 96)
    for batch in (crops, crops[:1]):  # the exported graph takes any batch size
        np.testing.assert_allclose(compiled.embed_arrays(batch), x[:len(batch)], atol=1e-3, rtol=1e-3)
    assert head.predict(x).shape == (3, 3)
    with pytest.raises(ValueError, match="attributes section"):
        train(_train_config(tmp_path, "bare", attributes="{weight: 0.0}"), mini_peta, progress=False)
    # the CLI explains with it, attribute maps included (its own CAMs)
    import json

    from typer.testing import CliRunner

    from xreid.cli import app

    res = CliRunner().invoke(app, ["explain", "--model", str(straight), "--data-root", str(mini_peta), "--protocol",
                                   "peta-reid", "--test-set", "VIPeR", "--query-index", "1", "--maps",
                                   "pair,attributes", "--out", str(tmp_path / "r.html"), "--json",
                                   str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    kinds = {m["kind"] for m in json.loads((tmp_path / "r.json").read_text())["maps"]["maps"]}
    assert {"pair", "attribute"} <= kinds
