"""The one data type of visual explanations, and the Grad-CAM primitive they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


#: The key of the query image in maps and image dictionaries (gallery items use their own keys).
QUERY = "query"


@dataclass
class SaliencyMap:
    """A non-negative H x W map over the model input (higher = more responsible) and what it explains."""

    values: np.ndarray
    kind: str  # "pair", "attention", "attribute", "occlusion-pair", "occlusion-attribute"
    label: str  # e.g. "dim 417", "upperBodyRed", "implicit attention (50 dims)"
    image: str = ""  # which image the map lies on: QUERY or a gallery key
    pair: str | None = None  # for a map of the query explaining one result: that result's key

    @property
    def is_empty(self) -> bool:
        """All zero (or non-finite): nothing to show, and the report says so instead of drawing noise."""
        return not np.isfinite(self.values).all() or float(np.max(self.values, initial=0.0)) <= 1e-12


def evidence_signs(values: np.ndarray) -> list[float]:
    """The direction in which each embedding value is evidence: -1 for a negative value, else +1
    (the ``signs`` of :func:`gradcam`)."""
    return np.where(np.asarray(values) < 0, -1.0, 1.0).tolist()


def last_feature_maps(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """One backbone pass (eval mode, no gradient) over ``images``: their last convolutional maps, which
    :func:`gradcam` explains, and their embeddings, from which callers choose what to explain."""
    model.eval()
    with torch.no_grad():
        maps = model.feature_map(images)
        return maps, model.embed_feature_map(maps).numpy()


def gradcam(model: torch.nn.Module, feature_maps: torch.Tensor, output_fn: Callable[[torch.Tensor], torch.Tensor],
            targets: Sequence[int], size: Sequence[int], signs: Sequence[float] | None = None,
            rows: Sequence[int] | None = None) -> np.ndarray:
    """Grad-CAM (captum ``LayerGradCam``) of ``signs[i] * output_fn(embedding)[i, targets[i]]`` for each
    explained output i, on the model's last convolutional maps (from :func:`last_feature_maps`),
    upsampled to the input ``size`` (H, W). Returns N x H x W, non-negative (N = len(targets)).

    ``rows[i]`` (default i) is the index in ``feature_maps`` of the image output i is read from. Only
    pooling, reduction and BNNeck run per explained output, so explaining 50 dims of one image costs
    about one backbone pass, not 50.

    ``signs`` (default all +1) says which direction of an output is evidence: an embedding dim whose
    value is negative is explained by what makes it more negative, so its sign is -1."""
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    rows = list(range(len(feature_maps))) if rows is None else list(rows)
    if len(rows) != len(targets):
        raise ValueError(f"gradcam: {len(targets)} targets but {len(rows)} rows")
    scale = torch.ones(len(rows), 1) if signs is None else torch.tensor(list(signs), dtype=torch.float32).view(-1, 1)
    tap = torch.nn.Identity()  # the layer captum weighs: the last convolutional map itself
    cam = LayerGradCam(lambda f: output_fn(model.embed_feature_map(tap(f))) * scale.to(f.dtype), tap)
    maps = cam.attribute(feature_maps[rows], target=list(targets), relu_attributions=True)
    up = LayerAttribution.interpolate(maps, tuple(size), interpolate_mode="bilinear")
    return up.detach().clamp_min(0).squeeze(1).numpy()
