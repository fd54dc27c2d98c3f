"""AANet building blocks (issue 17 item 2, skeleton): hand-computed values."""

import math

import pytest
import torch

from xreid.models.aanet import (
    AANetHeads,
    attention_map,
    band_edges,
    band_pool,
    class_activation_maps,
    peak_rows,
    region_pool,
    uncertainty_weighted_loss,
)


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
