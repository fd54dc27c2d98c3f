"""Attribute maps: where an attribute is seen — Grad-CAM of the attribute layer's logit, back through
the L2 normalisation, BNNeck and pooling to the last feature map."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xreid.explain.attribute_head import AttributeHead
from xreid.distance import l2_normalise
from xreid.explain.maps.base import QUERY, SaliencyMap, gradcam, last_feature_maps


def attribute_maps(model: torch.nn.Module, head: AttributeHead, image: torch.Tensor, attributes: Sequence[str],
                   key: str = QUERY) -> list[SaliencyMap]:
    """One map per named attribute for ``image`` (1 x 3 x H x W)."""
    if not attributes:
        return []
    idx = [head.names.index(a) for a in attributes]
    weights = torch.from_numpy(head.weights).float()

    def logits(emb: torch.Tensor) -> torch.Tensor:
        return l2_normalise(emb, axis=1) @ weights

    feature_maps, _ = last_feature_maps(model, image)
    maps = gradcam(model, feature_maps, logits, idx, image.shape[-2:], rows=[0] * len(idx))
    return [SaliencyMap(m, "attribute", a, key) for m, a in zip(maps, attributes)]
