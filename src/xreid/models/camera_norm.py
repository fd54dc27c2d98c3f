"""Per-camera normalisation statistics of an xreid network (docs/METHODS.md#camera-normalisation).

A model file may hold, beside its weights, one set of batch-norm statistics (running mean and
variance of every batch-norm layer) per camera of a site, estimated on that camera's unlabeled crops
(``xreid adapt``, ``xreid.training.camera_norm``). A crop from such a camera is embedded by the
network with that camera's statistics, so each camera's colour, light and viewpoint are normalised
away before the layers compare people (camera-based batch normalisation, Zhuang et al., ECCV 2020).
A crop whose camera is unknown, or has no statistics, is embedded with the statistics of the camera
it looks most like (``nearest_statistics``): the one whose first batch-norm layer's statistics the
crop's own activations there fit best, as camera centring takes the nearest camera mean. When the
crops name no cameras, ``xreid adapt`` groups them by those activations instead (appearance groups,
named ``APPEARANCE_GROUP``...): statistics per group, every crop routed to its nearest group; a group
is not a camera a query can name (``camera_names`` leaves them out).

Stored under the model file's ``camera_norms`` key: ``{camera: {layer name: 2 x C float32 tensor
(mean; variance)}}``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

#: the model file key holding the per-camera statistics
CAMERA_NORMS_KEY = "camera_norms"

def camera_groups(cameras, min_crops: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """(camera -> row indices of its crops, for each named camera with at least ``min_crops``; camera ->
    crop count, for the cameras left out). '' is never a camera. The one rule of which cameras get
    their own statistics or mean."""
    cams = np.asarray([str(c or "") for c in cameras])
    groups, left_out = {}, {}
    for cam in sorted(set(cams) - {""}):
        rows = np.flatnonzero(cams == cam)
        if len(rows) >= min_crops:
            groups[str(cam)] = rows
        else:
            left_out[str(cam)] = int(len(rows))
    return groups, left_out


def batchnorm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """Every batch-norm layer of ``model`` by its module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def running_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """The network's batch-norm statistics in the stored form: layer name -> 2 x C (mean; variance)."""
    return {name: torch.stack([m.running_mean, m.running_var]).float().clone()
            for name, m in batchnorm_layers(model).items()}


