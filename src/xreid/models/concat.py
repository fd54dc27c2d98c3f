"""Several re-id models as one: ``--model a.xml,b.xml`` (``xreid.models.loading.load_embedder``
parses the comma). Each part embeds the crop with its own preprocessing; the embedding is the
concatenation of the parts' L2-normalised embeddings, so each model counts equally in the cosine
distance (docs/METHODS.md#several-models-as-one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from xreid.data.transforms import resize_rgb
from xreid.distance import l2_normalise
from xreid.models.embedders import Embedder, Preprocess


def concatenate_embeddings(parts: Sequence[np.ndarray]) -> np.ndarray:
    """[N x D_1, ..., N x D_k] -> N x (D_1 + ... + D_k): each part L2-normalised, then side by side."""
    if not parts:
        raise ValueError("no embeddings to concatenate")
    if len({len(p) for p in parts}) != 1:
        raise ValueError(f"cannot concatenate embeddings of {[len(p) for p in parts]} images")
    return np.concatenate([l2_normalise(np.asarray(p, np.float32)) for p in parts], axis=1).astype(np.float32)


class ConcatEmbedder(Embedder):
    """The concatenation of ``parts`` (each an ``Embedder``). Its identity lists the parts'
    identities (``parts``), with a fingerprint of theirs in order, so an index, fusion or embeddings
    file made by another model set-up (another part, order, preprocessing or flip) is refused.

    ``preprocess`` only says at which size crops are loaded (the largest part's input); a part with a
    smaller input resizes the loaded crop again, and each part applies its own channel order and
    scaling."""

    def __init__(self, parts: Sequence[Embedder]):
        if len(parts) < 2:
            raise ValueError("a concatenation needs at least two models")
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)
        height, width = max((p.preprocess.size for p in self.parts), key=lambda s: s[0] * s[1])
        self.preprocess = Preprocess(height=height, width=width)
        self.backend = "+".join(p.backend for p in self.parts)
        precisions = {p.precision for p in self.parts} - {None}
        self.precision = precisions.pop() if len(precisions) == 1 else None
        fingerprints = [p.fingerprint for p in self.parts]
        self.fingerprint = None if None in fingerprints else \
            hashlib.sha256("+".join(fingerprints).encode()).hexdigest()[:16]

    @property
    def flip_average(self) -> bool:
        return all(p.flip_average for p in self.parts)

    @flip_average.setter
    def flip_average(self, value: bool) -> None:
        for p in self.parts:
            p.flip_average = value

    def identity(self) -> dict:
        parts = [p.identity() for p in self.parts]
        return {"model": self.name, "fingerprint": self.fingerprint, "backend": self.backend,
                "preprocess": [p["preprocess"] for p in parts], "flip": self.flip_average,
                "precision": self.precision, "parts": parts}

    def run(self, inputs: np.ndarray) -> np.ndarray:
        raise TypeError(f"{self.name}: a concatenation has no single input tensor (each part has its own "
                        f"preprocessing); embed images with embed_arrays or embed_paths")

    def embed_arrays(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Embed H x W x 3 uint8 RGB crops (at ``preprocess.size``) with every part, then concatenate."""
        images = list(images)
        return concatenate_embeddings([part.embed_arrays([resize_rgb(im, part.preprocess.size) for im in images])
                                       for part in self.parts])
