"""Analyses of the embedding through the attribute layer's weights (docs/METHODS.md#embedding-analysis):
embedding dims per attribute, and images ranked by single dims. Returns plain data;
``xreid.rendering.analysis`` draws it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xreid.distance import l2_normalise
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.formulas import dims_per_attribute, extreme_attributes


@dataclass
class DimsTableRow:
    attribute: str
    dims: int
    positive_ratio: float


@dataclass
class DimRankList:
    dim: int
    top_attributes: list[tuple[str, float]]  # 3 highest weights
    bottom_attributes: list[tuple[str, float]]  # 3 lowest weights
    keys: list[str]  # images sorted by the dim's value, highest first
    values: list[float]


def dims_table(head: AttributeHead) -> list[DimsTableRow]:
    """Embedding dims whose largest weight goes to each attribute, beside its positive ratio."""
    counts = dims_per_attribute(head.weights)
    rows = [DimsTableRow(n, int(c), float(p)) for n, c, p in zip(head.names, counts, head.positive_ratio)]
    return sorted(rows, key=lambda r: -r.dims)


def default_dims(head: AttributeHead, count: int = 6) -> list[int]:
    """Dims most tied to one attribute: the largest max-weight relative to the dim's weight norm."""
    w = head.weights
    strength = l2_normalise(w).max(axis=1)
    return [int(d) for d in np.argsort(strength)[::-1][:count]]


def dim_rank_lists(head: AttributeHead, features: np.ndarray, keys: list[str], dims: list[int],
                   length: int = 10) -> list[DimRankList]:
    f = l2_normalise(np.asarray(features, np.float64))
    out = []
    for d in dims:
        if not 0 <= d < head.embedding_dim:
            raise ValueError(f"dim {d} out of range (embedding has {head.embedding_dim} dims)")
        top, bottom = extreme_attributes(head.weights, d)
        order = np.argsort(f[:, d])[::-1][:length]
        out.append(DimRankList(d, [(head.names[a], float(head.weights[d, a])) for a in top],
                               [(head.names[a], float(head.weights[d, a])) for a in bottom],
                               [keys[i] for i in order], [float(f[i, d]) for i in order]))
    return out
