import pytest
import torch

from xreid.models.backbones import mobilenetv2
from xreid.training.style_mix import StyleMixing, mix_styles


def test_mix_styles_by_hand():
    """Image A = [0, 2] (mean 1, sd 1), image B = [10, 14] (mean 12, sd 2); partners swapped.
    A keeps half its style: sd 0.5 * 1 + 0.5 * 2 = 1.5, mean 0.5 * 1 + 0.5 * 12 = 6.5, so its
    normalised [-1, 1] becomes [5, 8]; B keeps all of its own (lam 1) and is unchanged."""
    x = torch.tensor([[[[0.0, 2.0]]], [[[10.0, 14.0]]]])
    out = mix_styles(x, torch.tensor([1, 0]), torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(out, torch.tensor([[[[5.0, 8.0]]], [[[10.0, 14.0]]]]), atol=1e-4, rtol=0)
    # lam 0: A takes B's statistics exactly
    out = mix_styles(x, torch.tensor([1, 0]), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out[0], torch.tensor([[[10.0, 14.0]]]), atol=1e-4, rtol=0)


def test_mix_styles_keeps_the_statistics_out_of_the_gradient():
    x = torch.tensor([[[[0.0, 2.0]]], [[[10.0, 14.0]]]], requires_grad=True)
    mix_styles(x, torch.tensor([1, 0]), torch.tensor([0.5, 1.0]))[0].sum().backward()
    # d/dx of (x - mu) / sigma * 1.5 + const with mu, sigma constant: 1.5 per element of A, 0 for B
    torch.testing.assert_close(x.grad, torch.tensor([[[[1.5, 1.5]]], [[[0.0, 0.0]]]]), atol=1e-4, rtol=0)


def _outputs(net, images, p, seed=0):
    torch.manual_seed(seed)
    with StyleMixing(net, p):
        return net(images)


def test_style_mixing_hooks_change_training_passes_only_while_attached():
    torch.manual_seed(0)
    net = mobilenetv2().eval()  # ImageNet weights: a random network's last map is ~1e-9
    images = torch.rand(4, 3, 64, 32)
    plain = net(images)
    mixed = _outputs(net, images, 1.0)
    assert plain.abs().mean() > 0.01 and (mixed - plain).abs().mean() > 0.1 * plain.abs().mean()  # p = 1: the early stages' styles were mixed
    torch.testing.assert_close(_outputs(net, images, 1.0), mixed)  # the same seed mixes the same way
    torch.testing.assert_close(_outputs(net, images, 0.0), plain)  # p = 0: no hooks
    torch.testing.assert_close(net(images), plain)  # the hooks are gone after the block
    torch.testing.assert_close(_outputs(net, images[:1], 1.0), plain[:1])  # one image has no partner


def test_style_mixing_refuses_bad_settings():
    net = mobilenetv2(pretrained=False)
    with pytest.raises(ValueError, match="probability"):
        StyleMixing(net, 1.5)
    with pytest.raises(ValueError, match="stages \\[9\\] do not exist"):
        StyleMixing(net, 0.5, stages=(1, 9))
