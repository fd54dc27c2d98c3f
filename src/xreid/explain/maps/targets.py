"""What a map explains, apart from how it is computed: a target turns embeddings into one score per
image, in numpy (occlusion, the deletion test) and in torch (gradient maps), by the same formula.

``PairSimilarity`` is the pair's cosine similarity (``xreid.distance.cosine_similarity``), of the
whole embedding or of one part of it: a branch of a descriptor made of several branch vectors
(``branches``; an AANet's global, parts, regions, AAM).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from xreid.distance import cosine_similarity


@dataclass(frozen=True)
class PairSimilarity:
    """Cosine similarity of each embedding with ``other`` (D,), on ``part`` of the dims (default all)."""

    other: np.ndarray
    part: slice = field(default_factory=lambda: slice(None))
    name: str = "pair similarity"

    def scores(self, embeddings):
        """N x D embeddings (numpy or torch) -> N scores, in the same library."""
        other = self.other[None, self.part]
        if isinstance(embeddings, torch.Tensor):
            other = torch.as_tensor(other, dtype=embeddings.dtype)
        return cosine_similarity(embeddings[:, self.part], other)[:, 0]


def branches(model) -> dict[str, slice]:
    """The branches of ``model``'s embedding (name -> slice): the model's own ``descriptor_branches()``
    when it has several, else the whole embedding as one branch."""
    own = getattr(model, "descriptor_branches", None)
    return dict(own()) if callable(own) else {"all": slice(None)}


def branch_targets(model, other: np.ndarray) -> dict[str, PairSimilarity]:
    """One ``PairSimilarity`` per branch of ``model``'s embedding, against ``other``."""
    return {name: PairSimilarity(np.asarray(other), part, f"pair similarity, {name} branch")
            for name, part in branches(model).items()}
