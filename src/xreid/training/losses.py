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


def batch_hard(dist: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor | None:
    """Hermans et al.'s batch-hard mining on an M x M distance matrix: for each anchor its farthest
    positive and nearest negative, max(0, margin + d_ap - d_an) averaged over anchors (``margin <= 0``:
    the soft-margin form log(1 + exp(d_ap - d_an))); None when no anchor has a negative."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    d_ap = dist.masked_fill(~same, float("-inf")).max(1).values
    d_an = dist.masked_fill(same, float("inf")).min(1).values
    valid = torch.isfinite(d_an) & torch.isfinite(d_ap)
    if not valid.any():
        return None
    d_ap, d_an = d_ap[valid], d_an[valid]
    if margin <= 0:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(margin + d_ap - d_an).mean()


def batch_hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """The batch-hard triplet loss (``batch_hard``) on the Euclidean distances of ``features``."""
    loss = batch_hard(pairwise_euclidean(features), labels, margin)
    return features.sum() * 0.0 if loss is None else loss


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
                    triplet_weight: float, label_smoothing: float, margin: float, ranking: bool,
                    attribute_distance: torch.Tensor | None = None, gamma: float = 0.0) -> dict[str, torch.Tensor]:
    """The identity terms of a training batch: weighted cross-entropy and (once ``ranking``) batch-hard
    triplet -- ACRN's complementary form when ``attribute_distance`` (between the rows that have an
    identity, in order) and ``gamma`` are given. Rows whose label is negative have no identity
    (attribute-only crops) and are dropped before either loss sees the batch, so they can neither
    count as a class nor as a negative."""
    keep = labels >= 0
    feat, labels = feat[keep], labels[keep]
    out = {}
    if logits is not None:
        out["id"] = id_weight * id_loss(logits[keep], labels, label_smoothing)
    if ranking:
        out["triplet"] = triplet_weight * (
            batch_hard_triplet_loss(feat, labels, margin) if attribute_distance is None or not gamma
            else complementary_triplet_loss(feat, labels, attribute_distance, gamma, margin))
    return out


def attribute_distances(probabilities: torch.Tensor) -> torch.Tensor:
    """ACRN's attribute distance between every two rows of M x A attribute probabilities: the
    root-mean-square difference sqrt(mean_a (p_i,a - p_j,a)^2), in [0, 1] whatever A is, so
    gamma x its differences stays on the scale of the triplet margin (docs/METHODS.md#acrn-training)."""
    p = probabilities.float()
    return pairwise_euclidean(p, eps=0.0) / float(p.shape[1]) ** 0.5


def complementary_triplet_loss(features: torch.Tensor, labels: torch.Tensor, attribute_distance: torch.Tensor,
                               gamma: float = 0.5, margin: float = 0.3) -> torch.Tensor:
    """ACRN's attribute-complementary triplet loss, batch-hard:
    max(0, m + d_ap(CNN) - d_an(CNN) + gamma (d_ap(attr) - d_an(attr))), averaged over anchors.

    The attribute distances (M x M, no gradient) shift each pair's margin, so the hardest positive
    and negative are those of the combined distance d(CNN) + gamma d(attr): the network is pushed
    hardest where the attributes alone would rank wrongly, and only its own distance gets gradient.
    gamma = 0 is ``batch_hard_triplet_loss``."""
    dist = pairwise_euclidean(features) + gamma * attribute_distance.detach().to(features.dtype)
    loss = batch_hard(dist, labels, margin)
    return features.sum() * 0.0 if loss is None else loss


def attribute_weight_triplet_loss(probabilities: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                                  margin: float = 0.05, decay: float = 1e-3) -> torch.Tensor:
    """ACRN's second loss, for the attribute weight layer alone (not connected to the image): batch-hard
    triplet on the weighted attribute distance sum_a w_a (p_i,a - p_j,a)^2 (``explain.fusion``'s
    attribute distance), plus ``decay`` |w|^2, so attributes that do not separate people keep a
    small weight. ``weights`` are kept non-negative by the caller (projection after each step)."""
    p = probabilities.float().detach()
    diff2 = (p.unsqueeze(1) - p.unsqueeze(0)) ** 2  # M x M x A
    loss = batch_hard(diff2 @ weights, labels, margin)
    penalty = decay * (weights * weights).sum()
    return penalty if loss is None else loss + penalty


def aanet_losses(out: dict, labels: torch.Tensor, attribute_labels: torch.Tensor, attribute_rows: torch.Tensor,
                 log_sigma: torch.Tensor, positive_ratio, balance: str = "inverse",
                 label_smoothing: float = 0.1) -> dict[str, torch.Tensor]:
    """AANet's four task losses on a batch (docs/METHODS.md#aanet) -- identity cross-entropy of the
    global branch, the mean over the six part classifiers, class-balanced BCE of the attribute branch
    on the rows with labels (``attribute_rows``, a boolean mask; ``attribute_labels`` their 0/1 labels),
    identity cross-entropy of the attention-weighted branch -- and, under ``"aanet"``, their sum
    weighted by the learnt uncertainties (``models.aanet.uncertainty_weighted_loss``). Rows with a
    negative label have no identity and reach only the attribute loss."""
    from xreid.models.aanet import uncertainty_weighted_loss

    keep = labels >= 0
    ids = labels[keep]
    parts = out["part_logits"][keep]
    tasks = {"global": id_loss(out["global_logits"][keep], ids, label_smoothing),
             "part": id_loss(parts.flatten(0, 1), ids.repeat_interleave(parts.shape[1]), label_smoothing),
             "attr_branch": (attribute_bce(out["attribute_logits"][attribute_rows], attribute_labels, positive_ratio,
                                           balance) if attribute_rows.any() else out["attribute_logits"].sum() * 0),
             "aam": id_loss(out["aam_logits"][keep], ids, label_smoothing)}
    return {**tasks, "aanet": uncertainty_weighted_loss(torch.stack(list(tasks.values())), log_sigma)}
