"""Maps of a target as a whole (``targets.py``: the pair similarity, of the whole embedding or of one
branch of it), by Grad-CAM or by gradient x activation, and the branch map of a pair: one map per
branch of a descriptor made of several branch vectors, each of its own branch's similarity, summed
with weights equal to each branch's term of the whole similarity (docs/METHODS.md#visual-maps).

Gradient x activation (the per-location sum over channels of the last feature map times the target's
gradient there, negative part dropped) keeps where each channel's gradient acts; Grad-CAM averages
the gradient over the map first, which loses that for pooling over bands or attention maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xreid.distance import l2_normalise
from xreid.explain.maps.base import QUERY, SaliencyMap, gradcam, last_feature_maps
from xreid.explain.maps.targets import PairSimilarity, branches

METHODS = ("gradcam", "gradxact")


def gradient_x_activation(model: torch.nn.Module, feature_maps: torch.Tensor, output_fn, count: int,
                          size: Sequence[int]) -> np.ndarray:
    """ReLU of sum_c A_c * d output_k / d A_c on the last feature map A (1 x C x h x w, from
    ``last_feature_maps``) for each of the ``count`` outputs of ``output_fn`` (embeddings N x D ->
    N x count), upsampled bilinearly to ``size``. One backward pass for all. Returns count x H x W."""
    from captum.attr import LayerAttribution

    model.eval()
    f = feature_maps.detach().repeat(count, 1, 1, 1).requires_grad_(True)  # row k explains output k
    scores = output_fn(model.embed_feature_map(f))
    (grad,) = torch.autograd.grad(scores.diagonal().sum(), f)
    cam = (grad * f).sum(1, keepdim=True).detach().clamp_min(0)  # ReLU before upsampling, as Grad-CAM
    up = LayerAttribution.interpolate(cam, tuple(size), interpolate_mode="bilinear")
    return up.clamp_min(0).squeeze(1).numpy()


def target_maps(model: torch.nn.Module, image: torch.Tensor, targets: Sequence[PairSimilarity],
                method: str = "gradcam", key: str = QUERY, pair: str | None = None) -> list[SaliencyMap]:
    """One map of ``image`` (1 x 3 x H x W) per target, each explaining the target as one score."""
    if method not in METHODS:
        raise ValueError(f"map method {method!r}; choose from {', '.join(METHODS)}")
    feature_maps, _ = last_feature_maps(model, image)

    def output_fn(emb: torch.Tensor) -> torch.Tensor:
        return torch.stack([t.scores(emb) for t in targets], 1)

    if method == "gradcam":
        maps = gradcam(model, feature_maps, output_fn, list(range(len(targets))), image.shape[-2:],
                       rows=[0] * len(targets))
    else:
        maps = gradient_x_activation(model, feature_maps, output_fn, len(targets), image.shape[-2:])
    return [SaliencyMap(m.astype(np.float64), "target", t.name, key, pair) for m, t in zip(maps, targets)]


def branch_terms(f_image: np.ndarray, f_other: np.ndarray, parts: dict[str, slice]) -> dict[str, float]:
    """Each branch's term of the whole pair's cosine similarity: sum over its dims of
    f̂_image,n f̂_other,n (the terms add up to the similarity)."""
    prod = l2_normalise(np.asarray(f_image, np.float64)) * l2_normalise(np.asarray(f_other, np.float64))
    return {name: float(prod[part].sum()) for name, part in parts.items()}


def branch_pair_map(model: torch.nn.Module, image: torch.Tensor, other: np.ndarray, method: str = "gradcam",
                    key: str = QUERY, pair: str | None = None) -> tuple[SaliencyMap, list[SaliencyMap]]:
    """The branch map of ``image`` against the other image's embedding ``other``: the per-branch maps
    (each of its branch's similarity, scaled to a maximum of 1) summed with weights max(0, the
    branch's term of the whole similarity); returns the sum and the per-branch maps."""
    parts = branches(model)
    targets = [PairSimilarity(np.asarray(other), part, f"pair similarity, {name} branch") for name, part in parts.items()]
    per_branch = target_maps(model, image, targets, method, key, pair)
    _, emb = last_feature_maps(model, image)
    terms = branch_terms(emb[0], other, parts)
    total = np.zeros_like(per_branch[0].values)
    for m, name in zip(per_branch, parts):
        peak = float(m.values.max(initial=0.0))
        if peak > 0:
            total += max(0.0, terms[name]) * m.values / peak
    return SaliencyMap(total, "branch-sum", "branches' similarity, weighted by their share", key, pair), per_branch
