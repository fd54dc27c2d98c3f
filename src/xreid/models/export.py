"""Export an xreid model to ONNX or OpenVINO IR, with a sidecar JSON of its preprocessing.

The writers are shared by ``xreid export`` (``xreid.workflows.export``) and the compiled-model cache
(``model_cache``); both check an export against PyTorch with ``embedding_agreement``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from xreid.distance import l2_normalise
from xreid.models.embedders import Embedder

#: file suffix of each export format
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}


def export_onnx(model: torch.nn.Module, size: tuple[int, int], out: Path) -> None:
    """Write ``model`` (eval mode, input N x 3 x H x W, any N) as ONNX at ``out``, atomically."""
    example = torch.rand(1, 3, *size)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_path = Path(tmp) / out.name
        torch.onnx.export(model, (example,), str(tmp_path), input_names=["images"], output_names=["embedding"],
                          dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        tmp_path.replace(out)


def export_openvino(model: torch.nn.Module, size: tuple[int, int], out: Path) -> None:
    """Write ``model`` as OpenVINO IR (``out`` .xml + .bin, fp32 weights); the .xml lands last, so a
    present .xml means a complete pair. The IR is read from the ONNX export by the OpenVINO runtime,
    not made by ``openvino.convert_model``: the converter sends usage telemetry over the network by
    default (forking a process that hung at exit where there is no network), and nothing of xreid's
    may reach the network."""
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        onnx = Path(tmp) / "model.onnx"
        export_onnx(model, size, onnx)
        ov_model = ov.Core().read_model(str(onnx))
        tmp_xml = Path(tmp) / out.name
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=False)
        tmp_xml.with_suffix(".bin").replace(out.with_suffix(".bin"))
        tmp_xml.replace(out)


EXPORTERS = {"onnx": export_onnx, "openvino": export_openvino}


def export_sidecar(model: torch.nn.Module, preprocess_dict: dict, **extra) -> dict:
    """The sidecar JSON of an export: its preprocessing and ModelSpec (plus ``extra``)."""
    return {"format": "xreid-export", "preprocess": preprocess_dict, "spec": model.spec.to_dict(), **extra}


def random_crops(size: tuple[int, int], n: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` random H x W x 3 uint8 crops: the default check images for an export."""
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def embedding_agreement(a: Embedder, b: Embedder, images: np.ndarray) -> dict:
    """Minimum and mean cosine similarity between two embedders' embeddings of the same images."""
    cos = (l2_normalise(a.embed_arrays(images)) * l2_normalise(b.embed_arrays(images))).sum(1)
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
