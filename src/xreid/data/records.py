"""The one record type every loader produces."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageRecord:
    """One person crop.

    path is relative to the dataset root it came from; pid and cam are strings namespaced by the
    source (``"VIPeR/001"``) so identities from different subsets never collide. ``pid`` is None for
    attribute-only images; ``attributes`` holds the names of the attributes labelled present, or is
    None when the image has no attribute label.
    """

    path: str
    pid: str | None = None
    cam: str | None = None
    attributes: frozenset[str] | None = field(default=None, compare=False)
