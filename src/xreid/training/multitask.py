"""Multi-task training: the attribute layer learnt together with the network (docs/METHODS.md#training-recipe).

The layer has the form of ``explain.attribute_head.AttributeHead`` -- N x A weights, no bias, on the
L2-normalised embedding -- so the trained model ships a head for which eq. 3.1, eq. 3.2 and the exact
decomposition hold as for a post-hoc one. Its loss is the class-balanced BCE
(``losses.attribute_bce``) on every training image with attribute labels: the identity-labelled
train split and the attribute-only crops (CUHK, MIT), less the share of attribute-only crops held
out to calibrate on (``data.splits``). Attribute-only crops carry the label -1: they never reach
the identity losses (``losses.identity_losses``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xreid.data.labels import label_matrix
from xreid.data.peta import EVALUATION_ATTRIBUTES, EXPLANATION_ATTRIBUTES, VOCABULARY
from xreid.data.records import ImageRecord
from xreid.data.splits import CALIBRATION_SHARE, held_out
from xreid.distance import l2_normalise

log = logging.getLogger(__name__)

#: Named attribute lists a config may give as ``attributes.names``.
ATTRIBUTE_SETS = {"explanation": EXPLANATION_ATTRIBUTES, "peta35": EVALUATION_ATTRIBUTES}
#: Fewer held-out images than this cannot calibrate the attributes: the head is left uncalibrated.
MIN_CALIBRATION_IMAGES = 50


def attribute_names(names: str | Sequence[str], vocabulary: Sequence[str] = VOCABULARY,
                    where: str = "attributes.names") -> list[str]:
    """The attribute list of a config (a set name or a list), checked against the data's vocabulary."""
    if isinstance(names, str):
        if names not in ATTRIBUTE_SETS:
            raise ValueError(f"{where}: unknown attribute set {names!r}; give one of {sorted(ATTRIBUTE_SETS)} "
                             f"or a list of attribute names")
        return list(ATTRIBUTE_SETS[names])
    names = [str(n) for n in names]
    if not names:
        raise ValueError(f"{where}: the attribute list is empty")
    missing = [n for n in names if n not in set(vocabulary)]
    if missing:
        raise ValueError(f"{where}: attribute(s) {', '.join(missing)} are not in the data's attribute vocabulary "
                         f"({len(vocabulary)} names, e.g. {', '.join(list(vocabulary)[:3])})")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{where}: attribute(s) {', '.join(twice)} listed twice")
    return names


class AttributeLayer(nn.Module):
    """x = sigmoid(W^T f / |f|): N x A weights, no bias (``AttributeHead``'s form, trained in the network)."""

    def __init__(self, embedding_dim: int, num_attributes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(embedding_dim, num_attributes))  # as fit_attribute_head starts

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return l2_normalise(embedding, axis=1) @ self.weight


def split_attribute_only(records: Sequence[ImageRecord]) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """(training, calibration) attribute-only records with labels, by the stable hold-out of ``data.splits``
    (the same images ``xreid attributes fit`` calibrates on)."""
    labelled = [r for r in records if r.attributes is not None]
    return ([r for r in labelled if not held_out(r.path, CALIBRATION_SHARE)],
            [r for r in labelled if held_out(r.path, CALIBRATION_SHARE)])


class AttributeTargets:
    """The attribute labels the loss reads: those of the identity set's images and of the attribute-only
    crops in training, the positive ratio over both, and the attributes never positive there."""

    def __init__(self, names: Sequence[str], train_records: Sequence[ImageRecord],
                 attribute_only_records: Sequence[ImageRecord]):
        self.names = list(names)
        self.train_labels, self.train_labelled = label_matrix(train_records, self.names)
        self.ao_labels, _ = label_matrix(attribute_only_records, self.names)
        every = np.concatenate([self.train_labels[self.train_labelled], self.ao_labels])
        if len(every) == 0:
            raise ValueError("multi-task training: no training image has attribute labels")
        self.positive_ratio = every.mean(0).astype(np.float64)
        self.labelled_images = len(every)
        self.never_positive = [n for n, r in zip(self.names, self.positive_ratio) if r == 0]


def attribute_only_indices(count: int, size: int, seed: int, epoch: int, batch: int) -> np.ndarray:
    """Which attribute-only crops join ``batch`` of ``epoch``: ``size`` drawn without replacement (all when
    fewer), seeded by (seed, epoch, batch) so a resumed run draws the same ones."""
    rng = np.random.default_rng((seed, epoch, batch, 7))
    return np.sort(rng.choice(count, min(size, count), replace=False))


def finish_head(model_path: Path, weights: np.ndarray, targets: AttributeTargets, root: Path,
                calibration_records: Sequence[ImageRecord], source: str, out: Path, balance: str = "inverse",
                progress: bool = True):
    """Write the trained layer as the model's attribute head (``out``, an ``AttributeHead`` .npz tied to
    the model file's fingerprint), calibrated and scored per attribute on held-out images as
    ``xreid attributes fit`` does (docs/METHODS.md#attribute-calibration); returns the head."""
    from xreid.evaluation.attributes import attribute_report, labelled_embeddings
    from xreid.explain.attribute_head import AttributeHead
    from xreid.evaluation.attributes import reliability
    from xreid.explain.calibration import fit_platt
    from xreid.models.loading import load_embedder

    embedder = load_embedder(model_path, backend="torch")
    meta = {"model": model_path.stem, "embedder": embedder.name, "model_fingerprint": embedder.fingerprint,
            "source": source, "trained": "jointly with the network (multi-task)",
            "train_images": targets.labelled_images, "never_positive_in_training": targets.never_positive,
            "balance": balance}
    head = AttributeHead(targets.names, np.asarray(weights, np.float64), targets.positive_ratio, meta)
    records = [r for r in calibration_records if r.attributes is not None]
    if len(records) >= MIN_CALIBRATION_IMAGES:
        feats, labels, _ = labelled_embeddings(embedder, root, records, targets.names, progress=progress)
        logits = head.logits(feats)
        head.calibration = fit_platt(logits, labels)
        head.reliability = reliability(logits, labels)
        scored = [n for n in targets.names if n not in set(targets.never_positive)]
        head.meta["calibration_images"] = int(len(feats))
        head.meta["held_out_mA"] = attribute_report(head.predict(feats), labels, targets.names, scored)["mA"]
    else:
        log.warning("only %d held-out labelled images: the jointly trained head is left uncalibrated",
                    len(records))
        head.meta["calibration_images"] = 0
    head.save(out)
    return head
