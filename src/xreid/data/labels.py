"""Attribute label matrices: the ground truth that attribute heads are fitted and scored on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xreid.data.records import ImageRecord


def label_matrix(records: Sequence[ImageRecord], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(labels: M x A bool, labelled: M bool) for records; records with no attribute labels are unlabelled."""
    index = {n: i for i, n in enumerate(names)}
    labels = np.zeros((len(records), len(names)), bool)
    labelled = np.zeros(len(records), bool)
    for r, rec in enumerate(records):
        if rec.attributes is None:
            continue
        labelled[r] = True
        for n in rec.attributes:
            if n in index:
                labels[r, index[n]] = True
    return labels, labelled
