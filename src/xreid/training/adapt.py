"""Adaptation to a user's cameras without labels (``xreid adapt``; docs/METHODS.md#adaptation-without-labels).

Rounds of: embed every unlabeled crop with the current model, cluster them into pseudo-identities
(DBSCAN on k-reciprocal Jaccard distances, Zhong et al. 2017 / Fan et al. 2018; crops of one track
forced together), then train on P x K batches of those pseudo-identities with the batch-hard triplet
loss and a cluster-contrast loss (each crop's embedding against the round's cluster centroids,
Dai et al. 2021), plus, when a teacher is given, the mimic loss on the augmented view
(``training.teacher``). Crops DBSCAN leaves alone join only the mimic loss.

Every round's batches are seeded by (seed, round, batch); the state is checkpointed atomically after
each batch interval and each round, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xreid.distance import l2_normalise
from xreid.training import loop

log = logging.getLogger(__name__)


@dataclass
class AdaptConfig:
    rounds: int = 8  # cluster-then-train rounds
    batches: int = 50  # training batches per round
    p: int = 16
    k: int = 4
    lr: float = 3.5e-5  # a tenth of the training rate: the model already ranks; small steps keep that
    weight_decay: float = 5e-4
    freeze_stages: int = 2  # as the bundled recipes (stem + first stage keep ImageNet weights)
    margin: float = 0.3
    triplet_weight: float = 1.0
    contrast_weight: float = 1.0
    temperature: float = 0.05  # of the cluster-contrast softmax
    eps: float = 0.6  # DBSCAN radius on Jaccard distances (the cluster-contrast papers' value)
    distance: str = "jaccard"  # what DBSCAN clusters on: 'jaccard' (k-reciprocal) or 'cosine' (1 - cos)
    min_samples: int = 4
    k1: int = 20
    k2: int = 6
    teacher: str | None = None
    teacher_weight: float = 10.0  # the mimic loss (1 - cos), as the training recipes
    teacher_precision: str | None = None
    crop_pad: int = 8
    color_jitter: float = 0.2
    cutout: float = 0.2
    seed: int = 0
    checkpoint_minutes: float = 5.0

    def changes(self, stored: dict) -> list[str]:
        """The keys whose values differ from a stored config, apart from those a resume may change."""
        mine = asdict(self)
        return sorted(k for k in mine if k not in RESUMABLE and stored.get(k, mine[k]) != mine[k])


#: options a resumed adaptation may change: they affect neither the weights nor the batches
RESUMABLE = frozenset({"checkpoint_minutes"})


def dbscan(dist: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN (Ester et al. 1996) on a precomputed N x N distance matrix: a point with at least
    ``min_samples`` points (itself included) within ``eps`` is a core point; core points within ``eps``
    of each other share a cluster, a non-core point joins the cluster of its nearest core point within
    ``eps``, and the rest are noise (-1). Clusters are numbered by their first point."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    near = dist <= eps
    core = near.sum(1) >= min_samples
    labels = np.full(len(dist), -1, np.int64)
    if not core.any():
        return labels
    idx = np.flatnonzero(core)
    _, comp = connected_components(csr_matrix(near[np.ix_(idx, idx)]), directed=False)
    labels[idx] = comp
    for i in np.flatnonzero(~core):
        reach = idx[near[i, idx]]
        if len(reach):
            labels[i] = labels[reach[np.argmin(dist[i, reach])]]
    # renumber by first appearance: deterministic, 0..C-1
    _, first = np.unique(labels[labels >= 0], return_index=True)
    order = labels[labels >= 0][np.sort(first)]
    remap = {int(c): n for n, c in enumerate(order)}
    return np.array([remap.get(int(c), -1) for c in labels], np.int64)


def same_track_zeroed(dist: np.ndarray, tracks: np.ndarray | None) -> np.ndarray:
    """``dist`` with the distance between any two crops of one track set to 0 (so clustering never
    splits a track); ``tracks`` holds each crop's track name, '' for none."""
    if tracks is None:
        return dist
    tracks = np.asarray(tracks).astype(str)
    same = (tracks[:, None] == tracks[None, :]) & (tracks[:, None] != "")
    return np.where(same, 0.0, dist)


def pseudo_labels(features: np.ndarray, cfg: AdaptConfig, tracks: np.ndarray | None = None) -> np.ndarray:
    """Pseudo-identities of unlabeled crops: DBSCAN on the k-reciprocal Jaccard distances of their
    embeddings, or their cosine distances (``cfg.distance``; same-track distances zeroed); -1 = no
    cluster. A track left out of every cluster becomes a pseudo-identity of its own when it has at
    least two crops."""
    from xreid.distance import cosine_distance
    from xreid.evaluation.rerank import k_reciprocal_jaccard

    f = l2_normalise(features.astype(np.float32))
    if cfg.distance == "cosine":
        dist = np.maximum(cosine_distance(f, f), 0.0)
    elif cfg.distance == "jaccard":
        dist, _ = k_reciprocal_jaccard(f, k1=min(cfg.k1, len(f) - 1), k2=cfg.k2)
    else:
        raise ValueError(f"adapt distance {cfg.distance!r}: choose 'jaccard' or 'cosine'")
    labels = dbscan(same_track_zeroed(dist, tracks), cfg.eps, cfg.min_samples)
    if tracks is not None:
        tracks = np.asarray(tracks).astype(str)
        nxt = labels.max() + 1
        for t in np.unique(tracks[(labels < 0) & (tracks != "")]):
            members = np.flatnonzero((tracks == t) & (labels < 0))
            if len(members) >= 2:
                labels[members], nxt = nxt, nxt + 1
    return labels


