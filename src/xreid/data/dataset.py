"""Image sets for training and embedding, with bad files skipped and reported, not fatal."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from xreid.data.images import ImageError, load_image
from xreid.data.records import ImageRecord
from xreid.data.transforms import resize_rgb

log = logging.getLogger(__name__)


def load_resized(paths: Sequence[Path], size: tuple[int, int], workers: int = 2
                 ) -> tuple[list[np.ndarray | None], list[ImageError]]:
    """Decode and resize images in parallel; a bad file gives None in its slot and an ImageError."""
    errors: list[ImageError] = []

    def one(p: Path) -> np.ndarray | None:
        try:
            return resize_rgb(load_image(p), size)
        except ImageError as exc:
            errors.append(exc)
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        images = list(pool.map(one, paths))
    return images, errors


def decode_all(paths: Sequence[Path], size: tuple[int, int], progress: bool = True, desc: str = "decoding images"
               ) -> tuple[np.ndarray, list[int], list[ImageError]]:
    """(images N x H x W x 3 uint8 of the files that load, their positions in ``paths``, the errors),
    decoded in chunks with a progress bar; bad files are logged and skipped."""
    from tqdm import tqdm

    images: list[np.ndarray | None] = []
    skipped: list[ImageError] = []
    chunk = 512
    for start in tqdm(range(0, len(paths), chunk), desc=desc, unit="chunk", disable=not progress):
        imgs, errs = load_resized(paths[start:start + chunk], size)
        images += imgs
        skipped += errs
    keep = [i for i, im in enumerate(images) if im is not None]
    for err in skipped:
        log.warning("skipped %s", err)
    stacked = np.stack([images[i] for i in keep]) if keep else np.zeros((0, *size, 3), np.uint8)
    return stacked, keep, skipped


class InMemoryReIDSet:
    """Training images decoded once, resized to the input size and kept as uint8 in memory.

    PETA-ReID's 11k training crops take ~0.4 GB at 160 x 80; decoding once makes every epoch on a
    2-core CPU spend its time in the network, not in JPEG decoding.
    """

    def __init__(self, records: Sequence[ImageRecord], root: Path, size: tuple[int, int], progress: bool = True):
        records = [r for r in records if r.pid is not None]
        self.images, keep, self.skipped = decode_all([root / r.path for r in records], size, progress,
                                                     "decoding train images")
        self.records = [records[i] for i in keep]
        pids = sorted({r.pid for r in self.records})
        self.pid_to_label = {p: i for i, p in enumerate(pids)}
        self.labels = np.array([self.pid_to_label[r.pid] for r in self.records], dtype=np.int64)

    @property
    def num_classes(self) -> int:
        return len(self.pid_to_label)

    def __len__(self) -> int:
        return len(self.records)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(indices)
        return to_tensor(self.images[idx]), torch.from_numpy(self.labels[idx])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 images as an N x 3 x H x W float tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


class IdentitySampler:
    """P x K batches: P identities, K images each (sampled with replacement when an id has fewer).

    One epoch visits every identity about ``len(dataset) / (P*K)`` batches' worth; deterministic for
    a given ``seed`` and epoch, so a resumed run replays the same batches.
    """

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int = 0):
        self.p, self.k, self.seed = p, k, seed
        groups: dict[int, list[int]] = defaultdict(list)
        for i, lab in enumerate(labels):
            groups[int(lab)].append(i)
        self.groups = dict(groups)
        if len(self.groups) < p:
            raise ValueError(f"need at least P={p} identities for P x K batches, got {len(self.groups)}")
        self.num_batches = max(1, len(labels) // (p * k))

    def __len__(self) -> int:
        return self.num_batches

    def epoch(self, epoch: int) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, epoch))
        ids = np.array(sorted(self.groups))
        for _ in range(self.num_batches):
            batch: list[int] = []
            for pid in rng.choice(ids, self.p, replace=False):
                members = self.groups[int(pid)]
                batch += list(rng.choice(members, self.k, replace=len(members) < self.k))
            yield batch