def with_statistics(model: nn.Module, stats: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` (eval mode) whose batch-norm layers normalise with ``stats`` (layer name ->
    2 x C); a ValueError when they do not name exactly the model's layers and sizes."""
    layers = batchnorm_layers(model)
    if set(stats) != set(layers):
        missing, extra = sorted(set(layers) - set(stats)), sorted(set(stats) - set(layers))
        raise ValueError(f"camera statistics do not fit the network: missing {missing[:3]}, unknown {extra[:3]}")
    out = copy.deepcopy(model).eval()
    for name, m in batchnorm_layers(out).items():
        s = stats[name]
        if tuple(s.shape) != (2, m.num_features):
            raise ValueError(f"camera statistics of layer {name}: shape {tuple(s.shape)}, the layer has "
                             f"{m.num_features} channels")
        m.running_mean.copy_(s[0])
        m.running_var.copy_(s[1])
    return out


class _Reached(Exception):
    """Raised by the hook of ``first_norm_input`` to stop the forward pass at the first norm layer."""


def first_norm_input(model: nn.Module, inputs: torch.Tensor) -> tuple[str, torch.Tensor]:
    """(name, input) of the batch-norm layer ``model`` runs first on ``inputs``; the forward pass
    stops there (only the layers before it run). It hooks ``model``'s layers while it runs: give it a
    network no other thread uses at the same time (``CameraRouter`` keeps a copy of its own)."""
    names = {m: name for name, m in batchnorm_layers(model).items()}

    def hook(module, args):
        raise _Reached(names.get(module, ""), args[0])

    handles = [m.register_forward_pre_hook(hook) for m in names]
    try:
        with torch.no_grad():
            model(inputs)
    except _Reached as got:
        return got.args
    finally:
        for h in handles:
            h.remove()
    raise ValueError("the network has no batch-norm layer to match cameras by")


def nearest_statistics(mean: np.ndarray, var: np.ndarray, cameras: Mapping[str, np.ndarray],
                       eps: float = 1e-5) -> list[str]:
    """For each crop (rows of ``mean``, ``var``: N x C, its activations' mean and variance per channel
    over the image at one batch-norm layer), the camera whose statistics there (``cameras``: name ->
    2 x C, mean; variance) fit it best: the smallest KL divergence of the crop's per-channel Gaussian
    from the camera's, summed over channels,
    0.5 * sum_c (log(s_c / v_c) + (v_c + (m_c - mu_c)^2) / s_c - 1), with eps added to each variance."""
    names = sorted(cameras)
    m, v = np.asarray(mean, np.float64)[:, None], np.asarray(var, np.float64)[:, None] + eps
    stats = np.stack([np.asarray(cameras[n], np.float64) for n in names])  # K x 2 x C
    mu, s = stats[None, :, 0], stats[None, :, 1] + eps
    kl = 0.5 * (np.log(s / v) + (v + (m - mu) ** 2) / s - 1).sum(-1)  # N x K
    return [names[k] for k in kl.argmin(1)]


def crop_statistics(model: nn.Module, inputs: torch.Tensor) -> tuple[str, np.ndarray, np.ndarray]:
    """(layer name, N x C mean, N x C variance): each crop's activations at the network's first
    batch-norm layer, per channel over the image (float64)."""
    name, x = first_norm_input(model, inputs)
    x = x.double().flatten(2) if x.ndim > 2 else x.double()[..., None]  # a 1-d layer: one value a channel
    return name, x.mean(2).numpy(), x.var(2, unbiased=False).numpy()


def nearest_cameras(model: nn.Module, norms: Mapping[str, Mapping[str, torch.Tensor]],
                    inputs: torch.Tensor) -> list[str]:
    """The camera of ``norms`` each of ``inputs`` (a preprocessed batch) looks most like, by
    ``nearest_statistics`` at the network's first batch-norm layer (``first_norm_input``'s caveat)."""
    name, mean, var = crop_statistics(model, inputs)
    missing = [cam for cam, stats in norms.items() if name not in stats]
    if missing:
        raise ValueError(f"camera statistics of {missing[0]!r} lack the network's first batch-norm layer {name!r}")
    return nearest_statistics(mean, var, {cam: stats[name].double().numpy() for cam, stats in norms.items()})


#: how a model with camera statistics chooses them for a crop of unknown camera; part of its identity
#: (``Embedder.identity``), so embeddings made before the rule are never mixed with embeddings made by it
ROUTING = "nearest-first-norm/1"


class CameraRouter:
    """``nearest_cameras`` for one network, on a private copy of it behind a lock: the copy's layers
    are hooked while it runs, so neither the network other threads embed or explain with nor the
    camera copies made from it ever carry a hook."""

    def __init__(self, model: nn.Module, norms: Mapping[str, Mapping[str, torch.Tensor]]):
        self.model, self.norms, self.lock = copy.deepcopy(model).eval(), norms, threading.Lock()

    def __call__(self, inputs: torch.Tensor) -> list[str]:
        with self.lock:
            return nearest_cameras(self.model, self.norms, inputs)


#: how the statistics of an appearance group are named (``xreid.training.camera_norm.appearance_groups``):
#: crops of no named camera grouped by how they look; never a camera a user names
APPEARANCE_GROUP = "appearance-group-"


def is_appearance_group(name: str) -> bool:
    return name.startswith(APPEARANCE_GROUP)


def check_norms(norms: object, where: str) -> dict[str, dict[str, torch.Tensor]]:
    """``norms`` as read from a model file, checked for shape: a ValueError naming ``where``."""
    if not isinstance(norms, dict) or not all(isinstance(c, str) and isinstance(s, dict) for c, s in norms.items()):
        raise ValueError(f"{where}: '{CAMERA_NORMS_KEY}' is not a mapping of camera names to statistics")
    for cam, stats in norms.items():
        for name, t in stats.items():
            if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[0] != 2:
                raise ValueError(f"{where}: the statistics of camera {cam!r}, layer {name}, are not a 2 x C tensor")
    return norms
