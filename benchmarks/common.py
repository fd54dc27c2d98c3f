"""What the benchmarks share: adapters only benchmarks use (kept out of the library)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xreid.data.dataset import load_resized
from xreid.data.records import ImageRecord
from xreid.models.embedders import load_embedder

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
