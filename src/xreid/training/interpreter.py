"""Fitting the interpreter (docs/METHODS.md#interpreter): metric distillation of a target model's
distances into per-attribute components, with the attribute prior and attribute guidance.

Everything runs on cached inputs (``interpreter_data``): the frozen trunk's maps of the training
crops and the target's embeddings, so one epoch over PETA-ReID's 11k crops takes seconds to a few
minutes on a CPU. Each batch holds ``batch_size / 2`` anchors drawn at random and, for each, one of
its ``neighbours`` nearest crops in the target's space (the hard pairs a ranking is decided by);
every pair of the batch is a distillation pair (random pairs), the anchor-neighbour pairs counted
again on their own. Losses (each a pure function below):

- distillation: squared error between the summed components and the target's distance, relative
  to the batch's mean squared target distance;
- attribute prior: for pairs of two identities whose labels differ in k > 0 attributes, the
  cross-entropy between the contributions and the uniform distribution on those k attributes (the
  differing attributes should hold the distance; a rare attribute that differs weighs as much as a
  common one, which counters the dominance of large common attributes);
- attribute guidance: class-balanced BCE of each attribute's classifier on its own component
  vector z_a, so each attention map must find its attribute.

Checkpoints (every epoch, atomically) hold the network, the optimiser and the epoch; batches are
drawn from ``seed + epoch``, so a resumed fit gives exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from xreid.distance import l2_normalise
from xreid.explain.formulas import class_balanced_weights
from xreid.io import save_torch
from xreid.models.interpreter import InterpreterNet, InterpreterSpec

log = logging.getLogger(__name__)


@dataclass
class FitConfig:
    """Hyper-parameters of the fit (defaults chosen on PETA-ReID-val: docs/RESULTS.md#interpreter)."""

    dim: int = 16
    width: int = 256
    epochs: int = 15
    batch_size: int = 128
    neighbours: int = 10
    lr: float = 2e-3
    weight_decay: float = 1e-4
    distill_weight: float = 1.0
    prior_weight: float = 0.1
    attribute_weight: float = 0.1
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# --- losses (pure functions) ---------------------------------------------------------------------

def batch_components(z: torch.Tensor) -> torch.Tensor:
    """d_a = ||z_a(x) - z_a(y)||^2 for every pair of batch rows: B x B x A (z: B x A x k), through
    the Gram matrix (cheap to differentiate)."""
    sq = z.pow(2).sum(-1)
    return (sq[:, None, :] + sq[None, :, :] - 2 * torch.einsum("iak,jak->ija", z, z)).clamp_min(0.0)


def distillation_loss(parts: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the summed components (P x A -> P) and the target distances (P),
    relative to the mean squared target distance (scale-free across models). Dividing by the
    variance instead (1 - R^2) was measured on PETA-ReID-val and not chosen (docs/RESULTS.md#interpreter)."""
    return (parts.sum(-1) - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)


def attribute_prior_loss(parts: torch.Tensor, differs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cross-entropy between each pair's contributions c_a = d_a / sum_a d_a and the uniform
    distribution over its truly differing attributes (``differs``: P x A bool), averaged over the
    pairs with at least one difference (0 when there is none)."""
    k = differs.sum(-1)
    has = k > 0
    if not has.any():
        return parts.sum() * 0.0
    log_c = torch.log(parts[has] + eps) - torch.log(parts[has].sum(-1, keepdim=True) + eps * parts.shape[-1])
    d = differs[has].float()
    return -((log_c * d).sum(-1) / k[has]).mean()


def attribute_guidance_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE of the per-attribute classifiers (``weights`` from
    ``xreid.explain.formulas.class_balanced_weights``)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, weight=weights)


# --- data ----------------------------------------------------------------------------------------

def nearest_neighbours(features: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """For each row, the indices of its ``k`` nearest other rows by the ranking distance (cosine)."""
    f = l2_normalise(np.asarray(features, np.float32))
    k = min(k, len(f) - 1)
    out = np.empty((len(f), k), np.int64)
    for s in range(0, len(f), chunk):
        sim = f[s:s + chunk] @ f.T
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, part, 1), axis=1, kind="stable")
        out[s:s + chunk] = np.take_along_axis(part, order, 1)
    return out


@dataclass
class FitData:
    """Cached inputs of a fit: trunk maps (N x C x H x W float16), target embeddings (N x D), attribute
    labels (N x A bool), which rows are labelled, and person ids (None: unknown)."""

    maps: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    pids: list[str | None]

    def __post_init__(self) -> None:
        n = len(self.maps)
        for name, v in (("targets", self.targets), ("labels", self.labels), ("labelled", self.labelled),
                        ("pids", self.pids)):
            if len(v) != n:
                raise ValueError(f"interpreter fit data: {n} maps but {len(v)} {name}")
        if n < 4:
            raise ValueError(f"interpreter fit data: {n} images, at least 4 are needed")


def _batches(n: int, batch_size: int, neighbours: np.ndarray, rng: np.random.Generator):
    """Index batches: ``batch_size / 2`` anchors (a permutation of all images) each followed by one
    of its nearest neighbours."""
    half = max(2, batch_size // 2)
    perm = rng.permutation(n)
    for s in range(0, n - half + 1 if n >= half else 1, half):
        anchors = perm[s:s + half]
        partners = neighbours[anchors, rng.integers(0, neighbours.shape[1], len(anchors))]
        yield np.concatenate([anchors, partners]), len(anchors)


# --- the fit --------------------------------------------------------------------------------------

def fit_interpreter(data: FitData, config: FitConfig, checkpoint: Path | None = None, progress: bool = True,
                    net: InterpreterNet | None = None) -> tuple[InterpreterNet, list[dict]]:
    """Train the interpreter on ``data``; resumes from ``checkpoint`` when it exists (and writes it
    every epoch). Returns the network (eval mode) and the per-epoch loss history."""
    from tqdm import tqdm

    n, a = len(data.maps), data.labels.shape[1]
    spec = InterpreterSpec(attributes=a, dim=config.dim, width=config.width, in_channels=data.maps.shape[1])
    torch.manual_seed(config.seed)
    net = net if net is not None else InterpreterNet(spec)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, n // max(2, config.batch_size // 2))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.epochs * steps_per_epoch,
                                                pct_start=0.1)
    start_epoch, history = 0, []
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("config") != asdict(config):
            raise ValueError(f"{checkpoint}: a checkpoint of a fit with other settings ({state.get('config')}); "
                             f"delete it to start over")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        log.info("resuming the interpreter fit at epoch %d of %d", start_epoch, config.epochs)
    targets = torch.from_numpy(l2_normalise(np.asarray(data.targets, np.float32)))
    labels = torch.from_numpy(data.labels.astype(np.float32))
    labelled = torch.from_numpy(np.asarray(data.labelled, bool))
    ratio = data.labels[data.labelled].mean(0) if data.labelled.any() else np.zeros(a)
    bce_w = torch.from_numpy(class_balanced_weights(data.labels, ratio).astype(np.float32))
    pid_codes = {p: i for i, p in enumerate(dict.fromkeys(p for p in data.pids if p is not None))}
    pid = torch.tensor([pid_codes[p] if p is not None else -1 - i for i, p in enumerate(data.pids)])
    neighbours = nearest_neighbours(data.targets, config.neighbours)
    total = config.epochs * steps_per_epoch
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc="interpreter: fit", unit="batch",
               disable=not progress)
    try:
        for epoch in range(start_epoch, config.epochs):
            rng = np.random.default_rng(config.seed + epoch)
            torch.manual_seed(config.seed + 1000 + epoch)
            net.train()
            sums, count, t0 = np.zeros(4), 0, time.monotonic()
            for step, (idx, half) in enumerate(_batches(n, config.batch_size, neighbours, rng)):
                if step >= steps_per_epoch:
                    break
                rows = torch.from_numpy(idx)
                z, _, logits = net(torch.from_numpy(data.maps[idx]))
                t = targets[rows]
                b = len(idx)
                i, j = torch.triu_indices(b, b, 1)
                hard_i, hard_j = torch.arange(half), torch.arange(half) + half
                comp = batch_components(z)
                parts, hard = comp[i, j], comp[hard_i, hard_j]
                d = 1.0 - (t[i] * t[j]).sum(-1)
                d_hard = 1.0 - (t[hard_i] * t[hard_j]).sum(-1)
                l_dist = distillation_loss(parts, d) + distillation_loss(hard, d_hard)
                lab, ok, p = labels[rows], labelled[rows], pid[rows]
                usable = ok[i] & ok[j] & (p[i] != p[j])
                l_prior = attribute_prior_loss(parts[usable], (lab[i] != lab[j])[usable])
                l_attr = (attribute_guidance_loss(logits[ok], lab[ok], bce_w[rows][ok]) if ok.any()
                          else logits.sum() * 0.0)
                loss = config.distill_weight * l_dist + config.prior_weight * l_prior + config.attribute_weight * l_attr
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                sums += [float(x.detach()) for x in (loss, l_dist, l_prior, l_attr)]
                count += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, distill=f"{sums[1] / count:.3f}", prior=f"{sums[2] / count:.2f}",
                                attr=f"{sums[3] / count:.2f}")
            means = sums / max(count, 1)
            history.append({"epoch": epoch + 1, "loss": float(means[0]), "distill": float(means[1]),
                            "prior": float(means[2]), "attribute": float(means[3]),
                            "seconds": float(time.monotonic() - t0)})
            if checkpoint is not None:
                save_torch({"net": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "epoch": epoch + 1, "history": history, "config": asdict(config)}, checkpoint)
    finally:
        bar.close()
    return net.eval(), history


@torch.no_grad()
def interpret_maps(net: InterpreterNet, maps: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Component vectors (N x A x k float32) and attribute logits (N x A) of cached trunk maps."""
    net.eval()
    zs, logits = [], []
    for s in range(0, len(maps), batch_size):
        z, _, lg = net(torch.from_numpy(np.asarray(maps[s:s + batch_size])))
        zs.append(z.numpy())
        logits.append(lg.numpy())
    return np.concatenate(zs), np.concatenate(logits)
