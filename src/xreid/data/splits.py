"""Stable, seedless hold-outs: which images (or identities) are kept out of a fit to calibrate on."""

from __future__ import annotations

import hashlib

#: Share of the attribute-only images held out of every fit (attribute heads, jointly trained attribute
#: layers, fusion) to calibrate on (chosen by a stable hash of the image path).
CALIBRATION_SHARE = 0.3


def held_out(key: str, share: float) -> bool:
    """A stable, seedless split: ``key`` (a path or a person id) falls in the held-out share or not."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share
