"""Per-camera normalisation statistics estimated on a site's unlabeled crops (``xreid adapt``;
docs/METHODS.md#camera-normalisation).

For each camera, the running mean and variance of every batch-norm layer of the network are
re-estimated on that camera's crops alone (no gradient, weights unchanged); the model file stores
them (``xreid.models.camera_norm``) and embeds each camera's crops with its own.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from xreid.models.camera_norm import camera_groups, running_statistics
from xreid.training.averaging import recompute_batchnorm

#: a camera with fewer crops than this gets no statistics of its own (its crops use the network's)
MIN_CROPS = 8


@torch.no_grad()
def estimate_camera_norms(model: torch.nn.Module, images: np.ndarray, cameras: Sequence[str], batch: int = 64,
                          min_crops: int = MIN_CROPS) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, int]]:
    """Each camera's batch-norm statistics, from its crops in ``images`` (uint8 N x H x W x 3 at the
    network's input size; ``cameras``: one name per crop, '' = unknown, never estimated). Returns
    (camera -> statistics, camera -> crop count of the cameras left out for having fewer than
    ``min_crops``). ``model`` is not changed."""
    from xreid.data.dataset import to_tensor

    if len(cameras) != len(images):
        raise ValueError(f"{len(images)} crops but {len(cameras)} camera names")
    groups, left_out = camera_groups(cameras, min_crops)
    norms = {}
    net = copy.deepcopy(model)  # one copy: every camera's pass resets the statistics it re-estimates
    for cam, rows in groups.items():
        recompute_batchnorm(net, (to_tensor(images[rows[i:i + batch]]) for i in range(0, len(rows), batch)),
                            every_layer=True)
        norms[cam] = running_statistics(net)
    return norms, left_out
