"""What xreid's resumable training loops share besides learning (``xreid train``'s epochs and
``xreid adapt``'s rounds, each a sequence of batches): the run's start (seed, subnormals flushed),
refusing to start over a run unless resuming and to resume with other options, one optimiser step
with a finite-loss check, per-loss means for the progress bar and the history, and checkpoints:
every few minutes, after each epoch or round, at the ``max_batches`` stop and on an interrupt, so a
run continues exactly where it stopped. Writing a checkpoint (atomically) is the caller's ``save``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch


def start_run(seed: int) -> None:
    """Seed torch and flush subnormal numbers to zero. Weight decay drives many weights and gradients
    into the subnormal range as training goes on, and CPUs handle those in microcode, so late steps
    slow down (benchmarks/bench_train_step.py --trained); flushing them costs no accuracy (they are
    below 1.2e-38). Call it before any parallel op, so worker threads inherit it."""
    torch.manual_seed(seed)
    torch.set_flush_denormal(True)


def refuse_fresh_start(path: Path, resume: bool, what: str, remedy: str) -> None:
    """A FileExistsError when ``path`` (a run's checkpoint) exists and the call does not resume it:
    ``"{path}: {what} here; pass --resume to continue it or {remedy}"``."""
    if path.exists() and not resume:
        raise FileExistsError(f"{path}: {what} here; pass --resume to continue it or {remedy}")


def refuse_changed_resume(path: Path, changed: list[str], what: str, remedy: str) -> None:
    """A ValueError when a resume's options differ from the run's (``changed``: their names)."""
    if changed:
        raise ValueError(f"{path}: {what} ({', '.join(changed)}); {remedy}")


def optimiser_step(optimizer: torch.optim.Optimizer, losses: Mapping[str, torch.Tensor], where: str) -> None:
    """Back-propagate the sum of ``losses`` and step; a FloatingPointError naming ``where`` (e.g.
    "at epoch 3 batch 7") when the sum is not finite, before any weight changes."""
    loss = sum(losses.values())
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} {where}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class LossMeans:
    """Each loss's mean over the batches of one epoch or round run so far."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, losses: Mapping[str, torch.Tensor]) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value.detach())
        self.count += 1

    def means(self) -> dict[str, float]:
        return {key: value / max(self.count, 1) for key, value in self.sums.items()}

    def postfix(self) -> dict[str, str]:
        """The means as a progress bar shows them."""
        return {key: f"{value:.3f}" for key, value in self.means().items()}


class Checkpoints:
    """When a loop saves. ``save(outer, batch)`` writes the state whose next batch to run is
    ``batch`` of epoch or round ``outer``; it is called every ``minutes``, after each epoch or round,
    at the ``max_batches`` stop and on an interrupt."""

    def __init__(self, save: Callable[[int, int], None], path: Path, minutes: float,
                 max_batches: int | None = None, start: tuple[int, int] = (0, 0)) -> None:
        self._save, self.path, self.interval, self.max_batches = save, path, minutes * 60, max_batches
        self.position = start  # the next batch to run
        self.done = 0  # batches run by this call
        self.last = time.monotonic()

    def save(self) -> None:
        self._save(*self.position)
        self.last = time.monotonic()

    def batch_done(self, outer: int, batch: int) -> bool:
        """Count batch ``batch`` of ``outer`` as run, save when the interval has passed; True (saved)
        when the ``max_batches`` stop is reached."""
        self.done += 1
        self.position = (outer, batch + 1)
        if self.max_batches is not None and self.done >= self.max_batches:
            self.save()
            return True
        if time.monotonic() - self.last > self.interval:
            self.save()
        return False

    def outer_done(self, outer: int) -> None:
        """Epoch or round ``outer`` is finished: save with the next one's first batch to run."""
        self.position = (outer + 1, 0)
        self.save()

    @contextmanager
    def saved_on_interrupt(self) -> Iterator[None]:
        """Save on Ctrl-C and raise KeyboardInterrupt saying how to continue."""
        try:
            yield
        except KeyboardInterrupt:
            self.save()
            raise KeyboardInterrupt(f"interrupted; progress saved to {self.path} (continue with --resume)") from None
