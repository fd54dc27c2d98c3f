"""Export an xreid model to ONNX or OpenVINO IR, with a sidecar JSON of its preprocessing."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from xreid.io import write_json
from xreid.models.embedders import TorchEmbedder, load_embedder, sidecar_path


def _export_onnx(model: torch.nn.Module, size: tuple[int, int], out: Path) -> None:
    example = torch.rand(1, 3, *size)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_path = Path(tmp) / out.name
        torch.onnx.export(model, (example,), str(tmp_path), input_names=["images"], output_names=["embedding"],
                          dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        tmp_path.replace(out)


def _export_openvino(model: torch.nn.Module, size: tuple[int, int], out: Path) -> None:
    import openvino as ov

    ov_model = ov.convert_model(model, example_input=torch.rand(1, 3, *size),
                                input=[(-1, 3, size[0], size[1])])
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_xml = Path(tmp) / out.name
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=False)
        tmp_xml.with_suffix(".bin").replace(out.with_suffix(".bin"))
        tmp_xml.replace(out)


def export_model(model_spec: str, fmt: str, out: str | Path, verify_images: np.ndarray | None = None) -> dict:
    """Export ``model_spec`` (an xreid model) to ``fmt`` ('onnx' or 'openvino') at ``out``.

    Returns a report with the minimum cosine similarity between PyTorch and exported embeddings
    on ``verify_images`` (random crops when None).
    """
    out = Path(out)
    source = load_embedder(model_spec)
    if not isinstance(source, TorchEmbedder):
        raise ValueError(f"{model_spec}: only xreid (PyTorch) models can be exported; this one is already {source.name}")
    fmt = fmt.lower()
    suffix = {"onnx": ".onnx", "openvino": ".xml"}.get(fmt)
    if suffix is None:
        raise ValueError(f"unknown export format {fmt!r}; choose onnx or openvino")
    if out.suffix != suffix:
        out = out.with_suffix(suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    model, size = source.model.eval(), source.preprocess.size
    (_export_onnx if fmt == "onnx" else _export_openvino)(model, size, out)
    write_json(sidecar_path(out), {"format": "xreid-export", "preprocess": source.preprocess.to_dict(),
                                   "spec": model.spec.to_dict()})
    exported = load_embedder(out)
    if verify_images is None:
        verify_images = np.random.default_rng(0).integers(0, 256, (8, *size, 3), dtype=np.uint8)
    a, b = source.embed_arrays(verify_images), exported.embed_arrays(verify_images)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(1e-12)
    return {"path": str(out), "format": fmt, "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
