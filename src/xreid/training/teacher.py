"""Distillation targets for the view the student sees: the teacher embeds each augmented training batch
on the fly (``train.distill.targets: augmented``), instead of one cached clean-crop target per image.

The student trains on augmented crops (flip, padded crop, colour, blur, cut-out noise); a clean-crop
target asks it to map every augmented view onto the clean crop's embedding, i.e. to learn PETA's crops
rather than the teacher's invariances (docs/RESULTS.md, the mimic gap). With the augmented view's own
target the student copies how the teacher responds to each augmentation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xreid.distance import l2_normalise
from xreid.models.concat import ConcatEmbedder, concatenate_embeddings


def teacher_inputs(images: torch.Tensor, preprocess) -> np.ndarray:
    """The teacher's input for a student batch: N x 3 x H x W RGB in [0, 1] (the trainer's augmented
    batch; the student's pixel normalisation lives inside its network, so nothing to undo) resized
    bilinearly to the teacher's ``preprocess.size``, back to 0-255 and through ``preprocess.apply``
    (channel order, scale, mean / std: BGR 0-255 for the Open Model Zoo models)."""
    h, w = preprocess.size
    x = images.detach().float()
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = (x.clamp(0.0, 1.0) * 255.0).permute(0, 2, 3, 1).contiguous().numpy()
    return preprocess.apply(x)


def batch_embeddings(teacher, images: torch.Tensor) -> np.ndarray:
    """The teacher's raw embeddings of a student batch as it is: one batched call on its own input size;
    a concatenated teacher (``ConcatEmbedder``, 'a.xml,b.xml') runs each part on its own input and
    joins the parts' L2-normalised embeddings, as it does for images."""
    if isinstance(teacher, ConcatEmbedder):
        return concatenate_embeddings([batch_embeddings(part, images) for part in teacher.parts])
    return teacher.embed_inputs(teacher_inputs(images, teacher.preprocess))


def augmented_targets(teacher, images: torch.Tensor, mean: np.ndarray) -> torch.Tensor:
    """The teacher's embeddings of a student batch as it is (``batch_embeddings``, no mirror averaging:
    the mirror is one of the views), L2-normalised, minus ``mean`` (the clean targets' centre, see
    ``trainer.centred_targets``) and L2-normalised again."""
    raw = l2_normalise(batch_embeddings(teacher, images))
    return torch.from_numpy(l2_normalise(raw - mean).astype(np.float32))


def sample_indices(count: int, size: int) -> np.ndarray:
    """``size`` evenly spaced positions in ``range(count)`` (all when fewer): the images whose clean
    teacher embeddings give the centre of on-the-fly targets."""
    if count <= size:
        return np.arange(count)
    return np.linspace(0, count - 1, size).round().astype(np.int64)
