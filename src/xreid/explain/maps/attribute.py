"""Attribute maps: where an attribute is seen.

- Grad-CAM of the attribute layer's logit, back through the L2 normalisation and the head to the last
  feature map (any xreid PyTorch model);
- native: the model's own class activation map of the attribute (an AANet model's attribute branch:
  the map whose mean over the attribute's region is its logit), upsampled; no gradient needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xreid.distance import l2_normalise
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.maps.base import QUERY, SaliencyMap, gradcam, last_feature_maps


def has_native_maps(model: torch.nn.Module, attributes: Sequence[str]) -> bool:
    """Whether ``model`` has its own class activation map for every one of ``attributes``."""
    names = getattr(model, "attributes", None)
    return names is not None and hasattr(model, "attribute_maps") and all(a in names for a in attributes)


def native_attribute_maps(model: torch.nn.Module, image: torch.Tensor, attributes: Sequence[str],
                          key: str = QUERY) -> list[SaliencyMap]:
    """The model's own CAM of each named attribute for ``image`` (1 x 3 x H x W), upsampled bilinearly
    to the input and its negative part dropped (as Grad-CAM's ReLU does)."""
    from captum.attr import LayerAttribution

    if not has_native_maps(model, attributes):
        raise ValueError(f"the model has no class activation map of {', '.join(attributes)}")
    model.eval()
    with torch.no_grad():
        cams = model.attribute_maps(image)[:, [model.attributes.index(a) for a in attributes]]
    up = LayerAttribution.interpolate(cams[0][:, None], tuple(image.shape[-2:]), interpolate_mode="bilinear")
    return [SaliencyMap(m, "attribute", a, key) for m, a in zip(up.clamp_min(0).squeeze(1).numpy(), attributes)]


def attribute_maps(model: torch.nn.Module, head: AttributeHead, image: torch.Tensor, attributes: Sequence[str],
                   key: str = QUERY, native: bool = True) -> list[SaliencyMap]:
    """One map per named attribute for ``image`` (1 x 3 x H x W): the model's own CAMs when it has them
    for every attribute and ``native``, else Grad-CAM of ``head``'s logits."""
    if not attributes:
        return []
    if native and has_native_maps(model, attributes):
        return native_attribute_maps(model, image, attributes, key)
    idx = [head.names.index(a) for a in attributes]
    weights = torch.from_numpy(head.weights).float()

    def logits(emb: torch.Tensor) -> torch.Tensor:
        return l2_normalise(emb, axis=1) @ weights

    feature_maps, _ = last_feature_maps(model, image)
    maps = gradcam(model, feature_maps, logits, idx, image.shape[-2:], rows=[0] * len(idx))
    return [SaliencyMap(m, "attribute", a, key) for m, a in zip(maps, attributes)]
