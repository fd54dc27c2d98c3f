"""Decoded images kept by a byte budget (least recently used first out).

An upload is kept as its file and its embedding; its decoded pixels (3 bytes a pixel: a 35 KB PNG of
6000 x 6000 decodes to 108 MB) are needed again only to draw maps, a report or the image itself, and
are decoded again when the cache no longer holds them. Whatever is uploaded, the cache never holds
more than ``budget`` bytes; an image larger than the budget is not kept at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class ImageCache:
    def __init__(self, budget: int):
        self.budget = int(budget)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, image: np.ndarray) -> None:
        if image.nbytes > self.budget:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = image
            self._bytes += image.nbytes
            while self._bytes > self.budget:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def get(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The image under ``key``, from the cache or ``load()`` (then kept if it fits)."""
        with self._lock:
            image = self._items.get(key)
            if image is not None:
                self._items.move_to_end(key)
                return image
        image = load()
        self.put(key, image)
        return image

