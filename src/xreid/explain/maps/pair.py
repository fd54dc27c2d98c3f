"""Pair maps (docs/METHODS.md#visual-maps): Grad-CAM of the k embedding dims that contribute most to the
similarity of a query and a result, one map per dim per image. A dim whose two values are both
negative contributes too; its map shows what pushes it further negative (signed Grad-CAM)."""

from __future__ import annotations

import numpy as np
import torch

from xreid.distance import l2_normalise
from xreid.explain.maps.base import (
    QUERY,
    SaliencyMap,
    evidence_signs,
    gradcam,
    last_feature_maps,
)


def top_contributing_dims(f_q: np.ndarray, f_g: np.ndarray, k: int) -> np.ndarray:
    """Dims with the largest terms of the cosine similarity: f_q,n * f_g,n on normalised embeddings."""
    return np.argsort(l2_normalise(f_q) * l2_normalise(f_g))[::-1][:k]


def pair_maps(model: torch.nn.Module, query: torch.Tensor, gallery: torch.Tensor, k: int = 5,
              gallery_keys: list[str] | None = None) -> tuple[list[np.ndarray], list[list[SaliencyMap]], list[list[SaliencyMap]]]:
    """For each gallery image: the top-k dims and their Grad-CAM maps on the query and on the gallery image.

    ``query`` is 1 x 3 x H x W, ``gallery`` G x 3 x H x W (model input, RGB in [0, 1]). One batched
    backward pass covers all G x k x 2 maps; each image goes through the backbone once.
    """
    feature_maps, emb = last_feature_maps(model, torch.cat([query, gallery]))
    dims = [top_contributing_dims(emb[0], emb[1 + i], k) for i in range(len(gallery))]
    rows, targets, values = [], [], []
    for i, ds in enumerate(dims):
        for d in ds:
            rows += [0, 1 + i]
            targets += [int(d), int(d)]
            values += [emb[0, d], emb[1 + i, d]]
    maps = gradcam(model, feature_maps, lambda e: e, targets, query.shape[-2:], evidence_signs(values), rows=rows)
    keys = gallery_keys or [f"gallery {i}" for i in range(len(gallery))]
    q_maps, g_maps, j = [], [], 0
    for i, ds in enumerate(dims):
        q_row, g_row = [], []
        for d in ds:
            q_row.append(SaliencyMap(maps[j], "pair", f"dim {d}", QUERY, pair=keys[i]))
            g_row.append(SaliencyMap(maps[j + 1], "pair", f"dim {d}", keys[i]))
            j += 2
        q_maps.append(q_row)
        g_maps.append(g_row)
    return dims, q_maps, g_maps


def summed_pair_maps(maps: list[SaliencyMap]) -> list[SaliencyMap]:
    """One map per image of each pair: the sum of its per-dimension pair maps ("regions that make
    these two look alike"), what a reader sees first; the per-dimension maps stay for the details."""
    sums: dict[tuple[str, str | None], SaliencyMap] = {}
    for m in maps:
        key = (m.image, m.pair)
        if key in sums:
            sums[key].values = sums[key].values + m.values
        else:
            sums[key] = SaliencyMap(m.values.copy(), "pair-sum", "regions that make these two look alike",
                                    m.image, m.pair)
    return list(sums.values())
