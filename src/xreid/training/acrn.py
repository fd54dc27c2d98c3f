"""ACRN training (docs/METHODS.md#acrn-training): what the training loop needs besides
its losses (``losses.complementary_triplet_loss``, ``losses.attribute_weight_triplet_loss``).

``AttributeTable``: an attribute classifier's probabilities of the training images, computed once
before training (``workflows.acrn.prepare_acrn``: out of fold, so no image's probabilities come
from a classifier that saw its person) and read per batch. ``AttributeWeights``: the weight layer,
one non-negative weight per attribute, not connected to the image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xreid.io import atomic_write

#: The table beside the run's checkpoint (``run_dir/TABLE_FILE``).
TABLE_FILE = "acrn_attributes.npz"


class AttributeTable:
    """Attribute probabilities (N x A) of images keyed by their path, with the attribute names and a
    description of the classifier that produced them."""

    def __init__(self, paths: Sequence[str], names: Sequence[str], probabilities: np.ndarray, meta: dict | None = None):
        self.paths, self.names = [str(p) for p in paths], [str(n) for n in names]
        self.probabilities = np.asarray(probabilities, np.float32)
        self.meta = dict(meta or {})
        if self.probabilities.shape != (len(self.paths), len(self.names)):
            raise ValueError(f"attribute table: {self.probabilities.shape} probabilities for {len(self.paths)} "
                             f"images x {len(self.names)} attributes")
        if not np.all(np.isfinite(self.probabilities)):
            raise ValueError("attribute table: probabilities must be finite")

    def rows(self, paths: Sequence[str], where: str = "attribute table") -> np.ndarray:
        """The probabilities of ``paths`` in that order; every path must be in the table."""
        index = {p: i for i, p in enumerate(self.paths)}
        missing = [p for p in paths if p not in index]
        if missing:
            raise ValueError(f"{where}: no attribute probabilities for {len(missing)} training image(s), e.g. "
                             f"{missing[0]}; delete the table to recompute it")
        return self.probabilities[[index[p] for p in paths]]

    def save(self, path: str | Path) -> None:
        atomic_write(path, lambda fh: np.savez(fh, paths=np.array(self.paths), names=np.array(self.names),
                                               probabilities=self.probabilities,
                                               meta=np.array(json.dumps(self.meta))))

    @classmethod
    def load(cls, path: str | Path) -> "AttributeTable":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ACRN attribute table not found")
        try:
            with np.load(path, allow_pickle=False) as d:
                return cls(list(d["paths"]), list(d["names"]), d["probabilities"], json.loads(str(d["meta"])))
        except (KeyError, ValueError, OSError) as exc:
            raise ValueError(f"{path}: not an ACRN attribute table ({exc})") from None


class AttributeWeights(nn.Module):
    """ACRN's weight layer: one weight per attribute, element-wise, starting at zero and kept
    non-negative (``project`` after each optimiser step)."""

    def __init__(self, num_attributes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_attributes))

    @torch.no_grad()
    def project(self) -> None:
        self.weight.clamp_(min=0.0)
