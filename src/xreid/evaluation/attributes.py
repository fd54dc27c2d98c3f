"""Attribute recognition quality (label-based mA, per-attribute TPR / TNR / accuracy), and the
data plumbing to fit an attribute head on a protocol: embeddings + labels of its images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xreid.data.labels import label_matrix
from xreid.data.records import ImageRecord
from xreid.evaluation.metrics import attribute_mean_accuracy, average_precision
from xreid.models.embedders import Embedder


def labelled_embeddings(embedder: Embedder, root: Path, records: Sequence[ImageRecord], names: Sequence[str],
                        progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[ImageRecord]]:
    """Embeddings and M x A labels of the records that carry attribute labels and load."""
    records = [r for r in records if r.attributes is not None]
    res = embedder.embed_paths([root / r.path for r in records], progress=progress, cameras=[r.cam for r in records])
    kept = [records[i] for i in res.kept]
    labels, _ = label_matrix(kept, names)
    return res.features, labels, kept


def attribute_report(probs: np.ndarray, labels: np.ndarray, names: Sequence[str],
                     evaluate_on: Sequence[str] | None = None) -> dict:
    """mA over ``evaluate_on`` (default: all names) and per-attribute rates, thresholding at 0.5."""
    names = list(names)
    cols = [names.index(n) for n in (evaluate_on or names) if n in names]
    pred = probs[:, cols] >= 0.5
    truth = labels[:, cols]
    ma, tpr, tnr = attribute_mean_accuracy(pred, truth)
    acc = (pred == truth).mean(0)
    per = {names[c]: {"TPR": _num(tpr[i]), "TNR": _num(tnr[i]), "accuracy": float(acc[i]),
                      "mA": _num((tpr[i] + tnr[i]) / 2), "positives": int(truth[:, i].sum())}
           for i, c in enumerate(cols)}
    return {"mA": 100 * ma, "images": int(len(labels)), "attributes": len(cols), "per_attribute": per}


def _num(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def reliability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Balanced accuracy (TPR + TNR) / 2 of the decisions logit > 0, per attribute; NaN where the
    images hold only one class (reliability cannot be measured)."""
    _, tpr, tnr = attribute_mean_accuracy(np.asarray(logits) > 0, labels)
    return (tpr + tnr) / 2


#: How ``head_shares`` weighs the heads of several models in ``combine_heads``.
COMBINE_RULES = ("mean", "best")


def head_shares(logits: Sequence[np.ndarray], labels: np.ndarray, rule: str) -> np.ndarray:
    """K x A: how much each of K heads counts for each attribute, from their logits (K arrays, M x A)
    on held-out images with ``labels`` (M x A bool). 'mean': 1 / K each; 'best': all to the head
    whose logits rank the attribute's positives best (average precision; the first head where no
    image or every image is positive)."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"head combination {rule!r}: expected one of {', '.join(COMBINE_RULES)}")
    k, a = len(logits), np.asarray(labels).shape[1]
    if rule == "mean":
        return np.full((k, a), 1.0 / k)
    y = np.asarray(labels, bool)
    ap = np.zeros((k, a))
    for i, z in enumerate(logits):
        for j in range(a):
            if y[:, j].any() and not y[:, j].all():
                ap[i, j] = average_precision(y[np.argsort(-np.asarray(z)[:, j], kind="stable"), j])
    shares = np.zeros((k, a))
    shares[np.argmax(ap, axis=0), np.arange(a)] = 1.0
    return shares
