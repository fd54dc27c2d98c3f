"""The ``Gallery`` interface: what every gallery a query is searched in offers, whatever holds it.

A gallery is a set of rows (person crops) with integer ids 0..N-1. For each row it knows a key (the
image's path relative to the data root), an embedding, calibrated attribute probabilities, metadata
(person id, camera, time, other string fields) and where the image lies. ``search`` ranks rows for a
query embedding and returns ``Hits``; everything else is looked up by id::

    hits = gallery.search(query_vector, k=10, where=Filter(attributes={"carryingBackpack": True}))
    gallery.vectors_of(hits.ids), gallery.probabilities(hits.ids), gallery.metadata(int(hits.ids[0]))
    gallery.image(int(hits.ids[0]))      # decoded once, then served from a bounded cache

Explanations (``xreid.explain.ranking.explain_ranking``) take the hits and the gallery and explain
them; they never rank again and never recompute the probabilities the gallery holds.

Backends: ``MemoryGallery`` (``xreid.index.memory``: a folder, a CSV list, an ``.npz`` of
embeddings or a protocol's test set, embedded in memory) and ``GalleryIndex``
(``xreid.index.gallery``: the persistent index of ``xreid index``). A new backend is one file with
a subclass implementing the abstract methods below, plus its line in ``BACKENDS``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xreid.index.filters import Filter

#: decoded images a gallery keeps (full size, H x W x 3 uint8): enough for a top-k explanation and its report
IMAGE_CACHE_SIZE = 64


@dataclass
class Hits:
    """Ranked rows of one search, best first.

    ``ids``: row ids in the gallery; ``keys``: their keys; ``distances``: the distance they were
    ranked by (1 - cos of the L2-normalised embeddings, or a fused distance); ``ranks``: the rank
    shown for each hit (1-based); ``original_ranks``: its rank by distance alone, before an attribute
    filter in mode "rerank" moved it (the same as ``ranks`` otherwise); ``violations``: how many
    attribute conditions each hit breaks (0 unless the filter's mode is "rerank");
    ``model_distances``: with a fused ranking, the model's own 1 - cos of each hit (else None);
    ``method``: 'exact' or 'ann'; ``candidates``: rows the filter kept; ``size``: rows in the gallery.
    """

    ids: np.ndarray
    keys: list[str]
    distances: np.ndarray
    ranks: np.ndarray | None = None
    original_ranks: np.ndarray | None = None
    violations: np.ndarray | None = None
    model_distances: np.ndarray | None = None
    method: str = "exact"
    candidates: int = 0
    size: int = 0

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.ids = np.asarray(self.ids, np.int64).reshape(n)
        self.distances = np.asarray(self.distances).reshape(n)
        self.ranks = np.arange(1, n + 1) if self.ranks is None else np.asarray(self.ranks, np.int64)
        self.original_ranks = self.ranks.copy() if self.original_ranks is None else np.asarray(self.original_ranks,
                                                                                               np.int64)
        self.violations = np.zeros(n, int) if self.violations is None else np.asarray(self.violations, int)
        if len(self.keys) != n:
            raise ValueError(f"{n} hits but {len(self.keys)} keys")

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: Sequence[int] | np.ndarray) -> "Hits":
        """The hits at ``positions`` (their ranks kept: a subset of a search shows the search's ranks)."""
        p = np.asarray(positions, np.int64).reshape(-1)
        return Hits(self.ids[p], [self.keys[i] for i in p], self.distances[p], self.ranks[p], self.original_ranks[p],
                    self.violations[p], None if self.model_distances is None else self.model_distances[p],
                    self.method, self.candidates, self.size)

    def renumbered(self) -> "Hits":
        """The same hits ranked 1..n in their order (after rows were left out of a search)."""
        out = self.take(np.arange(len(self)))
        out.ranks = np.arange(1, len(self) + 1)
        out.original_ranks = out.ranks.copy()
        return out


class ImageCache:
    """A bounded, thread-safe least-recently-used cache of decoded images by row id."""

    def __init__(self, size: int = IMAGE_CACHE_SIZE):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, i: int, load: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            if i in self._items:
                self._items.move_to_end(i)
                return self._items[i]
        image = load()
        with self._lock:
            self._items[i] = image
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return image


class Gallery(ABC):
    """What a gallery offers a query (see the module docstring). Subclasses implement the abstract
    methods; ``image`` and ``key`` come for free from ``image_path`` and ``metadata``."""

    #: attribute names of ``probabilities``' columns
    attribute_names: list[str]

    def __init__(self) -> None:
        self._images = ImageCache()

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def search(self, query: np.ndarray, k: int = 10, where: Filter | None = None) -> Hits:
        """The ``k`` rows nearest ``query`` (an embedding of the gallery's model) among those ``where``
        keeps, nearest first; ties keep id order."""

    @abstractmethod
    def vectors_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Embeddings of ``ids`` (n x D; as the model gave them or L2-normalised: whoever reads them
        normalises)."""

    @abstractmethod
    def probabilities(self, ids: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """Calibrated attribute probabilities of ``ids`` (n x A; the raw ones where the attribute head
        has no calibration), or None when the gallery holds none."""

    @abstractmethod
    def metadata(self, i: int) -> dict:
        """Row ``i``'s metadata: ``id``, ``path`` (its key), ``pid`` and ``camera`` (None when unknown),
        ``time`` (ISO 8601 or None) and any other string field."""

    @abstractmethod
    def image_path(self, i: int) -> Path:
        """Where row ``i``'s image file lies."""

    def view_paths(self, i: int) -> list[Path]:
        """The pictures row ``i`` stands for, best first: its image, or a sighting's best crops
        (``xreid.index.sightings``); explanations read them all (docs/METHODS.md#footage-and-sightings)."""
        return [self.image_path(i)]

    def key(self, i: int) -> str:
        return str(self.metadata(i)["path"])

    def keys_of(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return [self.key(int(i)) for i in ids]

    def thumbnail(self, i: int) -> bytes | None:
        """Row ``i``'s JPEG thumbnail, None where the gallery keeps none."""
        return None

    def image(self, i: int) -> np.ndarray:
        """Row ``i``'s image (H x W x 3 uint8 RGB), decoded once and then served from a bounded cache;
        ``xreid.data.images.ImageError`` when it cannot be read."""
        from xreid.data import images

        return self._images.get(int(i), lambda: images.load_image(self.image_path(int(i))))


def filtered_order(order: np.ndarray, keep: np.ndarray | None, violations: np.ndarray | None,
                   mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``order`` (row ids by distance) after a filter: rows outside ``keep`` dropped; rows breaking
    attribute conditions (``violations`` per row) dropped in mode "keep", sunk by how many they
    break in mode "rerank" (a stable sort). Returns (order, violations of each row in it)."""
    if keep is not None:
        order = order[keep[order]]
    if violations is None:
        return order, np.zeros(len(order), int)
    viol = violations[order]
    if mode == "keep":
        return order[viol == 0], viol[viol == 0]
    resort = np.argsort(viol, kind="stable")
    return order[resort], viol[resort]


#: the gallery backends: name -> "module:class" (imported when asked for)
BACKENDS: dict[str, str] = {
    "memory": "xreid.index.memory:MemoryGallery",
    "index": "xreid.index.gallery:GalleryIndex",
    "sharded": "xreid.index.sharded:ShardedGallery",
    "ray-sharded": "xreid.index.ray_sharded:RayShardedGallery",
}


def backend(name: str) -> type[Gallery]:
    """The ``Gallery`` subclass registered as ``name`` in ``BACKENDS``."""
    import importlib

    if name not in BACKENDS:
        raise ValueError(f"unknown gallery backend {name!r}; known: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["BACKENDS", "Filter", "Gallery", "Hits", "ImageCache", "backend", "filtered_order"]
