"""One interface over every model xreid can rank with: its own PyTorch models, ONNX, OpenVINO IR.

The embedder classes: xreid models in PyTorch (``TorchEmbedder``) or from a compiled copy
(``CompiledEmbedder``), ``.onnx`` in ONNX Runtime, ``.xml`` in OpenVINO (at f32 unless bf16 is asked
for). ``xreid.models.loading.load_embedder`` picks one for a model. Every embedder has an
``identity()``: the model's content fingerprint, backend, preprocessing, flip and precision. Each
embedder knows
its preprocessing (input size, channel order, pixel scale, mean/std), read from a sidecar
``<model>.xreid.json`` when xreid exported the model, else the Open Model Zoo convention
(BGR, 0-255, no normalisation), and overridable by the caller.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from xreid.data.dataset import load_resized
from xreid.data.images import ImageError
from xreid.models.camera_norm import ROUTING, CameraRouter, is_appearance_group, with_statistics
from xreid.models.checkpoint import load_model_file

log = logging.getLogger(__name__)


def framework_message(exc: Exception) -> str:
    """The one line of a runtime's error that says what is wrong (ONNX Runtime and OpenVINO wrap it
    in source locations and check names): the last non-blank line of the message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and ln.strip() not in (")", "]")]
    return lines[-1] if lines else type(exc).__name__

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
    #: First 16 hex digits of the sha256 of the file(s) the model was loaded from (None: built in memory).
    fingerprint: str | None = None
    #: What runs the forward pass: 'torch', 'onnx' (ONNX Runtime), 'openvino', or 'custom'.
    backend: str = "custom"
    #: The inference precision hint ('f32', 'bf16') of backends that have one (OpenVINO); None elsewhere.
    precision: str | None = None

    def identity(self) -> dict:
        """Everything that decides the embeddings, as plain JSON data: two sets of embeddings can be
        compared (or one resumed) only if their identities agree."""
        return json.loads(json.dumps({"model": self.name, "fingerprint": self.fingerprint, "backend": self.backend,
                                      "preprocess": self.preprocess.to_dict(), "flip": bool(self.flip_average),
                                      "precision": self.precision}))

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

    def for_camera(self, camera: str | None) -> "Embedder":
        """The embedder for crops of ``camera``: a variant with that camera's normalisation statistics
        when the model holds some (``xreid.models.camera_norm``), else this one."""
        return self

    def camera_names(self) -> tuple[str, ...]:
        """The cameras this model holds normalisation statistics for (none: every crop alike)."""
        return ()

    def embed_paths(self, paths: Sequence[str | Path], batch_size: int = 64, progress: bool = False,
                    on_batch: Callable[[int], None] | None = None,
                    cameras: Sequence[str | None] | None = None) -> EmbedResult:
        """Embed image files; unreadable files are skipped and returned in ``skipped``. ``cameras``
        (one per path, None = unknown) routes each crop through ``for_camera``."""
        from tqdm import tqdm

        if cameras is not None and self.camera_names():
            return self._embed_by_camera(paths, cameras, batch_size, progress, on_batch)

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

    def _embed_by_camera(self, paths: Sequence[str | Path], cameras: Sequence[str | None], batch_size: int,
                         progress: bool, on_batch: Callable[[int], None] | None = None) -> EmbedResult:
        """``embed_paths`` with each camera's crops embedded by ``for_camera(camera)``, in input order."""
        if len(cameras) != len(paths):
            raise ValueError(f"{len(paths)} images but {len(cameras)} cameras")
        known = set(self.camera_names())
        groups: dict[str | None, list[int]] = {}
        for i, cam in enumerate(cameras):
            groups.setdefault(cam if cam in known else None, []).append(i)
        rows: dict[int, np.ndarray] = {}
        skipped: list[ImageError] = []
        done = 0
        for cam, idx in groups.items():
            res = self.for_camera(cam).embed_paths([paths[i] for i in idx], batch_size, progress)
            rows.update({idx[k]: res.features[r] for r, k in enumerate(res.kept)})
            skipped += res.skipped
            done += len(idx)
            if on_batch:
                on_batch(done)
        kept = sorted(rows)
        feats = np.stack([rows[i] for i in kept]) if kept else np.zeros((0, 0), np.float32)
        return EmbedResult(feats, kept, skipped)


def camera_variant(embedder: Embedder, camera: str | None) -> Embedder:
    """``embedder`` as it embeds crops of ``camera`` (None or '': of unknown camera); a ValueError naming
    the cameras the model knows when it holds no statistics or mean for ``camera``."""
    if not camera:
        return embedder
    known = embedder.camera_names()
    if camera not in known:
        shown = camera if len(camera) <= 40 else camera[:40] + "..."
        raise ValueError(f"query camera {shown!r}: " + (f"the model knows {', '.join(known)}" if known else
                         "the model holds no per-camera statistics or means (leave the camera out)"))
    return embedder.for_camera(camera)


