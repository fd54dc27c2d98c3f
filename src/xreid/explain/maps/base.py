"""The one data type of visual explanations, and the Grad-CAM primitive they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SaliencyMap:
    """A non-negative H x W map over the model input (higher = more responsible) and what it explains."""

    values: np.ndarray
    kind: str  # "pair", "attention", "attribute", "occlusion-pair", "occlusion-attribute"
    label: str  # e.g. "dim 417", "upperBodyRed", "implicit attention (50 dims)"
    image: str = ""  # which image ("query" or a gallery key)

    @property
    def is_empty(self) -> bool:
        """All zero (or non-finite): nothing to show, and the report says so instead of drawing noise."""
        return not np.isfinite(self.values).all() or float(np.max(self.values, initial=0.0)) <= 1e-12


def last_conv_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The layer whose output is the final feature map (what Grad-CAM weighs)."""
    backbone = model.backbone
    if hasattr(backbone, "features"):
        return backbone.features[-1]
    if hasattr(backbone, "layer4"):
        return backbone.layer4
    raise ValueError(f"cannot find the last convolutional stage of {type(backbone).__name__}")


def evidence_signs(values: np.ndarray) -> list[float]:
    """The direction in which each embedding value is evidence: -1 for a negative value, else +1
    (the ``signs`` of :func:`gradcam`)."""
    return np.where(np.asarray(values) < 0, -1.0, 1.0).tolist()


def gradcam(model: torch.nn.Module, images: torch.Tensor, output_fn: Callable[[torch.Tensor], torch.Tensor],
            targets: Sequence[int], signs: Sequence[float] | None = None) -> np.ndarray:
    """Grad-CAM (captum ``LayerGradCam``) of ``signs[i] * output_fn(model(x))[i, targets[i]]`` for each
    image i, on the last convolutional stage, upsampled to the input size. Returns N x H x W, non-negative.

    ``signs`` (default all +1) says which direction of an output is evidence: an embedding dim whose
    value is negative is explained by what makes it more negative, so its sign is -1."""
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    scale = torch.ones(len(images), 1) if signs is None else torch.tensor(list(signs), dtype=torch.float32).view(-1, 1)
    cam = LayerGradCam(lambda x: output_fn(model(x)) * scale.to(x.dtype), last_conv_layer(model))
    maps = cam.attribute(images, target=list(targets), relu_attributions=True)
    up = LayerAttribution.interpolate(maps, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return up.detach().clamp_min(0).squeeze(1).numpy()
