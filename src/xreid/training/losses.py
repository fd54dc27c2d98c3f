"""Re-id training losses, each a pure function on tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xreid.distance import l2_normalise


def pairwise_euclidean(x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between the rows of x and of y (x with itself when y is None)."""
    y = x if y is None else y
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2.0 * x @ y.t()
    return d2.clamp_min(eps).sqrt()


def batch_hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Hermans et al.'s batch-hard triplet loss: for each anchor, its farthest positive and nearest
    negative in the batch, max(0, margin + d_ap - d_an), averaged over anchors.

    ``margin <= 0`` selects the soft-margin form log(1 + exp(d_ap - d_an)).
    """
    dist = pairwise_euclidean(features)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    d_ap = dist.masked_fill(~same, float("-inf")).max(1).values
    d_an = dist.masked_fill(same, float("inf")).min(1).values
    valid = torch.isfinite(d_an) & torch.isfinite(d_ap)
    if not valid.any():
        return features.sum() * 0.0
    d_ap, d_an = d_ap[valid], d_an[valid]
    if margin <= 0:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(margin + d_ap - d_an).mean()


def id_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """Identity cross-entropy with label smoothing (Szegedy et al.; BoT uses epsilon = 0.1)."""
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def similarity_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Relational distillation: match the student's in-batch cosine-similarity matrix to the teacher's.

    Works across embedding sizes (no projection layer) and teaches the ranking structure, which is
    what re-id needs, rather than the teacher's coordinates.
    """
    s = l2_normalise(student, axis=1)
    t = l2_normalise(teacher, axis=1)
    return F.mse_loss(s @ s.t(), t @ t.t())


def feature_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Feature mimicking: mean cosine distance (1 - cos) between each student embedding and the
    teacher's embedding of the same image. Needs equal sizes (set the student's embedding_dim).

    Stronger than the relational loss: it fixes every image's place in the teacher's space, not just
    its similarities to the other 63 images of its batch.
    """
    return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


def attribute_bce(logits: torch.Tensor, labels: torch.Tensor, positive_ratio, scheme: str = "inverse") -> torch.Tensor:
    """Class-balanced binary cross-entropy of attribute logits (M x A) against 0/1 labels, averaged over
    every image and attribute; the per-element weights are ``explain.formulas.class_balanced_weights``
    of the positive ratios in the training data (the same loss ``fit_attribute_head`` fits with)."""
    from xreid.explain.formulas import class_balanced_weights

    weight = class_balanced_weights(labels.detach().cpu().numpy().astype(bool), positive_ratio, scheme)
    return F.binary_cross_entropy_with_logits(logits, labels.float(),
                                              weight=torch.as_tensor(weight, dtype=logits.dtype))


def identity_losses(feat: torch.Tensor, logits: torch.Tensor | None, labels: torch.Tensor, *, id_weight: float,
                    triplet_weight: float, label_smoothing: float, margin: float, ranking: bool
                    ) -> dict[str, torch.Tensor]:
    """The identity terms of a training batch: weighted cross-entropy and (once ``ranking``) batch-hard
    triplet. Rows whose label is negative have no identity (attribute-only crops) and are dropped
    before either loss sees the batch, so they can neither count as a class nor as a negative."""
    keep = labels >= 0
    feat, labels = feat[keep], labels[keep]
    out = {}
    if logits is not None:
        out["id"] = id_weight * id_loss(logits[keep], labels, label_smoothing)
    if ranking:
        out["triplet"] = triplet_weight * batch_hard_triplet_loss(feat, labels, margin)
    return out
