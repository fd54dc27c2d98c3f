"""Map targets (the pair similarity, whole or per branch), gradient x activation, branch maps and
occlusion fills, against hand-computed values."""

import numpy as np
import pytest
import torch

from xreid.explain.maps.base import last_feature_maps
from xreid.explain.maps.branch import branch_pair_map, branch_terms, gradient_x_activation, target_maps
from xreid.explain.maps.occlusion import fill_image, occlusion_pair
from xreid.explain.maps.targets import PairSimilarity, branch_targets, branches
from xreid.models.aanet import descriptor_branches
from xreid.models.networks import build_model
from xreid.models.reid_net import ModelSpec


@pytest.fixture(scope="module")
def reduced():
    torch.manual_seed(0)
    return build_model(ModelSpec(input_size=(64, 32), embedding_dim=16), pretrained=True).eval()


def test_descriptor_branches_follow_the_concatenation_order():
    b = descriptor_branches("all", 4)
    assert list(b) == ["global", "parts", "regions", "aam"]
    assert [(s.start, s.stop) for s in b.values()] == [(0, 4), (4, 28), (28, 44), (44, 48)]  # 4, 6x4, 4x4, 4
    assert descriptor_branches("global", 4) == {"global": slice(0, 4)}


def test_pair_similarity_hand_computed_in_numpy_and_torch():
    other = np.array([1.0, 0.0, 0.0, 1.0])
    emb = np.array([[1.0, 1.0, 5.0, 5.0], [0.0, 2.0, 0.0, 0.0]])
    whole = PairSimilarity(other)
    first = PairSimilarity(other, slice(0, 2))
    np.testing.assert_allclose(first.scores(emb), [1 / np.sqrt(2), 0.0], atol=1e-6)
    np.testing.assert_allclose(whole.scores(emb), [6 / (np.sqrt(52) * np.sqrt(2)), 0.0], atol=1e-6)
    np.testing.assert_allclose(first.scores(torch.tensor(emb)).numpy(), first.scores(emb), atol=1e-6)


def test_branch_terms_add_up_to_the_similarity():
    f, o = np.array([1.0, 0.0, 1.0, 1.0]), np.array([1.0, 1.0, 0.0, 1.0])
    terms = branch_terms(f, o, {"a": slice(0, 2), "b": slice(2, 4)})
    assert terms == pytest.approx({"a": 1 / 3, "b": 1 / 3})  # |f| = |o| = sqrt(3); products 1, 0 | 0, 1
    assert sum(terms.values()) == pytest.approx(PairSimilarity(o).scores(f[None])[0])


def test_a_model_without_branches_is_one_branch(reduced):
    assert branches(reduced) == {"all": slice(None)}
    assert list(branch_targets(reduced, np.ones(16))) == ["all"]


def test_gradient_x_activation_by_definition(reduced):
    x = torch.rand(1, 3, 64, 32, generator=torch.Generator().manual_seed(3))
    feats, emb = last_feature_maps(reduced, x)
    other = np.random.default_rng(0).normal(size=16)
    target = PairSimilarity(other)
    got = gradient_x_activation(reduced, feats, lambda e: target.scores(e)[:, None], 1, (64, 32))[0]
    f = feats.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(target.scores(reduced.embed_feature_map(f))[0], f)
    cam = torch.relu((grad * f).sum(1, keepdim=True))
    expected = torch.nn.functional.interpolate(cam, size=(64, 32), mode="bilinear")[0, 0].detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    both = target_maps(reduced, x, [target, PairSimilarity(-other)], "gradxact")
    np.testing.assert_allclose(both[0].values, got, rtol=1e-4, atol=1e-7)
    assert both[0].label == "pair similarity"


def test_branch_map_of_a_one_branch_model_is_its_scaled_map(reduced):
    x = torch.rand(1, 3, 64, 32, generator=torch.Generator().manual_seed(4))
    _, emb = last_feature_maps(reduced, x)
    other = emb[0] + 0.1  # a similar image: positive similarity
    total, per_branch = branch_pair_map(reduced, x, other)
    sim = float(PairSimilarity(other).scores(emb)[0])
    np.testing.assert_allclose(total.values, sim * per_branch[0].values / per_branch[0].values.max(), rtol=1e-6)


def test_fills():
    img = np.zeros((16, 8, 3), np.uint8)
    img[:, :, 0] = 255
    assert np.allclose(fill_image(img, "grey"), 0.5)
    np.testing.assert_allclose(fill_image(img, "mean")[3, 2], [1.0, 0.0, 0.0])
    noise = fill_image(img, "noise")
    assert noise.min() >= 0 and noise.max() <= 1 and np.array_equal(noise, fill_image(img, "noise"))
    np.testing.assert_allclose(fill_image(img, "blur"), fill_image(img, "mean"), atol=1e-9)  # a flat image stays flat
    with pytest.raises(ValueError, match="fill"):
        fill_image(img, "black")


def test_occlusion_with_a_fill_and_a_branch_finds_the_only_region_that_matters():
    from tests.test_maps import LeftHalfColour

    img = np.zeros((16, 8, 3), np.uint8)
    img[:, :4] = 250
    img[:, 4:] = 10
    emb = LeftHalfColour()
    m = occlusion_pair(emb, img, emb.embed_arrays(img[None])[0], "g", patch_fraction=0.25, fill="noise",
                       part=slice(0, 3))
    assert m.values[:, :2].mean() > 1e-5 and np.allclose(m.values[:, 6:], 0, atol=1e-6)
