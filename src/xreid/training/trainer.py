"""The training loop: P x K batches, ID warm start, CE + batch-hard triplet (+ optional
distillation), warmup + cosine learning rate (+ optional weight averaging over extra constant-rate
epochs), atomic checkpoints and exact resume.

Every batch's sampling and augmentation is seeded by (seed, epoch, batch), so a run resumed from a
mid-epoch checkpoint replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from xreid.data.dataset import IdentitySampler, InMemoryReIDSet, decode_all, to_tensor
from xreid.data.transforms import BatchAugment, curriculum_fraction
from xreid.distance import l2_normalise
from xreid.io import write_json
from xreid.models.checkpoint import load_training_checkpoint, plain_data, save_model_file, save_training_checkpoint
from xreid.models.loading import model_head_path
from xreid.models.aanet import aanet_extra
from xreid.models.networks import build_model
from xreid.models.reid_net import ModelSpec
from xreid.training.acrn import TABLE_FILE, AttributeTable, AttributeWeights
from xreid.training.averaging import accumulate_average, recompute_batchnorm
from xreid.training.config import Config, config_changes
from xreid.training.loop import (
    Checkpoints,
    LossMeans,
    optimiser_step,
    refuse_changed_resume,
    refuse_fresh_start,
    start_run,
)
from xreid.training.losses import (
    aanet_losses,
    attribute_bce,
    attribute_distances,
    attribute_weight_triplet_loss,
    feature_distillation_loss,
    identity_losses,
    similarity_distillation_loss,
)
from xreid.training.multitask import (
    AttributeLayer,
    AttributeTargets,
    attribute_names,
    attribute_only_indices,
    finish_head,
    split_attribute_only,
)
from xreid.training.style_mix import StyleMixing
from xreid.training.teacher import augmented_targets

log = logging.getLogger(__name__)


def learning_rate(cfg: Config, progress: float) -> float:
    """Linear warmup over ``warmup_epochs`` then cosine decay to 1 % (progress in epochs, fractional);
    the weight-averaging epochs after ``epochs`` run at the constant ``swa_lr * lr``."""
    t = cfg.train
    if progress >= t.epochs and t.swa_epochs:
        return t.lr * t.swa_lr
    if progress < t.warmup_epochs:
        return t.lr * (0.1 + 0.9 * progress / max(t.warmup_epochs, 1e-9))
    span = max(t.epochs - t.warmup_epochs, 1e-9)
    return t.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (progress - t.warmup_epochs) / span)))


def teacher_features(cfg: Config, dataset: InMemoryReIDSet, run_dir: Path) -> torch.Tensor | None:
    """Teacher embeddings of the training images (mean of the image and its mirror; cached), centred
    on their mean and L2-normalised: the student's BNNeck output is zero-mean per dimension, so an
    uncentred target could never be matched exactly."""
    feats = teacher_embeddings(cfg, dataset.images, run_dir / "teacher_features.npy")
    return None if feats is None else centred_targets(feats)


def teacher_embeddings(cfg: Config, images: np.ndarray, cache: Path, save_every: int = 8) -> np.ndarray | None:
    """The teacher's raw embeddings of ``images`` (image and mirror averaged, normalised), cached in
    ``cache``; None when the config distils from no teacher. The batches done are saved to
    ``cache``'s ``.partial.npy`` every ``save_every`` batches (atomically), so an interrupted run
    continues where it stopped."""
    distill = cfg.train.distill
    if not distill.teacher or not (distill.feature_weight or distill.relational_weight):
        return None
    from xreid.data.transforms import resize_rgb
    from xreid.io import atomic_write
    from xreid.models.loading import load_embedder

    if cache.is_file():
        feats = np.load(cache)
        if len(feats) == len(images):
            return feats
    partial = cache.with_name(cache.stem + ".partial.npy")
    out = [np.load(partial)] if partial.is_file() else []
    done = len(out[0]) if out else 0
    if done > len(images) or done % 64:
        out, done = [], 0  # another image list's leftovers
    teacher = load_embedder(distill.teacher, precision=distill.teacher_precision)
    size = teacher.preprocess.size
    from tqdm import tqdm

    total = -(-len(images) // 64)
    for start in tqdm(range(done, len(images), 64), desc=f"teacher embeddings ({cache.stem})", unit="batch",
                      initial=done // 64, total=total):
        imgs = [resize_rgb(im, size) for im in images[start:start + 64]]
        f = teacher.embed_arrays(imgs) + teacher.embed_arrays([im[:, ::-1] for im in imgs])
        out.append(l2_normalise(f).astype(np.float32))
        if (start // 64 + 1) % save_every == 0 and start + 64 < len(images):
            so_far = np.concatenate(out)
            out = [so_far]
            atomic_write(partial, lambda fh: np.save(fh, so_far))
    feats = np.concatenate(out).astype(np.float32)
    atomic_write(cache, lambda fh: np.save(fh, feats))
    partial.unlink(missing_ok=True)
    return feats


def centred_targets(feats: np.ndarray, mean: np.ndarray | None = None) -> torch.Tensor:
    """Distillation targets: teacher embeddings minus ``mean`` (default: their own mean), L2-normalised."""
    feats = feats - (feats.mean(0, keepdims=True) if mean is None else mean)
    return torch.from_numpy(l2_normalise(feats)).float()


def draw_batch(dataset: InMemoryReIDSet, augment: BatchAugment, cfg: Config, epoch: int, batch: int,
               indices, extra: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (augmented, channels-last) and labels of ``batch`` in ``epoch``, seeded by
    (seed, epoch, batch): a resumed run draws exactly what an uninterrupted one would have.
    ``extra`` (uint8 images without identity, e.g. attribute-only crops) follow the identity images,
    with label -1."""
    t = cfg.train
    torch.manual_seed(hash((cfg.seed, epoch, batch)) & 0x7FFFFFFF)
    images, labels = dataset.batch(indices)
    if extra is not None and len(extra):
        images = torch.cat([images, to_tensor(extra)])
        labels = torch.cat([labels, torch.full((len(extra),), -1, dtype=labels.dtype)])
    fraction = curriculum_fraction(epoch, t.epochs, t.cutout_start, t.cutout_end) if t.cutout_prob > 0 else 0.0
    return augment(images, fraction).contiguous(memory_format=torch.channels_last), labels


