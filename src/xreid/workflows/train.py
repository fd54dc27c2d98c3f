"""``xreid train`` end to end: the config (with overrides), an ACRN run's attribute table, the
training itself (checkpointed, resumable; SIGTERM saves like Ctrl-C), then the run's fusion and
attribute head when it has them."""

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
    prepare_acrn(cfg, data_root, cache)
    out = train(cfg, data_root, resume=resume, max_batches=max_batches)
    report = TrainReport(out)
    if out.name == "model.pt":  # not after --max-batches
        report.acrn = finish_acrn(cfg, out, data_root, cache)
    if model_head_path(out).is_file():  # a multi-task run: its trained attribute layer
        from xreid.explain.attribute_head import AttributeHead

        report.head_path = model_head_path(out)
        report.head = AttributeHead.load(report.head_path)
    return report
