"""Implicit attention (Almazan et al., Fig. 6): Grad-CAM accumulated over an image's most activated dims."""

from __future__ import annotations

import numpy as np
import torch

from xreid.explain.maps.base import SaliencyMap, evidence_signs, gradcam


def implicit_attention(model: torch.nn.Module, image: torch.Tensor, dims: int = 50, key: str = "query",
                       batch: int = 25) -> SaliencyMap:
    """Sum of the Grad-CAM maps of the ``dims`` most activated embedding dims of ``image`` (1 x 3 x H x W):
    largest in magnitude, each explained in the direction of its sign (embeddings here are signed)."""
    with torch.no_grad():
        emb = model(image)[0].numpy()
    top = np.argsort(np.abs(emb))[::-1][:dims]
    total = np.zeros(image.shape[-2:], np.float64)
    for s in range(0, len(top), batch):
        chunk = [int(d) for d in top[s:s + batch]]
        total += gradcam(model, image.expand(len(chunk), -1, -1, -1), lambda e: e, chunk,
                         evidence_signs(emb[chunk])).sum(0)
    return SaliencyMap(total, "attention", f"implicit attention ({len(top)} dims)", key)