def training_batches(dataset: InMemoryReIDSet, sampler: IdentitySampler, augment: BatchAugment,
                     cfg: Config, epoch: int, progress: bool = False):
    """One epoch of augmented P x K batches as training draws them, for re-estimating batch-norm
    statistics after weight averaging. Statistics from clean, unaugmented crops instead cost mAP
    (docs/RESULTS.md#weight-averaging-and-how-it-was-chosen), since every layer after them was
    trained on augmented batches."""
    from tqdm import tqdm

    for b, indices in enumerate(tqdm(sampler.epoch(epoch), total=len(sampler), desc="batch-norm statistics",
                                     unit="batch", disable=not progress)):
        yield draw_batch(dataset, augment, cfg, epoch, b, indices)[0]


def check_new_run(cfg: Config, resume: bool) -> None:
    """Refuse to start a run over an existing one unless resuming it."""
    refuse_fresh_start(cfg.run_dir / "last.pt", resume, "a run already exists",
                       "change 'name'/'output_dir' in the config")


def train(cfg: Config, data_root: Path, resume: bool = False, progress: bool = True,
          max_batches: int | None = None) -> Path:
    """Train per ``cfg``; returns the path of the final model file (``run_dir/model.pt``).

    ``max_batches`` stops early (for smoke tests): the run can be resumed later.
    """
    from tqdm import tqdm

    from xreid.data.protocol import load_protocol, without_subsets

    start_run(cfg.seed)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "last.pt"
    check_new_run(cfg, resume)
    # read (weights-only) before the slow set-up, so an unusable checkpoint fails at once
    ckpt = load_training_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    config = plain_data(asdict(cfg), "config")  # paths as strings: JSON- and weights-only-safe
    if ckpt is not None and ckpt.get("config") is not None:
        refuse_changed_resume(ckpt_path, config_changes(ckpt["config"], config),
                              "the config differs from the one this run started with",
                              f"resume with the run's own config ({run_dir / 'config.json'}) or start a new run "
                              f"under another name")
    protocol = load_protocol(cfg.protocol, data_root)
    m = cfg.model
    train_records = protocol.train
    if cfg.train.exclude_subsets:  # e.g. the test sets' cameras, for a cross-domain figure
        train_records = without_subsets(train_records, cfg.train.exclude_subsets, f"{cfg.name}: train.exclude_subsets")
    dataset = InMemoryReIDSet(train_records, protocol.image_root, m.input_size, progress=progress)
    if len(dataset) == 0:
        raise ValueError(f"no usable training images in protocol {cfg.protocol}")
    a = cfg.attributes
    aanet = m.head == "aanet"
    if aanet and not a.weight:
        raise ValueError(f"{cfg.name}: model.head aanet learns attributes: give an attributes section with a "
                         f"weight above 0 (its names are the attribute branch's)")
    names = attribute_names(a.names, where=f"{cfg.name}: attributes.names") if a.weight else []
    spec = ModelSpec(backbone=m.backbone, pooling=m.pooling, embedding_dim=m.embedding_dim,
                     last_stride=m.last_stride, input_size=m.input_size, num_classes=dataset.num_classes, head=m.head,
                     extra=aanet_extra(names, m.aanet_hidden, m.aanet_descriptor, m.aanet_branch_weight) if aanet else {})
    model = build_model(spec, pretrained=m.backbone_weights or True)
    model.backbone.freeze_stages(m.freeze_stages)
    model = model.to(memory_format=torch.channels_last)  # faster steps on CPU: benchmarks/bench_train_step.py
    uncertainties = [model.heads.log_sigma] if aanet else []  # no weight decay on the log-uncertainties
    params = [p for p in model.parameters() if p.requires_grad and all(p is not u for u in uncertainties)]
    layer, targets, ao_images, calibration = None, None, None, []
    distill = cfg.train.distill
    if distill.targets not in ("clean", "augmented"):
        raise ValueError(f"{cfg.name}: train.distill.targets must be 'clean' or 'augmented', got {distill.targets!r}")
    distilling = bool(distill.teacher and (distill.feature_weight or distill.relational_weight))
    ao_batch = a.attribute_only_batch if a.weight else (distill.attribute_only_batch if distilling else 0)
    if a.weight:  # multi-task: the attribute layer and the labelled images it learns from
        ao_train, calibration = split_attribute_only(protocol.attribute_only)
        ao_train = ao_train if a.attribute_only else []
        ao_images, keep, _ = decode_all([protocol.image_root / r.path for r in ao_train], m.input_size, progress,
                                        "decoding attribute-only images")
        targets = AttributeTargets(names, dataset.records, [ao_train[i] for i in keep])
        if targets.never_positive:
            log.warning("never positive in the training images (no attribute signal; left out of mA): %s",
                        ", ".join(targets.never_positive))
        layer = AttributeLayer(model.embedding_dim, len(names))
    elif ao_batch > 0:  # mimic loss only: the same training share of the attribute-only crops, no labels read
        ao_train, _ = split_attribute_only(protocol.attribute_only)
        ao_images, _, _ = decode_all([protocol.image_root / r.path for r in ao_train], m.input_size, progress,
                                     "decoding attribute-only images")
    c = cfg.acrn
    acrn_probs, acrn_layer, acrn_names = None, None, []
    if c.gamma:  # ACRN: the attribute classifier's probabilities of every training image (prepared before)
        table = AttributeTable.load(run_dir / TABLE_FILE)
        acrn_probs = torch.from_numpy(table.rows([r.path for r in dataset.records], str(run_dir / TABLE_FILE)))
        acrn_layer, acrn_names = AttributeWeights(len(table.names)), table.names
    groups = [{"params": params}] + ([{"params": uncertainties, "weight_decay": 0.0}] if uncertainties else [])
    if layer is not None:  # its own rate, no weight decay (as the post-hoc fit)
        groups.append({"params": list(layer.parameters()), "weight_decay": 0.0, "lr_scale": a.lr_scale})
    if acrn_layer is not None:  # its L2 pull is in its loss
        groups.append({"params": list(acrn_layer.parameters()), "weight_decay": 0.0, "lr_scale": c.weight_lr_scale})
    optimizer = torch.optim.Adam(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sampler = IdentitySampler(dataset.labels, cfg.train.p, cfg.train.k, seed=cfg.seed)
    augment = BatchAugment(m.input_size, pad=cfg.train.crop_pad, color=cfg.train.color_jitter,
                           blur=cfg.train.blur_prob, scale=cfg.train.scale_jitter)
    live_teacher, teacher_mean = None, None
    if distilling and distill.targets == "augmented":  # the teacher embeds every batch as the student sees it
        from xreid.models.loading import load_embedder
        from xreid.training.teacher import sample_indices

        sample = dataset.images[sample_indices(len(dataset), 1024)]  # their centre: clean crops, cached
        teacher_mean = teacher_embeddings(cfg, sample, run_dir / "teacher_features_sample.npy").mean(0, keepdims=True)
        live_teacher = load_embedder(distill.teacher, precision=distill.teacher_precision)
        teacher = None
        teacher_dim = teacher_mean.shape[1]
    else:
        teacher = teacher_features(cfg, dataset, run_dir)
        teacher_dim = None if teacher is None else teacher.shape[1]
    mimic_dim = m.aanet_hidden if aanet else model.embedding_dim  # AANet: its global branch mimics
    if teacher_dim is not None and distill.feature_weight and teacher_dim != mimic_dim:
        setting = "model.aanet_hidden" if aanet else "model.embedding_dim"
        raise ValueError(f"feature distillation needs the student's embedding size to equal the teacher's: "
                         f"set {setting} to {teacher_dim} (it is {mimic_dim})")
    ao_teacher = None
    if teacher is not None and ao_images is not None and len(ao_images):  # the mimic loss sees them too
        raw = teacher_embeddings(cfg, ao_images, run_dir / "teacher_features_attribute_only.npy")
        ao_teacher = centred_targets(raw, np.load(run_dir / "teacher_features.npy").mean(0, keepdims=True))

    start_epoch, start_batch, history = 0, 0, []
    average, averaged = None, 0  # weight average over the finished averaging epochs, and their count
    attr_average = None  # the attribute layer's, over the same epochs
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, start_batch, history = ckpt["epoch"], ckpt["batch"], ckpt["history"]
        average, averaged = ckpt.get("average"), ckpt.get("averaged", 0)
        if layer is not None:
            layer.load_state_dict(ckpt["attribute_layer"])
            attr_average = ckpt.get("attribute_average")
        if acrn_layer is not None:
            acrn_layer.load_state_dict(ckpt["acrn_weights"])
        log.info("resumed from %s at epoch %d batch %d", ckpt_path, start_epoch, start_batch)
    write_json(run_dir / "config.json", config)

    def save(epoch: int, batch: int) -> None:
        extra = {} if layer is None else {"attribute_layer": layer.state_dict(), "attribute_average": attr_average}
        if acrn_layer is not None:
            extra["acrn_weights"] = acrn_layer.state_dict()
        save_training_checkpoint(ckpt_path, spec=spec, model=model, optimizer=optimizer, epoch=epoch, batch=batch,
                                 history=history, average=average, averaged=averaged, config=config, extra=extra)

    t = cfg.train
    total_epochs = t.epochs + t.swa_epochs
    checkpoints = Checkpoints(save, ckpt_path, t.checkpoint_minutes, max_batches, (start_epoch, start_batch))
    model.train()
    # training only: the hooks are gone before batch-norm statistics are re-estimated and the model saved
    with checkpoints.saved_on_interrupt(), StyleMixing(model.backbone, t.style_mix):
        for epoch in range(start_epoch, total_epochs):
            ranking = epoch >= t.id_warm_epochs
            meter = LossMeans()
            bar = tqdm(total=len(sampler), initial=start_batch, desc=f"epoch {epoch + 1}/{total_epochs}",
                       unit="batch", disable=not progress)
            tic = time.monotonic()
            for b, indices in enumerate(sampler.epoch(epoch)):
                if b < start_batch:
                    continue
                ao = (attribute_only_indices(len(ao_images), ao_batch, cfg.seed, epoch, b)
                      if ao_images is not None and len(ao_images) and ao_batch > 0 else None)
                images, labels = draw_batch(dataset, augment, cfg, epoch, b, indices,
                                            None if ao is None else ao_images[ao])
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, epoch + b / len(sampler)) * group.get("lr_scale", 1.0)
                n_id = len(indices)  # identity images first; attribute-only crops (label -1) after them
                if layer is not None:  # the attribute labels of the batch's rows that have them
                    rows = np.concatenate([targets.train_labels[indices]]
                                          + ([] if ao is None else [targets.ao_labels[ao]]))
                    has = np.concatenate([targets.train_labelled[indices], np.ones(len(rows) - n_id, bool)])
                p_attr = None if acrn_probs is None else acrn_probs[torch.as_tensor(indices)]
                if aanet:
                    out = model(images)
                    emb, mimic_emb = model.ranking_descriptor(out), out["global_bn"]
                    feat = mimic_emb  # the relational loss's input too
                    terms = aanet_losses(out, labels, torch.from_numpy(rows[has]), torch.from_numpy(has),
                                         model.heads.log_sigma, targets.positive_ratio, a.balance, t.label_smoothing)
                    losses = {"aanet": terms.pop("aanet")}
                    logged = {k: v.detach() for k, v in terms.items()}
                else:
                    feat, emb, logits = model(images)
                    mimic_emb, logged = emb, {}
                    losses = identity_losses(feat, logits, labels, id_weight=t.id_weight,
                                             triplet_weight=t.triplet_weight, label_smoothing=t.label_smoothing,
                                             margin=t.margin, ranking=ranking, gamma=c.gamma,
                                             attribute_distance=None if p_attr is None else attribute_distances(p_attr))
                if p_attr is not None:  # the weight layer, from the first batch (it is not connected to the image)
                    losses["attr_weights"] = attribute_weight_triplet_loss(p_attr, labels[:n_id], acrn_layer.weight,
                                                                           c.weight_margin, c.weight_decay)
                if live_teacher is not None:  # every row of the batch, as augmented (attribute-only crops too)
                    both = augmented_targets(live_teacher, images, teacher_mean)
                    mimic = both[:n_id]
                else:
                    mimic = teacher[torch.as_tensor(indices)] if teacher is not None else None
                    both = (torch.cat([mimic, ao_teacher[torch.as_tensor(ao)]])
                            if mimic is not None and ao is not None and ao_teacher is not None else mimic)
                if mimic is not None and distill.feature_weight:  # from the first batch: a target per image
                    losses["mimic"] = distill.feature_weight * feature_distillation_loss(mimic_emb[:len(both)], both)
                if ranking and mimic is not None and distill.relational_weight:
                    losses["relational"] = distill.relational_weight * similarity_distillation_loss(feat[:n_id], mimic)
                if layer is not None and has.any():
                    losses["attr"] = a.weight * attribute_bce(layer(emb)[torch.from_numpy(has)],
                                                              torch.from_numpy(rows[has]),
                                                              targets.positive_ratio, a.balance)
                optimiser_step(optimizer, losses, f"at epoch {epoch + 1} batch {b}")
                if acrn_layer is not None:
                    acrn_layer.project()
                meter.add({**losses, **logged})
                speed = meter.count * len(labels) / max(time.monotonic() - tic, 1e-9)  # every image through the network
                bar.set_postfix({**meter.postfix(), "img/s": f"{speed:.0f}"})
                bar.update(1)
                if checkpoints.batch_done(epoch, b):
                    bar.close()
                    return ckpt_path
            bar.close()
            history.append({"epoch": epoch + 1, **meter.means(), "seconds": time.monotonic() - tic})
            log.info("epoch %d: %s", epoch + 1, history[-1])
            if epoch >= t.epochs:
                if layer is not None:
                    attr_average = accumulate_average(attr_average, layer, averaged)
                average, averaged = accumulate_average(average, model, averaged), averaged + 1
            start_batch = 0
            checkpoints.outer_done(epoch)
    if average is not None:
        model.load_state_dict(average, strict=False)
        if layer is not None:
            layer.load_state_dict(attr_average)
        recompute_batchnorm(model, training_batches(dataset, sampler, augment, cfg, total_epochs, progress))
    final = run_dir / "model.pt"
    meta = {"config": config, "history": history, "averaged_epochs": averaged, "train_images": len(dataset),
            "train_identities": dataset.num_classes, "skipped": [str(e) for e in dataset.skipped]}
    if layer is not None:
        meta["attribute_layer"] = {"names": targets.names, "weights": layer.weight.detach().clone(),
                                   "never_positive_in_training": targets.never_positive}
    if acrn_layer is not None:
        meta["acrn"] = {"names": acrn_names, "weights": acrn_layer.weight.detach().clone(), "gamma": c.gamma}
    model.eval()
    save_model_file(model, spec, final, meta)
    if layer is not None:
        # held-out images only: the attribute-only crops kept out of training, and the validation sets
        # when training on PETA-ReID-val (their identities are not in its train list)
        validation = protocol.test_images() if cfg.protocol.replace("_", "-") == "peta-reid-val" else []
        source = (f"trained with the network on {protocol.name} train + {len(targets.ao_labels)} attribute-only "
                  f"crops; calibrated on {len(calibration)} held-out attribute-only crops"
                  + (f" + the {protocol.name} validation query / gallery images" if validation else ""))
        held = calibration + validation
        finish_head(final, layer.weight.detach().double().numpy(), targets, protocol.image_root, held, source,
                    model_head_path(final), a.balance, progress)
    return final

