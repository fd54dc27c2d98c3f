import math

import pytest
import torch

from xreid.training.losses import (batch_hard_triplet_loss, feature_distillation_loss, id_loss, identity_losses,
                                   similarity_distillation_loss)


def test_batch_hard_triplet_hand_computed():
    # 1-D features: ids A = {0, 1}, B = {3, 5}. Anchor 0: d_ap 1, d_an 3 -> relu(0.3 + 1 - 3) = 0
    # anchor 1: d_ap 1, d_an 2 -> 0 ; anchor 3: d_ap 2, d_an 2 -> 0.3 ; anchor 5: d_ap 2, d_an 4 -> 0
    f = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert batch_hard_triplet_loss(f, y, margin=0.3).item() == pytest.approx(0.3 / 4, abs=1e-5)
    soft = batch_hard_triplet_loss(f, y, margin=0.0).item()
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)) + math.log1p(1) + math.log1p(math.exp(-2))) / 4
    assert soft == pytest.approx(expected, abs=1e-5)


def test_triplet_without_negatives_is_zero():
    f = torch.randn(4, 3, requires_grad=True)
    loss = batch_hard_triplet_loss(f, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()


def test_id_loss_label_smoothing():
    logits = torch.zeros(1, 4)
    assert id_loss(logits, torch.tensor([2]), 0.1).item() == pytest.approx(math.log(4), abs=1e-6)


def test_id_loss_label_smoothing_on_non_uniform_logits():
    # logits (log 2, 0, 0): softmax (1/2, 1/4, 1/4), so -log p = (log 2, 2 log 2, 2 log 2).
    # Smoothed target with eps over K = 3 classes: (1 - eps) one-hot + eps / 3.
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    ln2 = math.log(2.0)
    # label 0, eps 0.3: target (0.8, 0.1, 0.1) -> 0.8 ln2 + 0.2 * 2 ln2 = 1.2 ln2 (unsmoothed: ln2)
    assert id_loss(logits[:1], torch.tensor([0]), 0.3).item() == pytest.approx(1.2 * ln2, abs=1e-6)
    # label 1, eps 0.3: target (0.1, 0.8, 0.1) -> 0.1 ln2 + 0.9 * 2 ln2 = 1.9 ln2 (unsmoothed: 2 ln2)
    assert id_loss(logits[:1], torch.tensor([1]), 0.3).item() == pytest.approx(1.9 * ln2, abs=1e-6)
    # the default eps 0.1 (BoT): label 0 -> (0.9 + 0.1/3) ln2 + (0.2/3) 2 ln2 = (0.9 + 0.5/3) ln2
    assert id_loss(logits[:1], torch.tensor([0])).item() == pytest.approx((0.9 + 0.5 / 3) * ln2, abs=1e-6)
    assert id_loss(logits[:1], torch.tensor([0]), 0.0).item() == pytest.approx(ln2, abs=1e-6)
    # the training step's identity term passes its smoothing through (mean over the batch, times the weight);
    # a row with label -1 (an attribute-only crop) is dropped
    out = identity_losses(torch.zeros(3, 2), torch.cat([logits, logits[:1]]), torch.tensor([0, 1, -1]),
                          id_weight=2.0, triplet_weight=1.0, label_smoothing=0.3, margin=0.3, ranking=False)
    assert set(out) == {"id"} and out["id"].item() == pytest.approx(2.0 * (1.2 + 1.9) / 2 * ln2, abs=1e-6)


def test_distillation_zero_for_same_geometry():
    t = torch.randn(6, 8)
    rot = torch.linalg.qr(torch.randn(8, 8))[0]
    assert similarity_distillation_loss(t @ rot, t).item() == pytest.approx(0.0, abs=1e-6)
    assert similarity_distillation_loss(torch.randn(6, 8), t).item() > 0.01


def test_feature_distillation_hand_computed():
    # image 0 points where the teacher's does (1 - cos = 0); image 1 is orthogonal to it (1 - 0 = 1)
    student = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert feature_distillation_loss(student, teacher).item() == pytest.approx(0.5, abs=1e-6)
    assert feature_distillation_loss(-teacher, teacher).item() == pytest.approx(2.0, abs=1e-6)
