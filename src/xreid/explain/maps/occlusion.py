"""Occlusion maps for every model (docs/METHODS.md#visual-maps): slide a mid-grey patch over the image,
batch the occluded copies through the model, and record how much the pair similarity (or an
attribute probability) drops. Needs no gradients, so it explains black-box ONNX / OpenVINO models
as well as xreid's own. Uses captum's ``Occlusion`` with a numpy model behind it."""

from __future__ import annotations

import numpy as np
import torch

from xreid.distance import cosine_similarity
from xreid.explain.maps.base import SaliencyMap
from xreid.models.embedders import Embedder


def _patch(size: tuple[int, int], fraction: float) -> tuple[int, int]:
    return max(2, round(size[0] * fraction)), max(2, round(size[1] * fraction * 2))


def occlusion_map(embedder: Embedder, image: np.ndarray, score_fn, kind: str, label: str, key: str,
                  patch_fraction: float = 0.125, batch: int = 32) -> SaliencyMap:
    """Drop of ``score_fn(embeddings)`` when each region of ``image`` (H x W x 3 uint8, model size) is grey.

    ``score_fn`` maps an N x D embedding array to N scores (higher = more of what is explained).
    """
    from captum.attr import Occlusion

    h, w = image.shape[:2]
    ph, pw = _patch((h, w), patch_fraction)

    def forward(x: torch.Tensor) -> torch.Tensor:
        arr = (x.permute(0, 2, 3, 1).numpy().clip(0, 1) * 255).round().astype(np.uint8)
        return torch.from_numpy(np.asarray(score_fn(embedder.embed_arrays(arr)), np.float32))

    x = torch.tensor(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    occ = Occlusion(forward)
    attr = occ.attribute(x, sliding_window_shapes=(3, ph, pw), strides=(3, max(1, ph // 2), max(1, pw // 2)),
                         baselines=0.5, perturbations_per_eval=batch)
    values = attr[0].mean(0).clamp_min(0).numpy().astype(np.float64)
    return SaliencyMap(values, kind, label, key)


def occlusion_pair(embedder: Embedder, image: np.ndarray, other_embedding: np.ndarray, key: str,
                   pair: str | None = None, **kw) -> SaliencyMap:
    """Regions of ``image`` whose occlusion lowers its cosine similarity to ``other_embedding``."""
    saliency = occlusion_map(embedder, image, lambda e: cosine_similarity(e, other_embedding[None])[:, 0],
                             "occlusion-pair", "pair similarity", key, **kw)
    saliency.pair = pair
    return saliency


def occlusion_attribute(embedder: Embedder, head, image: np.ndarray, attribute: str, key: str, **kw) -> SaliencyMap:
    """Regions of ``image`` whose occlusion lowers the probability of ``attribute``."""
    a = head.names.index(attribute)
    return occlusion_map(embedder, image, lambda e: head.predict(e)[:, a], "occlusion-attribute", attribute, key, **kw)