class TorchEmbedder(Embedder):
    """An xreid ReIDNet: ``model`` is its PyTorch module (gradients, for visual explanations), which
    here also runs the forward pass."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, name: str = "torch", threads: int | None = None):
        self._model = model.eval()
        self.name = name
        h, w = model.spec.input_size
        self.preprocess = Preprocess(height=h, width=w)  # normalisation is inside the network
        if threads:
            torch.set_num_threads(threads)

    #: per-camera normalisation statistics read from the model file (``xreid.models.camera_norm``)
    camera_norms: Mapping[str, Mapping[str, torch.Tensor]] = MappingProxyType({})

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @torch.no_grad()
    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(inputs)).numpy()

    def camera_names(self) -> tuple[str, ...]:
        return tuple(sorted(c for c in self.camera_norms if not is_appearance_group(c)))

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """As ``Embedder.embed_inputs``; a model with per-camera statistics embeds each crop (whose
        camera this call does not know) with those of the camera it looks most like
        (``camera_norm.nearest_cameras``)."""
        if not self.camera_norms or len(inputs) == 0:
            return super().embed_inputs(inputs)
        cams = np.asarray(self._router()(torch.from_numpy(inputs)))
        rows = {cam: np.flatnonzero(cams == cam) for cam in dict.fromkeys(cams.tolist())}
        parts = {cam: self.for_camera(cam).embed_inputs(inputs[r]) for cam, r in rows.items()}
        out = np.empty((len(inputs), next(iter(parts.values())).shape[1]), np.float32)
        for cam, r in rows.items():
            out[r] = parts[cam]
        return out

    def identity(self) -> dict:
        """``Embedder.identity``; a model with per-camera statistics embeds in PyTorch (each camera's
        statistics in a copy of the network, whatever backend was asked for) and names the rule that
        picks statistics for a crop of unknown camera (``camera_norm.ROUTING``)."""
        out = super().identity()
        if self.camera_norms:
            out.update(backend="torch", precision=None, camera_routing=ROUTING)
        return out

    def _router(self):
        """The camera router of this network (made once, under the variants' lock)."""
        with self._variants_lock():
            if "_camera_router" not in self.__dict__:
                self.__dict__["_camera_router"] = CameraRouter(self.model, self.camera_norms)
            return self.__dict__["_camera_router"]

    def _variants_lock(self):
        return self.__dict__.setdefault("_camera_lock", threading.Lock())

    def for_camera(self, camera: str | None) -> Embedder:
        """A PyTorch embedder of the network with ``camera``'s statistics (made once per camera)."""
        if camera not in self.camera_norms:
            return self
        with self._variants_lock():
            return self._variant(camera)

    def _variant(self, camera: str) -> Embedder:
        variants = self.__dict__.setdefault("_camera_variants", {})
        if camera not in variants:
            variant = TorchEmbedder(with_statistics(self.model, self.camera_norms[camera]), name=f"{self.name}@{camera}")
            variant.fingerprint, variant.flip_average = self.fingerprint, self.flip_average
            variants[camera] = variant
        return variants[camera]


class CompiledEmbedder(TorchEmbedder):
    """An xreid model whose forward pass runs in a compiled copy (ONNX Runtime or OpenVINO, see
    ``model_cache``); ``model``, the PyTorch module that Grad-CAM needs, is loaded from the source
    file on first use, so embedding alone never builds it -- except with per-camera statistics, which
    embed in PyTorch (``TorchEmbedder.identity`` says so)."""

    def __init__(self, runtime: Embedder, source: Path, name: str, model: torch.nn.Module | None = None):
        self.runtime, self.source, self.name, self._model = runtime, source, name, model
        self.preprocess, self.backend, self.precision = runtime.preprocess, runtime.backend, runtime.precision

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = load_model_file(self.source)[0]
        return self._model

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self.runtime.run(inputs)


#: threads a compiled model runtime runs on, when set (a Ray actor sets it to the CPUs Ray gave it)
THREADS_ENV = "XREID_THREADS"


def runtime_threads() -> int | None:
    """Threads for ONNX Runtime / OpenVINO: ``$XREID_THREADS`` when set, else None (the runtime's own
    choice: every core). Two 1-CPU Ray actors on a 2-core node that each take every core fight over
    them; ``xreid.workflows.loading.claim_ray_cpus`` sets it in a Ray worker."""
    value = os.environ.get(THREADS_ENV)
    return max(1, int(value)) if value else None


class OnnxEmbedder(Embedder):
    backend = "onnx"

    def __init__(self, path: Path, preprocess: Preprocess):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        threads = runtime_threads()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        if threads:  # a CPU allotment: idle threads sleep rather than spin on a core others need
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: cannot load ONNX model ({framework_message(exc)})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.name, self.preprocess = path.stem, preprocess

    def run(self, inputs: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: inputs})[0]
        return out.reshape(out.shape[0], -1)


class OpenVinoEmbedder(Embedder):
    """OpenVINO IR (or ONNX read by OpenVINO); the batch dimension is made dynamic so any batch size
    runs. ``precision`` sets INFERENCE_PRECISION_HINT explicitly: the CPU plugin otherwise picks bf16
    on CPUs with AVX512-BF16 (or AMX), which moves embeddings (docs/RESULTS.md#openvino-precision-f32-and-bf16)."""

    backend = "openvino"

    def __init__(self, path: Path, preprocess: Preprocess, precision: str = "f32"):
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # openvino raises RuntimeError subclasses of its own
            raise ValueError(f"{path}: cannot load OpenVINO model ({framework_message(exc)})") from None
        shape = model.inputs[0].get_partial_shape()
        if shape.rank.get_length() == 4:
            shape[0] = -1
            model.reshape({model.inputs[0].any_name: shape})
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if runtime_threads():
            config["INFERENCE_NUM_THREADS"] = runtime_threads()
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.name, self.preprocess, self.precision = path.stem, preprocess, precision

    def run(self, inputs: np.ndarray) -> np.ndarray:
        out = self.request.infer({0: inputs})[self.compiled.outputs[0]]
        return np.asarray(out).reshape(inputs.shape[0], -1)


def runtime_embedder(path: Path, preprocess: Preprocess, backend: str, precision: str | None) -> Embedder:
    """The ONNX Runtime ('onnx') or OpenVINO ('openvino', at ``precision``, default f32) embedder of
    the model file at ``path``."""
    if backend == "onnx":
        return OnnxEmbedder(path, preprocess)
    return OpenVinoEmbedder(path, preprocess, precision or "f32")


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
