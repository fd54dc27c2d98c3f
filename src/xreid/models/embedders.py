"""One interface over every model xreid can rank with: its own PyTorch models, ONNX, OpenVINO IR.

``load_embedder(spec)`` picks the backend from the spec: ``default`` (the bundled model), a
``.pt`` checkpoint, a ``.onnx`` file (onnxruntime) or an ``.xml`` OpenVINO IR. Each embedder knows
its preprocessing (input size, channel order, pixel scale, mean/std), read from a sidecar
``<model>.xreid.json`` when xreid exported the model, else the Open Model Zoo convention
(BGR, 0-255, no normalisation), and overridable by the caller.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from xreid.data.dataset import load_resized
from xreid.data.images import ImageError

log = logging.getLogger(__name__)

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "weights" / "default.pt"
BUNDLED_HEAD = BUNDLED_MODEL.with_name("default_head.npz")


@dataclass(frozen=True)
class Preprocess:
    """How an RGB uint8 crop becomes the model's input tensor."""

    height: int = 256
    width: int = 128
    channel_order: str = "rgb"  # or "bgr"
    scale: float = 1.0 / 255.0  # multiply pixel values by this ...
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ... then subtract mean
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # ... and divide by std (in channel_order)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def apply(self, images: np.ndarray) -> np.ndarray:
        """N x H x W x 3 uint8 RGB (already resized) -> N x 3 x H x W float32 model input."""
        x = images[..., ::-1] if self.channel_order == "bgr" else images
        x = x.astype(np.float32) * self.scale
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


#: Open Model Zoo re-id convention: BGR, 0-255, no normalisation.
OMZ_PREPROCESS = Preprocess(channel_order="bgr", scale=1.0)


@dataclass
class EmbedResult:
    """Embeddings of the images that loaded, their indices in the input, and what was skipped."""

    features: np.ndarray
    kept: list[int]
    skipped: list[ImageError]


class Embedder(ABC):
    """A re-id model as a function from person crops to embedding vectors."""

    name: str
    preprocess: Preprocess
    #: Flip test-time augmentation: embed each crop and its mirror image and average the two, so a
    #: crop and its mirror get the same vector (costs a second forward pass).
    flip_average: bool = False

    @abstractmethod
    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Preprocessed N x 3 x H x W float32 batch -> N x D float32 embeddings."""

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Preprocessed batch -> float32 embeddings, averaged with the mirror's if ``flip_average``."""
        features = self.run(inputs).astype(np.float32, copy=False)
        if self.flip_average:
            features = 0.5 * (features + self.run(np.ascontiguousarray(inputs[..., ::-1])))
        return features

    def embed_arrays(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Embed already-resized H x W x 3 uint8 RGB images."""
        batch = np.stack(list(images)) if not isinstance(images, np.ndarray) else images
        return self.embed_inputs(self.preprocess.apply(batch))

    def embed_paths(self, paths: Sequence[str | Path], batch_size: int = 64, progress: bool = False,
                    on_batch: Callable[[int], None] | None = None) -> EmbedResult:
        """Embed image files; unreadable files are skipped and returned in ``skipped``."""
        from tqdm import tqdm

        feats: list[np.ndarray] = []
        kept: list[int] = []
        skipped: list[ImageError] = []
        bar = tqdm(total=len(paths), desc=f"embedding ({self.name})", unit="img", disable=not progress)
        for start in range(0, len(paths), batch_size):
            chunk = [Path(p) for p in paths[start:start + batch_size]]
            images, errors = load_resized(chunk, self.preprocess.size)
            skipped += errors
            good = [i for i, im in enumerate(images) if im is not None]
            if good:
                feats.append(self.embed_arrays([images[i] for i in good]))
                kept += [start + i for i in good]
            bar.update(len(chunk))
            if on_batch:
                on_batch(start + len(chunk))
        bar.close()
        dim = feats[0].shape[1] if feats else 0
        return EmbedResult(np.concatenate(feats) if feats else np.zeros((0, dim), np.float32), kept, skipped)


class TorchEmbedder(Embedder):
    """An xreid ReIDNet in PyTorch (gradients available for visual explanations)."""

    def __init__(self, model: torch.nn.Module, name: str = "torch", threads: int | None = None):
        self.model = model.eval()
        self.name = name
        h, w = model.spec.input_size
        self.preprocess = Preprocess(height=h, width=w)  # normalisation is inside the network
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(inputs)).numpy()


class OnnxEmbedder(Embedder):
    def __init__(self, path: Path, preprocess: Preprocess):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: cannot load ONNX model ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.name, self.preprocess = path.stem, preprocess

    def run(self, inputs: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: inputs})[0]
        return out.reshape(out.shape[0], -1)


class OpenVinoEmbedder(Embedder):
    """OpenVINO IR; the batch dimension is made dynamic so any batch size runs."""

    def __init__(self, path: Path, preprocess: Preprocess):
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # openvino raises RuntimeError subclasses of its own
            raise ValueError(f"{path}: cannot load OpenVINO model ({exc})") from None
        shape = model.inputs[0].get_partial_shape()
        if shape.rank.get_length() == 4:
            shape[0] = -1
            model.reshape({model.inputs[0].any_name: shape})
        self.compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        self.request = self.compiled.create_infer_request()
        self.name, self.preprocess = path.stem, preprocess

    def run(self, inputs: np.ndarray) -> np.ndarray:
        out = self.request.infer({0: inputs})[self.compiled.outputs[0]]
        return np.asarray(out).reshape(inputs.shape[0], -1)


def _model_input_size(path: Path) -> tuple[int, int] | None:
    """Static H, W of a black-box model's image input, if it declares one."""
    try:
        if path.suffix == ".onnx":
            import onnx

            dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
            hw = [d.dim_value for d in dims][2:4]
        else:
            import openvino as ov

            hw = [d.get_length() if d.is_static else 0 for d in ov.Core().read_model(str(path)).inputs[0].get_partial_shape()][2:4]
        return (hw[0], hw[1]) if len(hw) == 2 and all(hw) else None
    except Exception:  # noqa: BLE001 - an unreadable model fails later with a clear message
        return None


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".xreid.json")


