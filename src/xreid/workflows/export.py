"""``xreid export``: an xreid model written as ONNX or OpenVINO IR, with its preprocessing sidecar,
and checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xreid.io import write_json
from xreid.models.embedders import sidecar_path
from xreid.models.export import EXPORTERS, SUFFIXES, embedding_agreement, export_sidecar, random_crops
from xreid.models.loading import load_embedder


def export_model(model_spec: str, fmt: str, out: str | Path, verify_images: np.ndarray | None = None) -> dict:
    """Export ``model_spec`` (an xreid model) to ``fmt`` ('onnx' or 'openvino') at ``out``.

    Returns a report with the minimum cosine similarity between PyTorch and exported embeddings
    on ``verify_images`` (random crops when None).
    """
    out = Path(out)
    fmt = fmt.lower()
    suffix = SUFFIXES.get(fmt)
    if suffix is None:
        raise ValueError(f"unknown export format {fmt!r}; choose onnx or openvino")
    source = load_embedder(model_spec, backend="torch")  # a ValueError for anything but an xreid model
    if out.suffix != suffix:
        out = out.with_suffix(suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    model, size = source.model.eval(), source.preprocess.size
    EXPORTERS[fmt](model, size, out)
    write_json(sidecar_path(out), export_sidecar(model, source.preprocess.to_dict()))
    exported = load_embedder(out)
    images = random_crops(size) if verify_images is None else verify_images
    return {"path": str(out), "format": fmt, **embedding_agreement(source, exported, images)}
