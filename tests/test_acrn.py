"""ACRN training of the own CNN: the complementary triplet loss, the attribute
weight layer, the attribute table, and a run from config to `xreid eval --fusion`."""

import math
import textwrap

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xreid.cli import app
from xreid.explain.fusion import Fusion
from xreid.training.acrn import TABLE_FILE, AttributeTable, AttributeWeights
from xreid.training.config import apply_overrides, load_config
from xreid.training.losses import (
    attribute_distances,
    attribute_weight_triplet_loss,
    batch_hard_triplet_loss,
    complementary_triplet_loss,
    identity_losses,
)
from xreid.workflows.acrn import fusion_path


def test_attribute_distance_is_the_rms_difference_by_hand():
    p = torch.tensor([[1.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0]])
    d = attribute_distances(p)
    # rows 0, 1: one attribute differs by 1 of 4 -> sqrt(1/4) = 0.5; rows 0, 2: 0, 1, .5, .5 -> sqrt(1.5/4)
    assert d[0, 1].item() == pytest.approx(0.5)
    assert d[0, 2].item() == pytest.approx(math.sqrt(1.5 / 4))
    assert d[1, 2].item() == pytest.approx(math.sqrt(2.5 / 4))
    assert torch.all(d.diagonal() == 0) and torch.allclose(d, d.T)


def test_complementary_triplet_loss_by_hand():
    # 1-D features: persons A (0, 1) and B (3, 3.5). CNN distances: A0-A1 1, A0-B0 3, A0-B1 3.5, A1-B0 2,
    # A1-B1 2.5, B0-B1 0.5
    f = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    labels = torch.tensor([0, 0, 1, 1])
    attr = torch.tensor([[0.0, 0.2, 0.1, 0.9],
                         [0.2, 0.0, 0.1, 0.1],
                         [0.1, 0.1, 0.0, 0.4],
                         [0.9, 0.1, 0.4, 0.0]])
    m, g = 2.0, 0.5
    # combined distances d + g a: A0: pos 1.1, neg min(3.05, 3.95) = 3.05 -> 2 + 1.1 - 3.05 = 0.05
    # A1: pos 1.1, neg min(2.05, 2.55) = 2.05 -> 1.05; B0: pos 0.7, neg min(3.05, 2.05) -> 0.65
    # B1: pos 0.7, neg min(3.95, 2.55) = 2.55 -> 0.15; mean 1.9 / 4
    loss = complementary_triplet_loss(f, labels, attr, gamma=g, margin=m)
    assert loss.item() == pytest.approx((0.05 + 1.05 + 0.65 + 0.15) / 4, abs=1e-5)
    # gamma 0 is the plain batch-hard loss; the attribute distances get no gradient
    assert complementary_triplet_loss(f, labels, attr, gamma=0.0, margin=m).item() == pytest.approx(
        batch_hard_triplet_loss(f, labels, m).item())
    a = attr.clone().requires_grad_(True)
    x = f.clone().requires_grad_(True)
    complementary_triplet_loss(x, labels, a, gamma=g, margin=m).backward()
    assert a.grad is None and x.grad is not None and x.grad.abs().sum() > 0


def test_identity_losses_use_the_complementary_form_only_with_gamma():
    f = torch.randn(4, 3)
    labels = torch.tensor([0, 0, 1, 1])
    attr = attribute_distances(torch.rand(4, 5))
    plain = identity_losses(f, None, labels, id_weight=1, triplet_weight=1, label_smoothing=0, margin=0.3, ranking=True)
    off = identity_losses(f, None, labels, id_weight=1, triplet_weight=1, label_smoothing=0, margin=0.3, ranking=True,
                          attribute_distance=attr, gamma=0.0)
    on = identity_losses(f, None, labels, id_weight=1, triplet_weight=1, label_smoothing=0, margin=0.3, ranking=True,
                         attribute_distance=attr, gamma=0.5)
    assert plain["triplet"].item() == off["triplet"].item()
    assert on["triplet"].item() == pytest.approx(complementary_triplet_loss(f, labels, attr, 0.5, 0.3).item())


def test_weight_layer_loss_by_hand_and_its_projection():
    # two attributes; person 0 = rows 0, 1 differ in attribute 1 only; person 1 = row 2 differs from row 0 in
    # attribute 0 (by 1) and from row 1 in both
    p = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    w = torch.tensor([2.0, 1.0])
    # weighted distances: d01 = 1, d02 = 2, d12 = 3; anchors: 0: 0.1 + 1 - 2 -> 0; 1: 0.1 + 1 - 3 -> 0;
    # 2 has no positive; so the loss is the L2 pull 0.5 * (4 + 1)
    assert attribute_weight_triplet_loss(p, labels, w, margin=0.1, decay=0.5).item() == pytest.approx(2.5)
    w = torch.tensor([0.0, 3.0])  # attribute 1 only: d01 = 3, d02 = 0, d12 = 3 -> anchor 0: 0.1 + 3 - 0 = 3.1;
    # anchor 1: 0.1 + 3 - 3 = 0.1; anchor 2 (itself its only positive, as in batch_hard): 0.1 + 0 - 0; mean 3.3 / 3
    assert attribute_weight_triplet_loss(p, labels, w, margin=0.1, decay=0.0).item() == pytest.approx(1.1)
    layer = AttributeWeights(2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([-1.0, 0.5]))
    layer.project()
    assert layer.weight.tolist() == [0.0, 0.5]


