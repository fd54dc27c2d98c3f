"""Occlusion maps for every model (docs/METHODS.md#visual-maps): slide a patch over the image (mid-grey
by default; or the image's mean colour, uniform noise as the training cut-out, or the blurred image:
``FILLS``), batch the occluded copies through the model, and record how much the pair similarity (or
an attribute probability) drops. Needs no gradients, so it explains black-box ONNX / OpenVINO models
as well as xreid's own. Uses captum's ``Occlusion`` with a numpy model behind it."""

from __future__ import annotations

import numpy as np
import torch

from xreid.explain.maps.base import SaliencyMap
from xreid.explain.maps.targets import PairSimilarity
from xreid.models.embedders import Embedder


#: what an occluded patch is filled with
FILLS = ("grey", "mean", "noise", "blur")


def fill_image(image: np.ndarray, fill: str = "grey", seed: int = 0) -> np.ndarray:
    """The H x W x 3 float image in [0, 1] whose pixels replace an occluded patch of ``image`` (uint8):
    mid-grey, the image's mean colour, uniform noise (as the training cut-out; fixed ``seed``), or the
    image blurred by a Gaussian of sigma = 1/8 of its width."""
    x = np.asarray(image, np.float64) / 255.0
    if fill == "grey":
        return np.full_like(x, 0.5)
    if fill == "mean":
        return np.broadcast_to(x.reshape(-1, 3).mean(0), x.shape).copy()
    if fill == "noise":
        return np.random.default_rng(seed).random(x.shape)
    if fill == "blur":
        from scipy.ndimage import gaussian_filter

        return gaussian_filter(x, sigma=(x.shape[1] / 8, x.shape[1] / 8, 0), mode="nearest")
    raise ValueError(f"occlusion fill {fill!r}; choose from {', '.join(FILLS)}")


def _patch(size: tuple[int, int], fraction: float) -> tuple[int, int]:
    return max(2, round(size[0] * fraction)), max(2, round(size[1] * fraction * 2))


def occlusion_map(embedder: Embedder, image: np.ndarray, score_fn, kind: str, label: str, key: str,
                  patch_fraction: float = 0.125, batch: int = 32, fill: str = "grey") -> SaliencyMap:
    """Drop of ``score_fn(embeddings)`` when each region of ``image`` (H x W x 3 uint8, model size) is
    covered (``fill``: ``fill_image``).

    ``score_fn`` maps an N x D embedding array to N scores (higher = more of what is explained).
    """
    from captum.attr import Occlusion

    h, w = image.shape[:2]
    ph, pw = _patch((h, w), patch_fraction)

    def forward(x: torch.Tensor) -> torch.Tensor:
        arr = (x.permute(0, 2, 3, 1).numpy().clip(0, 1) * 255).round().astype(np.uint8)
        return torch.from_numpy(np.asarray(score_fn(embedder.embed_arrays(arr)), np.float32))

    x = torch.tensor(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    baseline = 0.5 if fill == "grey" else torch.from_numpy(fill_image(image, fill)).permute(2, 0, 1).float()[None]
    occ = Occlusion(forward)
    attr = occ.attribute(x, sliding_window_shapes=(3, ph, pw), strides=(3, max(1, ph // 2), max(1, pw // 2)),
                         baselines=baseline, perturbations_per_eval=batch)
    values = attr[0].mean(0).clamp_min(0).numpy().astype(np.float64)
    return SaliencyMap(values, kind, label, key)


def occlusion_pair(embedder: Embedder, image: np.ndarray, other_embedding: np.ndarray, key: str,
                   pair: str | None = None, part: slice | None = None, **kw) -> SaliencyMap:
    """Regions of ``image`` whose occlusion lowers its cosine similarity to ``other_embedding`` (on
    ``part`` of the dims, e.g. one branch: ``targets.branches``; default all)."""
    target = PairSimilarity(np.asarray(other_embedding), slice(None) if part is None else part)
    saliency = occlusion_map(embedder, image, target.scores, "occlusion-pair", "pair similarity", key, **kw)
    saliency.pair = pair
    return saliency


def occlusion_attribute(embedder: Embedder, head, image: np.ndarray, attribute: str, key: str, **kw) -> SaliencyMap:
    """Regions of ``image`` whose occlusion lowers the probability of ``attribute``."""
    a = head.names.index(attribute)
    return occlusion_map(embedder, image, lambda e: head.predict(e)[:, a], "occlusion-attribute", attribute, key, **kw)
