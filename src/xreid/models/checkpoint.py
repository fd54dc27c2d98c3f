"""The one xreid checkpoint format: slim model files and training checkpoints, saved and loaded side by side.

Both are torch zip archives that hold only tensors and plain data (dict, list, tuple, str, int,
float, bool, None), and both are read with ``torch.load(..., weights_only=True)``. A pickle can name
any callable, so loading an untrusted ``.pt`` the ordinary way can run code; the weights-only
unpickler refuses everything but tensors and containers, so opening a model file never runs code
from it. Saving converts what has a plain form (paths, numpy numbers) and refuses the rest, so every
file xreid writes loads weights-only.

- model file (``format: xreid-model``): fp16 weights without the ID classifier, the ModelSpec and a
  ``meta`` dict (training config, history); what ``xreid train`` leaves as ``model.pt``, shareable.
- training checkpoint (``format: xreid-checkpoint``): full weights, optimizer state, position in the
  run, loss history, the weight-averaging state and the config; what ``--resume`` continues from.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreid.io import save_torch
from xreid.models.networks import build_model
from xreid.models.reid_net import BackboneNet, ModelSpec, is_identity_classifier

MODEL_FORMAT = "xreid-model"
CHECKPOINT_FORMAT = "xreid-checkpoint"
#: What resume needs; ``average``/``averaged`` (weight averaging) and ``config`` are optional (older runs lack them).
CHECKPOINT_KEYS = ("spec", "state_dict", "optimizer", "epoch", "batch", "history")


def plain_data(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` as tensors and plain data only, the types weights-only loading accepts: paths become
    strings, numpy scalars Python numbers, numpy arrays tensors. Anything else is a TypeError naming
    the key it sits under (``where``), raised at save time rather than at the next load."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return {k: plain_data(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [plain_data(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"{where}: a {type(obj).__name__} cannot go into an xreid checkpoint "
                    f"(only tensors and plain data load without running code)")


def _unsafe_reason(exc: Exception) -> str:
    """What torch's weights-only unpickler refused, in a few words (e.g. the callable it would import)."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it calls {found.group(1)}"
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    return found.group(1).strip() if found else text.strip().splitlines()[0]


def load_safely(path: str | Path) -> Any:
    """What a torch file holds, read weights-only; a ValueError naming the file when it is not a
    PyTorch archive or holds anything but tensors and plain data (loading it would run code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable xreid model file (not a PyTorch archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises UnpicklingError, RuntimeError, ...
        raise ValueError(f"{path}: not a safe xreid model file: it holds more than tensors and plain data "
                         f"({_unsafe_reason(exc)}), and xreid never runs code from a model file") from None


def save_model_file(model: torch.nn.Module, spec: ModelSpec, path: str | Path, meta: dict,
                    camera_norms: dict | None = None) -> None:
    """Write the slim, shareable model (atomically): fp16 weights without the ID classifier, its spec
    with no classes, and ``meta``; ``camera_norms``, per-camera normalisation statistics
    (``xreid.models.camera_norm``), in float32 when given."""
    state = {k: (v.half() if v.is_floating_point() else v)
             for k, v in model.state_dict().items() if not is_identity_classifier(k)}
    content = {"format": MODEL_FORMAT, "spec": replace(spec, num_classes=0).to_dict(), "state_dict": state,
               "meta": plain_data(meta, "meta")}
    if camera_norms:
        from xreid.models.camera_norm import CAMERA_NORMS_KEY

        content[CAMERA_NORMS_KEY] = {str(c): {k: v.float() for k, v in s.items()} for c, s in camera_norms.items()}
    save_torch(content, path)


def read_camera_norms(path: str | Path) -> dict:
    """The per-camera normalisation statistics a model file holds ({} when none), read without
    loading its weights (memory-mapped, weights-only)."""
    from xreid.models.camera_norm import CAMERA_NORMS_KEY, check_norms

    try:
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - as load_safely: name the file, never run its code
        raise ValueError(f"{path}: not a readable xreid model file ({_unsafe_reason(exc)})") from None
    norms = content.get(CAMERA_NORMS_KEY) if isinstance(content, dict) else None
    return {} if norms is None else check_norms(norms, str(path))


def load_model_file(path: str | Path) -> tuple[BackboneNet, dict]:
    """The network (eval mode, float32, no classifier) of a model file or a training checkpoint, and
    the file's contents."""
    path = Path(path)
    ckpt = load_safely(path)
    if not isinstance(ckpt, dict) or "spec" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not an xreid model file (no 'spec'/'state_dict')")
    spec = replace(ModelSpec.from_dict(ckpt["spec"]), num_classes=0)
    state = {k: v.float() for k, v in ckpt["state_dict"].items() if not is_identity_classifier(k)}
    model = build_model(spec, pretrained=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the model spec it declares ({exc})") from None
    return model.eval(), ckpt


def save_training_checkpoint(path: str | Path, *, spec: ModelSpec, model: torch.nn.Module,
                             optimizer: torch.optim.Optimizer, epoch: int, batch: int, history: list[dict],
                             average: dict[str, torch.Tensor] | None, averaged: int, config: dict,
                             extra: dict | None = None) -> None:
    """Write everything an exact resume needs (atomically): the next batch to run is ``batch`` of
    ``epoch``; ``average``/``averaged`` are the weight-averaging state; ``extra`` holds further
    trained state (e.g. the multi-task attribute layer) under keys of its own."""
    save_torch(plain_data({**(extra or {}), "format": CHECKPOINT_FORMAT, "spec": spec.to_dict(),
                           "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                           "batch": batch, "history": history, "average": average, "averaged": averaged,
                           "config": config}, str(path)), path)


def load_training_checkpoint(path: str | Path) -> dict:
    """A training checkpoint's contents, read weights-only and checked for every key resume needs."""
    ckpt = load_safely(path)
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not an xreid training checkpoint (missing {', '.join(missing)})")
    return ckpt
