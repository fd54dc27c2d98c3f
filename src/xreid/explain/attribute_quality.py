"""Attribute recognition quality (label-based mA, per-attribute TPR / TNR / accuracy), and the
data plumbing to fit an attribute head on a protocol: embeddings + labels of its images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xreid.data.dataset import load_resized
from xreid.data.records import ImageRecord
from xreid.evaluation.metrics import attribute_mean_accuracy
from xreid.explain.attribute_head import label_matrix
from xreid.models.embedders import Embedder, load_embedder


def labelled_embeddings(embedder: Embedder, root: Path, records: Sequence[ImageRecord], names: Sequence[str],
                        progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[ImageRecord]]:
    """Embeddings and M x A labels of the records that carry attribute labels and load."""
    records = [r for r in records if r.attributes is not None]
    res = embedder.embed_paths([root / r.path for r in records], progress=progress)
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


#: Open Model Zoo person-attributes-recognition-crossroad-0230 outputs mapped to PETA names;
#: a leading '!' means the output is the attribute's negation (long sleeves = not short sleeves).
OMZ_0230_TO_PETA = {
    "is_male": "personalMale", "has_bag": "carryingMessengerBag", "has_backpack": "carryingBackpack",
    "has_hat": "accessoryHat", "has_longsleeves": "!upperBodyShortSleeve", "has_longpants": "!lowerBodyShorts",
    "has_longhair": "hairLong", "has_coat_jacket": "upperBodyJacket",
}


def omz_0230_probabilities(model_xml: str | Path, root: Path, records: Sequence[ImageRecord]) -> tuple[np.ndarray, list[str], list[int]]:
    """PETA-named attribute probabilities from the OMZ 0230 attribute model (its 8 binary outputs)."""
    emb = load_embedder(model_xml)  # OpenVINO wrapper: first output = the 8 probabilities
    images, _ = load_resized([root / r.path for r in records], emb.preprocess.size)
    kept = [i for i, im in enumerate(images) if im is not None]
    out = np.concatenate([emb.embed_arrays([images[i] for i in kept[s:s + 64]]) for s in range(0, len(kept), 64)])
    names, cols = [], []
    for j, (_, peta) in enumerate(OMZ_0230_TO_PETA.items()):
        names.append(peta.lstrip("!"))
        cols.append(1 - out[:, j] if peta.startswith("!") else out[:, j])
    return np.stack(cols, axis=1), names, kept
