"""Implicit attention (docs/METHODS.md#visual-maps): Grad-CAM accumulated over an image's most activated dims."""

from __future__ import annotations

import numpy as np
import torch

from xreid.explain.maps.base import (
    QUERY,
    SaliencyMap,
    evidence_signs,
    gradcam,
    last_feature_maps,
)


def implicit_attention(model: torch.nn.Module, image: torch.Tensor, dims: int = 50, key: str = QUERY) -> SaliencyMap:
    """Sum of the Grad-CAM maps of the ``dims`` most activated embedding dims of ``image`` (1 x 3 x H x W):
    largest in magnitude, each explained in the direction of its sign (embeddings here are signed)."""
    feature_maps, emb = last_feature_maps(model, image)
    top = [int(d) for d in np.argsort(np.abs(emb[0]))[::-1][:dims]]
    total = gradcam(model, feature_maps, lambda e: e, top, image.shape[-2:], evidence_signs(emb[0, top]),
                    rows=[0] * len(top)).sum(0)
    return SaliencyMap(total.astype(np.float64), "attention", f"implicit attention ({len(top)} dims)", key)