def test_attribute_table_round_trip_and_missing_images(tmp_path):
    table = AttributeTable(["a.jpg", "b.jpg"], ["x", "y"], np.array([[0.1, 0.2], [0.3, 0.4]]), {"classifier": "c"})
    table.save(tmp_path / "t.npz")
    back = AttributeTable.load(tmp_path / "t.npz")
    np.testing.assert_allclose(back.rows(["b.jpg", "a.jpg"]), [[0.3, 0.4], [0.1, 0.2]])
    assert back.meta == {"classifier": "c"} and back.names == ["x", "y"]
    with pytest.raises(ValueError, match="c.jpg"):
        back.rows(["a.jpg", "c.jpg"])
    with pytest.raises(ValueError, match="finite"):
        AttributeTable(["a.jpg"], ["x"], np.array([[np.nan]]))
    (tmp_path / "bad.npz").write_bytes(b"no")
    with pytest.raises(ValueError, match="bad.npz"):
        AttributeTable.load(tmp_path / "bad.npz")


def test_set_overrides():
    data = apply_overrides({"train": {"epochs": 30}}, ["train.epochs=12", "acrn.gamma=0.5", "name=x"])
    assert data == {"train": {"epochs": 12}, "acrn": {"gamma": 0.5}, "name": "x"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        apply_overrides({}, ["train.epochs"])


def _config(tmp_path, name="acrn", extra="acrn: {gamma: 0.5, classifier: default}"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        output_dir: {tmp_path / 'runs'}
        model: {{backbone: mobilenetv2, input_size: [64, 32], freeze_stages: 3, embedding_dim: 16}}
        train: {{epochs: 2, id_warm_epochs: 1, p: 2, k: 2, warmup_epochs: 1, checkpoint_minutes: 0.0}}
    """) + extra + "\n")
    return path


def test_acrn_run_from_config_to_fused_ranking(mini_peta, tmp_path):
    """`xreid train` with an acrn section: the classifier's head is fitted in the run, the training images'
    probabilities tabled, the loop trains the weight layer beside the network, resume works, the run
    ends with a fusion file that `xreid eval --fusion` ranks with."""
    torch.set_num_threads(1)
    runner = CliRunner()
    path = _config(tmp_path)
    args = ["train", "--config", str(path), "--data-root", str(mini_peta)]
    res = runner.invoke(app, args + ["--max-batches", "2"])
    assert res.exit_code == 0, res.output
    cfg = load_config(path)
    table = AttributeTable.load(cfg.run_dir / TABLE_FILE)
    assert len(table.paths) == 8 and np.isfinite(table.probabilities).all()  # the 8 train images
    assert "acrn_weights" in torch.load(cfg.run_dir / "last.pt", weights_only=True)
    res = runner.invoke(app, args + ["--resume"])
    assert res.exit_code == 0, res.output
    assert "ACRN fusion" in res.output
    model = cfg.run_dir / "model.pt"
    meta = torch.load(model, weights_only=True)["meta"]
    assert "attr_weights" in meta["history"][-1]
    weights = meta["acrn"]["weights"]
    assert meta["acrn"]["names"] == table.names and (weights >= 0).all()
    fusion = Fusion.load(fusion_path(model))
    np.testing.assert_allclose(fusion.weights, weights.double().numpy(), rtol=1e-6)
    assert fusion.mixing == 1.0 and fusion.meta["chosen"]["how"] == "acrn.default_mixing"  # no validation sets
    res = runner.invoke(app, ["eval", "--model", str(model), "--fusion", str(fusion_path(model)),
                              "--data-root", str(mini_peta)])
    assert res.exit_code == 0, res.output
    # the same run with another classifier is refused, naming the run's head and both models
    model.rename(tmp_path / "other.pt")
    other = _config(tmp_path, extra=f"acrn: {{gamma: 0.5, classifier: {tmp_path / 'other.pt'}}}")
    res = runner.invoke(app, ["train", "--config", str(other), "--data-root", str(mini_peta), "--resume"])
    assert res.exit_code == 2 and "acrn_head.npz" in res.output and "other" in res.output, res.output


def test_acrn_needs_a_classifier(mini_peta, tmp_path):
    res = CliRunner().invoke(app, ["train", "--config", str(_config(tmp_path, extra="acrn: {gamma: 0.5}")),
                                   "--data-root", str(mini_peta)])
    assert res.exit_code == 2 and "acrn.classifier" in res.output, res.output
