"""Stochastic weight averaging (Izmailov et al., UAI 2018): after the learning-rate schedule, train a
few more epochs at a constant learning rate, average the weights taken at the end of each, then
re-estimate the batch-norm statistics for the averaged weights (the running statistics of a weight
average are not the average of the running statistics)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def trainable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that train (frozen ones are the same in every snapshot)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def accumulate_average(average: dict[str, torch.Tensor] | None, model: nn.Module,
                       count: int) -> dict[str, torch.Tensor]:
    """The running mean of ``count`` snapshots updated with the model's current weights:
    ``avg + (w - avg) / (count + 1)``; ``average`` None (or ``count`` 0) starts from this snapshot."""
    current = trainable_weights(model)
    if average is None or count == 0:
        return current
    return {name: avg + (current[name] - avg) / (count + 1) for name, avg in average.items()}


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], every_layer: bool = False) -> int:
    """Re-estimate the running mean / variance of every batch-norm layer that is in training mode
    under ``model.train()`` (frozen stages keep theirs; ``every_layer``: theirs too) as the exact
    average over ``batches``. Returns the number of images seen; the model is left in eval mode."""
    model.train()
    if every_layer:
        from xreid.models.camera_norm import batchnorm_layers

        for m in batchnorm_layers(model).values():
            m.train()
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    seen = 0
    for images in batches:
        model(images)
        seen += len(images)
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.eval()
    return seen