def centroids(features: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """The L2-normalised mean embedding of each pseudo-identity (C x D, C = labels.max() + 1)."""
    f = l2_normalise(features.float(), axis=1)
    lab = torch.as_tensor(labels)
    keep = lab >= 0
    sums = torch.zeros(int(lab.max()) + 1, f.shape[1]).index_add_(0, lab[keep], f[keep])
    return l2_normalise(sums, axis=1)


def cluster_contrast_loss(emb: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor,
                          temperature: float = 0.05) -> torch.Tensor:
    """Cluster contrast (Dai et al. 2021, without the momentum memory): cross-entropy of each crop's
    normalised embedding against the normalised cluster centroids, logits = cos / temperature; rows
    whose label is negative are left out."""
    keep = labels >= 0
    if not keep.any():
        return emb.sum() * 0.0
    logits = l2_normalise(emb[keep], axis=1) @ centres.t() / temperature
    return F.cross_entropy(logits, labels[keep])


def pseudo_batches(labels: np.ndarray, p: int, k: int, count: int, seed: int, rnd: int) -> list[np.ndarray]:
    """``count`` P x K batches over the pseudo-identities (K crops each, with replacement when fewer;
    fewer than P identities: all of them), seeded by (seed, round)."""
    rng = np.random.default_rng((seed, rnd, 11))
    ids = np.unique(labels[labels >= 0])
    groups = {int(c): np.flatnonzero(labels == c) for c in ids}
    out = []
    for _ in range(count):
        chosen = rng.choice(ids, min(p, len(ids)), replace=False)
        out.append(np.concatenate([rng.choice(groups[int(c)], k, replace=len(groups[int(c)]) < k) for c in chosen]))
    return out


def training_embeddings(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the triplet loss's feature, the ranking embedding) of a batch in train mode, for both heads:
    a BNNeck network's pre-BN feature and embedding; an AANet's ranking descriptor for both."""
    out = model(images)
    if isinstance(out, dict):
        emb = model.ranking_descriptor(out)
        return emb, emb
    return out[0], out[1]


@torch.no_grad()
def embed_all(model, images: np.ndarray, batch: int = 128, progress: bool = False, desc: str = "embedding") -> torch.Tensor:
    """Eval-mode embeddings of uint8 N x H x W x 3 crops (the model's own input size)."""
    from tqdm import tqdm

    from xreid.data.dataset import to_tensor

    model.eval()
    out = [model(to_tensor(images[i:i + batch]).contiguous(memory_format=torch.channels_last))
           for i in tqdm(range(0, len(images), batch), desc=desc, unit="batch", disable=not progress)]
    return torch.cat(out).float()


def adapt_model(model, spec, images: np.ndarray, cfg: AdaptConfig, work: Path, tracks: np.ndarray | None = None,
                resume: bool = False, progress: bool = True, max_batches: int | None = None,
                source: dict | None = None) -> tuple[torch.nn.Module, list[dict], bool]:
    """Adapt ``model`` (an xreid network, float32) to ``images`` (uint8 crops at its input size) per
    ``cfg``; checkpoints in ``work`` (``adapt.pt``). Returns the adapted network (eval mode), the
    per-round history and whether every round ran (``max_batches`` stops early with a checkpoint)."""
    from tqdm import tqdm

    from xreid.data.dataset import to_tensor
    from xreid.data.transforms import BatchAugment
    from xreid.io import save_torch
    from xreid.models.checkpoint import load_safely, plain_data
    from xreid.training.losses import batch_hard_triplet_loss, feature_distillation_loss

    loop.start_run(cfg.seed)
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / "adapt.pt"
    model.backbone.freeze_stages(cfg.freeze_stages)
    model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_round, start_batch, history, labels, centres = 0, 0, [], None, None
    loop.refuse_fresh_start(ckpt_path, resume, "an adaptation already runs", "choose another --out")
    if ckpt_path.exists():
        ckpt = load_safely(ckpt_path)
        loop.refuse_changed_resume(ckpt_path, cfg.changes(ckpt.get("config", {})),
                                   "the options differ from the ones this adaptation started with",
                                   "resume with the same options or choose another --out")
        if ckpt.get("images") != len(images):
            raise ValueError(f"{ckpt_path}: started on {ckpt.get('images')} crops, now {len(images)}; resume on "
                             f"the same input or choose another --out")
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_round, start_batch, history = ckpt["round"], ckpt["batch"], ckpt["history"]
        if start_batch:  # mid-round: that round's clusters and centroids
            labels, centres = ckpt["labels"].numpy(), ckpt["centres"]
        log.info("resumed from %s at round %d batch %d", ckpt_path, start_round, start_batch)
    config = plain_data(asdict(cfg), "config")

    def save(rnd: int, batch: int) -> None:
        mid = batch > 0
        save_torch({"config": config, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "round": rnd, "batch": batch, "history": history, "images": len(images),
                    "labels": torch.as_tensor(labels) if mid else None, "centres": centres if mid else None,
                    "source": source or {}}, ckpt_path)

    teacher, mean = None, None
    if cfg.teacher:
        from xreid.models.loading import load_embedder
        from xreid.training.teacher import augmented_targets, sample_indices

        teacher = load_embedder(cfg.teacher, precision=cfg.teacher_precision)
        from xreid.data.transforms import resize_rgb

        sample = [resize_rgb(im, teacher.preprocess.size) for im in images[sample_indices(len(images), 512)]]
        mean = l2_normalise(teacher.embed_arrays(sample)).mean(0, keepdims=True)
        dim = getattr(model, "embedding_dim", None)
        if mean.shape[1] != dim:
            raise ValueError(f"{cfg.teacher}: the teacher's embeddings have {mean.shape[1]} dimensions, the model's "
                             f"{dim}; distillation needs equal sizes")
    augment = BatchAugment(spec.input_size, pad=cfg.crop_pad, color=cfg.color_jitter)
    checkpoints = loop.Checkpoints(save, ckpt_path, cfg.checkpoint_minutes, max_batches, (start_round, start_batch))
    with checkpoints.saved_on_interrupt():
        for rnd in range(start_round, cfg.rounds):
            if labels is None:  # a round resumed mid-way keeps its clusters and centroids
                feats = embed_all(model, images, progress=progress, desc=f"round {rnd + 1}/{cfg.rounds}: embedding")
                labels = pseudo_labels(feats.numpy(), cfg, tracks)
                if labels.max() < 1:
                    raise ValueError(f"round {rnd + 1}: {labels.max() + 1} pseudo-identities among {len(images)} crops "
                                     f"(need 2): try another eps than {cfg.eps} (larger merges more crops, smaller fewer) "
                                     f"or give more crops per person")
                centres = centroids(feats, labels)
            clustered = labels >= 0
            n_clusters = int(labels.max()) + 1
            batches = pseudo_batches(labels, cfg.p, cfg.k, cfg.batches, cfg.seed, rnd)
            unclustered = np.flatnonzero(~clustered)
            model.train()
            meter = loop.LossMeans()
            bar = tqdm(total=cfg.batches, initial=start_batch, desc=f"round {rnd + 1}/{cfg.rounds}: training",
                       unit="batch", disable=not progress)
            tic = time.monotonic()
            for b, idx in enumerate(batches):
                if b < start_batch:
                    continue
                torch.manual_seed(hash((cfg.seed, rnd, b)) & 0x7FFFFFFF)
                extra = np.array([], np.int64)
                if teacher is not None and len(unclustered):  # crops without a cluster: mimic loss only
                    rng = np.random.default_rng((cfg.seed, rnd, b, 13))
                    extra = rng.choice(unclustered, min(len(unclustered), max(len(idx) // 8, 1)), replace=False)
                rows = np.concatenate([idx, extra])
                x = augment(to_tensor(images[rows]), cfg.cutout).contiguous(memory_format=torch.channels_last)
                lab = torch.as_tensor(labels[rows])
                feat, emb = training_embeddings(model, x)
                n = len(idx)
                losses = {"triplet": cfg.triplet_weight * batch_hard_triplet_loss(feat[:n], lab[:n], cfg.margin),
                          "contrast": cfg.contrast_weight * cluster_contrast_loss(emb[:n], lab[:n], centres,
                                                                                    cfg.temperature)}
                if teacher is not None:
                    target = augmented_targets(teacher, x, mean)
                    losses["mimic"] = cfg.teacher_weight * feature_distillation_loss(emb, target)
                loop.optimiser_step(optimizer, losses, f"in round {rnd + 1} batch {b}")
                meter.add(losses)
                bar.set_postfix(meter.postfix())
                bar.update(1)
                if checkpoints.batch_done(rnd, b):
                    bar.close()
                    return model.eval(), history, False
            bar.close()
            history.append({"round": rnd + 1, "clusters": n_clusters, "clustered": int(clustered.sum()),
                            **meter.means(), "seconds": time.monotonic() - tic})
            log.info("round %d: %s", rnd + 1, history[-1])
            start_batch, labels, centres = 0, None, None
            checkpoints.outer_done(rnd)
    return model.eval(), history, True