def black_box_preprocess(path: Path, overrides: dict | None = None) -> Preprocess:
    """Preprocessing of an ONNX / OpenVINO model: sidecar JSON, else OMZ defaults at the model's size."""
    side = sidecar_path(path)
    if side.is_file():
        pre = Preprocess.from_dict(json.loads(side.read_text())["preprocess"])
    else:
        pre = OMZ_PREPROCESS
        size = _model_input_size(path)
        if size:
            pre = replace(pre, height=size[0], width=size[1])
    return replace(pre, **{k: v for k, v in (overrides or {}).items() if v is not None})


def load_checkpoint_model(path: str | Path):
    """Rebuild an xreid ReIDNet from a training checkpoint or a packaged model file."""
    from xreid.models.reid_net import ModelSpec, build_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"{path}: not a readable xreid model ({exc})") from None
    if not isinstance(ckpt, dict) or "spec" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not an xreid model file (no 'spec'/'state_dict')")
    spec = ModelSpec.from_dict(ckpt["spec"])
    state = {k: v.float() for k, v in ckpt["state_dict"].items() if not k.startswith("classifier.")}
    spec = replace(spec, num_classes=0)
    model = build_model(spec, pretrained=False)
    model.load_state_dict(state)
    return model.eval(), ckpt


def load_embedder(spec: str | Path, flip_average: bool = False, **preprocess_overrides) -> Embedder:
    """The embedder for ``spec``: 'default', a .pt checkpoint, a .onnx or an OpenVINO .xml file.

    ``flip_average`` turns on flip test-time augmentation (see ``Embedder.flip_average``).
    """
    embedder = _load_backend(spec, **preprocess_overrides)
    embedder.flip_average = flip_average
    return embedder


def _load_backend(spec: str | Path, **preprocess_overrides) -> Embedder:
    spec_str = str(spec)
    if spec_str == "default":
        if not BUNDLED_MODEL.is_file():
            raise FileNotFoundError(f"{BUNDLED_MODEL}: the bundled model is missing from this install")
        path = BUNDLED_MODEL
    else:
        path = Path(spec_str).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: model not found (use 'default', a .pt, .onnx or OpenVINO .xml file)")
    if path.suffix == ".onnx":
        return OnnxEmbedder(path, black_box_preprocess(path, preprocess_overrides))
    if path.suffix == ".xml":
        return OpenVinoEmbedder(path, black_box_preprocess(path, preprocess_overrides))
    if path.suffix in (".pt", ".pth"):
        model, _ = load_checkpoint_model(path)
        return TorchEmbedder(model, name="default" if spec_str == "default" else path.stem)
    raise ValueError(f"{path}: unknown model format '{path.suffix}' (expected .pt, .onnx or .xml)")
