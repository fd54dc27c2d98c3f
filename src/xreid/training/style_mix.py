"""Style mixing (MixStyle; Zhou et al., "Domain generalization with MixStyle", ICLR 2021) for
training a model that must work on cameras it never saw (docs/METHODS.md#cross-domain-training).

A camera's look (colour cast, contrast, exposure) shows in the early feature maps as each
channel's mean and spread over the image. Style mixing re-styles each image of a training batch
with a random blend of its own statistics and another image's, so the network meets new "cameras"
made of the training ones and must rank by content. Training only: nothing changes in the model
file, the exported network or any test-time pass.

``mix_styles`` is the formula (a pure function); ``StyleMixing`` applies it at the end of chosen
backbone stages through forward hooks while training runs; its draws replay on resume.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: the Beta(alpha, alpha) the blend weight is drawn from (MixStyle's value: most weights near 0 or 1)
ALPHA = 0.1
#: stages of ``Backbone.stages()`` whose output is mixed: MobileNetV2's ends at 1/4 and 1/8 of the
#: input (ResNet's layer1 and layer2, where MixStyle mixes for re-id); the last stages keep identity
STAGES = (1, 2)


def mix_styles(x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Re-style feature maps ``x`` (B x C x H x W): per image b and channel, mean mu and standard
    deviation sigma over H x W (sigma = sqrt(var + eps), var the biased variance; both held constant
    for the gradient), then
    ``(x - mu_b) / sigma_b * (lam_b sigma_b + (1 - lam_b) sigma_perm(b)) + lam_b mu_b + (1 - lam_b) mu_perm(b)``.
    ``perm``: the partner of each image (B indices); ``lam``: each image's own share (B values in [0, 1];
    1 leaves the image unchanged)."""
    mu = x.mean(dim=(2, 3), keepdim=True).detach()
    sigma = (x.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt().detach()
    lam = lam.to(x.dtype).view(-1, 1, 1, 1)
    mixed_mu = lam * mu + (1 - lam) * mu[perm]
    mixed_sigma = lam * sigma + (1 - lam) * sigma[perm]
    return (x - mu) / sigma * mixed_sigma + mixed_mu


class StyleMixing:
    """Mix styles at the end of ``stages`` of ``backbone`` (a ``models.backbones.Backbone``): each
    hooked stage mixes a batch with probability ``p``, with a random partner for every image and
    blend weights drawn from Beta(``alpha``, ``alpha``). The draws come from torch's global generator,
    which the trainer seeds per batch (``draw_batch``), so a resumed run mixes as an uninterrupted
    one. ``remove()`` (or leaving the ``with`` block) detaches the hooks. Batches of one image pass
    unchanged."""

    def __init__(self, backbone: nn.Module, p: float, alpha: float = ALPHA, stages: Sequence[int] = STAGES) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"train.style_mix must be a probability in [0, 1], got {p}")
        all_stages = backbone.stages()
        bad = [s for s in stages if not 0 <= s < len(all_stages)]
        if bad:
            raise ValueError(f"style mixing stages {bad} do not exist: the backbone has {len(all_stages)} stages")
        self.p = p
        self._beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
        self._hooks = ([list(all_stages[s].children())[-1].register_forward_hook(self._mix) for s in stages]
                       if p > 0 else [])

    def _mix(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor | None:
        if output.shape[0] < 2 or torch.rand(()).item() >= self.p:
            return None
        perm = torch.randperm(output.shape[0])
        return mix_styles(output, perm, self._beta.sample((output.shape[0],)))

    def remove(self) -> None:
        """Detach the hooks: the backbone computes as before."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self) -> "StyleMixing":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
