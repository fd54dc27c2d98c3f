"""Image preprocessing and batch augmentation for re-id.

Preprocessing turns any RGB crop into the model's input (resize to H x W, float in [0, 1]).
Augmentation runs on whole batches of tensors: flip, padded crop and optional colour jitter
(brightness / contrast / saturation, for cross-camera illumination) through kornia, and a
curriculum cut-out of our own (random-noise rectangles whose maximum size grows during training;
docs/METHODS.md#training-recipe).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an H x W x 3 uint8 image to ``size`` = (height, width) with bilinear filtering."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def to_tensor_batch(images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Stack equally sized uint8 H x W x 3 images into an N x 3 x H x W float tensor in [0, 1]."""
    arr = np.stack(images) if isinstance(images, list) else images
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def cutout_noise(images: torch.Tensor, max_fraction: float, prob: float = 0.5,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace one random rectangle per image (with probability ``prob``) by uniform noise.

    The rectangle's sides are drawn up to ``sqrt(max_fraction)`` of the image sides, so its area is
    at most ``max_fraction`` of the image. Returns a new tensor.
    """
    if max_fraction <= 0 or prob <= 0:
        return images
    out = images.clone()
    n, _, h, w = images.shape
    side = float(np.sqrt(max_fraction))
    r = torch.rand(n, 5, generator=generator)
    for i in range(n):
        if r[i, 0] >= prob:
            continue
        eh = max(1, int(h * side * r[i, 1]))
        ew = max(1, int(w * side * r[i, 2]))
        y = int((h - eh) * r[i, 3])
        x = int((w - ew) * r[i, 4])
        out[i, :, y:y + eh, x:x + ew] = torch.rand(3, eh, ew, generator=generator)
    return out


def curriculum_fraction(epoch: int, epochs: int, start: float, end: float) -> float:
    """Cut-out's maximum area fraction, growing linearly from ``start`` to ``end`` over training."""
    if epochs <= 1:
        return end
    return start + (end - start) * min(1.0, epoch / (epochs - 1))


class BatchAugment:
    """Flip + padded random crop + colour jitter (kornia) + curriculum noise cut-out, on N x 3 x H x W.

    ``color`` is the jitter strength: brightness, contrast and saturation each scaled by a factor
    drawn from [1 - color, 1 + color], on 80 % of the images. Hue is left alone: clothing colour is
    identity evidence. ``blur`` is the share of images Gaussian-blurred (sigma 0.1-1.5 px), ``scale``
    the zoom range [1 - scale, 1 + scale] applied to half the images; both off by default.
    """

    def __init__(self, size: tuple[int, int], pad: int = 10, flip: bool = True, color: float = 0.0,
                 blur: float = 0.0, scale: float = 0.0):
        import kornia.augmentation as K

        ops = [K.RandomHorizontalFlip()] if flip else []
        if pad:
            ops.append(K.RandomCrop(size, padding=pad, padding_mode="replicate"))
        if scale > 0:  # the person nearer or farther in the crop (borders repeated when zooming out)
            ops.append(K.RandomAffine(degrees=0.0, scale=(1.0 - scale, 1.0 + scale), padding_mode="border", p=0.5))
        if color > 0:
            ops.append(K.ColorJitter(brightness=color, contrast=color, saturation=color, hue=0.0, p=0.8))
        if blur > 0:  # out-of-focus or low-resolution cameras
            ops.append(K.RandomGaussianBlur((7, 7), (0.1, 1.5), p=blur))
        self.kornia_ops = K.AugmentationSequential(*ops) if ops else None

    def __call__(self, images: torch.Tensor, cutout_fraction: float) -> torch.Tensor:
        if self.kornia_ops is not None:
            images = self.kornia_ops(images)
        return cutout_noise(images, cutout_fraction)
