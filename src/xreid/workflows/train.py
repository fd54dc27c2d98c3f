"""``xreid train`` end to end: the config (with overrides), an ACRN run's attribute table, the
training itself (checkpointed, resumable; SIGTERM saves like Ctrl-C), then the run's fusion, its
compact projection and attribute head when it has them."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainReport:
    model: Path  # the model file written (model.pt, or a checkpoint after max_batches)
    acrn: tuple[Path, dict] | None = None  # an ACRN run's fusion file and validation mAP by mixing
    head_path: Path | None = None  # a multi-task run's attribute head
    head: object | None = None
    projection: dict | None = None  # a compact run's fitted projection (``xreid.training.projection``)


def train_model(config: Path, data_root: Path, resume: bool = False, max_batches: int | None = None,
                overrides: list[str] | None = None, cache: Path | None = None) -> TrainReport:
    """Train the run ``config`` describes (``overrides``: KEY.PATH=VALUE); ``cache``: the embedding
    cache of an ACRN run's attribute classifier (default: DATA_ROOT/embeddings)."""
    from xreid.models.loading import model_head_path
    from xreid.training.config import load_config
    from xreid.training.trainer import check_new_run, train
    from xreid.workflows.acrn import finish_acrn, prepare_acrn

    def stop(signum, frame):  # SIGTERM (kill, job schedulers) saves progress like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    cache = cache or data_root / "embeddings"
    cfg = load_config(config, overrides)
    check_new_run(cfg, resume)  # before any slow preparation
    check_compact(cfg)
    prepare_acrn(cfg, data_root, cache)
    out = train(cfg, data_root, resume=resume, max_batches=max_batches)
    report = TrainReport(out)
    if out.name == "model.pt":  # not after --max-batches
        report.acrn = finish_acrn(cfg, out, data_root, cache)
        report.projection = finish_compact(cfg, out, data_root)
    if model_head_path(out).is_file():  # a multi-task run: its trained attribute layer
        from xreid.explain.attribute_head import AttributeHead

        report.head_path = model_head_path(out)
        report.head = AttributeHead.load(report.head_path)
    return report


def check_compact(cfg) -> None:
    """Refuse, before training, a ``compact`` section the run cannot apply."""
    from xreid.models.aanet import DESCRIPTORS, check_branch_weight

    c = cfg.compact
    if not c.dim:
        return
    if cfg.model.head != "aanet":
        raise ValueError(f"{cfg.name}: compact.dim projects an AANet's descriptor; model.head is {cfg.model.head!r}")
    if c.descriptor not in DESCRIPTORS:
        raise ValueError(f"{cfg.name}: compact.descriptor {c.descriptor!r}; choose from {', '.join(DESCRIPTORS)}")
    check_branch_weight(c.descriptor, c.branch_weight)
    if c.dim < 0 or c.fit_crops < c.dim:
        raise ValueError(f"{cfg.name}: compact.dim {c.dim} needs at least as many compact.fit_crops ({c.fit_crops})")
    if not c.offset >= 0:
        raise ValueError(f"{cfg.name}: compact.offset {c.offset}: must be 0 (none) or more")


def finish_compact(cfg, model: Path, data_root: Path) -> dict | None:
    """A run with a ``compact`` section: ``model`` (the trained network) is rewritten ranking with the
    projected descriptor (``xreid.training.projection``), the unprojected network kept beside it as
    ``model_full.pt``, and its attribute head refitted on the new embedding (``fit_head``; the
    attribute directions, when the section asks for them, come from a head fitted on the same crops)."""
    import shutil

    from xreid.data.protocol import load_protocol, without_subsets
    from xreid.models.loading import load_embedder, model_head_path
    from xreid.training.multitask import attribute_names
    from xreid.training.projection import project_model
    from xreid.workflows.attributes import calibration_split, fit_head

    c = cfg.compact
    if not c.dim:
        return None
    protocol = load_protocol(cfg.protocol, data_root)
    records = protocol.train
    if cfg.train.exclude_subsets:
        records = without_subsets(records, cfg.train.exclude_subsets, f"{cfg.name}: train.exclude_subsets")
    names = attribute_names(cfg.attributes.names, where=f"{cfg.name}: attributes.names")  # the trained head's
    full = model.with_name("model_full.pt")
    shutil.copyfile(model, full)  # the trainer has just written them; a rerun rewrites both
    if model_head_path(model).is_file():  # a multi-task run's head: it reads the unprojected embedding
        shutil.copyfile(model_head_path(model), model_head_path(full))
    labelled = calibration_split(data_root, cfg.protocol)[0] if c.attribute_directions else []
    if labelled and cfg.train.exclude_subsets:  # the projection never sees the cameras training left out
        labelled = without_subsets(labelled, cfg.train.exclude_subsets, f"{cfg.name}: train.exclude_subsets")
    fitted = project_model(full, records, protocol.image_root, model, dims=c.dim, descriptor=c.descriptor,
                           branch_weight=c.branch_weight, fit_crops=c.fit_crops, seed=cfg.seed,
                           attribute_records=labelled, attribute_names=names, offset=c.offset)
    head = fit_head(load_embedder(str(model)), data_root, cfg.protocol, model_name=str(model), names=names)
    head.save(model_head_path(model))
    return fitted
