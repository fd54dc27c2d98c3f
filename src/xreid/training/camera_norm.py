"""Per-camera normalisation statistics estimated on a site's unlabeled crops (``xreid adapt``;
docs/METHODS.md#camera-normalisation).

For each camera, the running mean and variance of every batch-norm layer of the network are
re-estimated on that camera's crops alone (no gradient, weights unchanged); the model file stores
them (``xreid.models.camera_norm``) and embeds each camera's crops with its own. Crops that name no
camera are grouped by how they look (``appearance_groups``) and each group gets statistics instead.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from xreid.models.camera_norm import APPEARANCE_GROUP, camera_groups, crop_statistics, running_statistics
from xreid.training.averaging import recompute_batchnorm

#: a camera with fewer crops than this gets no statistics of its own (its crops use the nearest camera's)
MIN_CROPS = 8


def batch_bounds(n: int, batch: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive batches of at most ``batch`` of ``n`` rows, a last batch of one row
    joined to the one before (a batch-norm layer in training mode refuses a batch of one)."""
    if batch < 2:
        raise ValueError(f"batch must hold at least 2 crops (got {batch})")
    bounds = [(a, min(n, a + batch)) for a in range(0, n, batch)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


#: appearance groups ``xreid adapt`` makes of crops that name no camera, chosen on PETA-ReID-val
#: (4 / 8 / 16 / 32 groups of 662 crops: 61.6 / 69.9 / 71.0 / 66.5 mAP; docs/RESULTS.md)
APPEARANCE_GROUPS = 16


@torch.no_grad()
def appearance_groups(model: torch.nn.Module, images: np.ndarray, groups: int = APPEARANCE_GROUPS,
                      batch: int = 64, min_crops: int = MIN_CROPS, seed: int = 0) -> list[str]:
    """A group name per crop (uint8 N x H x W x 3 at the network's input size) for crops of no named
    camera: k-means (faiss, ``seed``) of each crop's activation statistics at the network's first
    batch-norm layer (per channel, mean and log variance over the image; each standardised over the
    crops) into ``groups`` groups, fewer when there are not ``min_crops`` crops a group (none below
    two groups: every name then ''). Names: ``APPEARANCE_GROUP`` + a two-digit number."""
    import faiss

    from xreid.data.dataset import to_tensor

    k = min(groups, len(images) // min_crops)
    if k < 2:
        return [""] * len(images)
    training, feats = model.training, []
    model.eval()  # the forward pass must not move the network's own statistics
    try:
        for a, b in batch_bounds(len(images), batch):
            _, mean, var = crop_statistics(model, to_tensor(images[a:b]))
            feats.append(np.concatenate([mean, np.log(np.maximum(var, 1e-8))], 1))
    finally:
        model.train(training)
    f = np.concatenate(feats)
    f = np.ascontiguousarray((f - f.mean(0)) / (f.std(0) + 1e-6), np.float32)
    km = faiss.Kmeans(f.shape[1], k, niter=50, nredo=5, seed=seed)
    km.train(f)
    _, label = km.index.search(f, 1)
    return [f"{APPEARANCE_GROUP}{i + 1:02d}" for i in label[:, 0]]


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
        recompute_batchnorm(net, (to_tensor(images[rows[a:b]]) for a, b in batch_bounds(len(rows), batch)),
                            every_layer=True)
        norms[cam] = running_statistics(net)
    return norms, left_out
