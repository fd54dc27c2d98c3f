"""Which embedder runs a model: ``load_embedder(spec)`` resolves 'default' (the bundled model), a
``.pt`` checkpoint, a ``.onnx`` file, an OpenVINO ``.xml`` or a camera-centred ``.xcam`` (a model
with each camera's mean embedding, ``camera_centring``), chooses the backend, and hands back an
``Embedder`` (``xreid.models.embedders``) that knows its preprocessing, fingerprint and identity.

xreid models run from a cached compiled copy (``model_cache``) unless PyTorch is asked for; this
module sits above the embedder classes, the exporters and the cache, so none of them imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from xreid.binding import BUNDLED_NAME
from xreid.models.checkpoint import load_model_file
from xreid.models.embedders import CompiledEmbedder, Embedder, TorchEmbedder, black_box_preprocess, runtime_embedder
from xreid.models.fingerprint import fingerprint

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "weights" / "default.pt"


def model_head_path(model_file: str | Path) -> Path:
    """Where an xreid model file's own attribute head lives: beside it, ``NAME_head.npz`` (the bundled
    model's, and the one a multi-task `xreid train` run writes next to its ``model.pt``)."""
    model_file = Path(model_file)
    return model_file.with_name(f"{model_file.stem}_head.npz")


BUNDLED_HEAD = model_head_path(BUNDLED_MODEL)

BACKENDS = ("auto", "torch", "onnx", "openvino")
PRECISIONS = ("f32", "bf16")
#: model formats added beside the built-in ones, by file suffix: ``load(path, preprocess_overrides)
#: -> Embedder`` (run by its own runtime; the backend options do not apply). A new format is one
#: module that calls ``register_format``, plus its line in ``FORMAT_MODULES``.
MODEL_FORMATS: dict[str, Callable[[Path, dict], Embedder]] = {}
#: the modules that register model formats (imported when a model is first loaded)
FORMAT_MODULES: tuple[str, ...] = ()


def register_format(suffix: str, load: Callable[[Path, dict], Embedder]) -> Callable:
    """Load model files ending in ``suffix`` (e.g. ``.tflite``) with ``load``."""
    if suffix in (".pt", ".pth", ".onnx", ".xml"):
        raise ValueError(f"model format {suffix!r} is built in")
    MODEL_FORMATS[suffix] = load
    return load


def _formats() -> dict[str, Callable[[Path, dict], Embedder]]:
    import importlib

    for module in FORMAT_MODULES:
        importlib.import_module(module)
    return MODEL_FORMATS


def resolve_model_path(spec: str | Path) -> Path:
    """The model file of ``spec``: the bundled model for 'default', else the path (which must exist)."""
    if str(spec) == BUNDLED_NAME:
        if not BUNDLED_MODEL.is_file():
            raise FileNotFoundError(f"{BUNDLED_MODEL}: the bundled model is missing from this install")
        return BUNDLED_MODEL
    from xreid.models.zoo import KNOWN_MODELS, resolve_known_model

    if str(spec) in KNOWN_MODELS:  # a short name fetched with `xreid models get`
        return resolve_known_model(str(spec), kind="reid")
    path = Path(str(spec)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: model not found (use 'default', a .pt, .onnx, OpenVINO .xml or camera-centred "
                                f".xcam file, or a model name fetched with `xreid models get`)")
    return path


def portable_spec(spec: str | Path) -> str:
    """``spec`` as a file made elsewhere can store it: 'default' and known model names as they are,
    each file path absolute (a comma-separated list part by part)."""
    from xreid.models.zoo import KNOWN_MODELS

    parts = [s.strip() for s in str(spec).split(",")]
    return ",".join(p if p == BUNDLED_NAME or p in KNOWN_MODELS else str(Path(p).expanduser().resolve())
                    for p in parts)


def choose_backend(path: Path, backend: str, precision: str | None) -> str:
    """The backend that runs the model at ``path``. 'auto': ``$XREID_BACKEND`` when set (a way to
    force one everywhere without changing a command), else ONNX Runtime for xreid models and .onnx
    files (the fastest on CPU), OpenVINO for .xml, and OpenVINO whenever bf16 is asked for (the only
    backend with a precision setting). Impossible combinations are ValueErrors that say why."""
    if backend == "auto" and os.environ.get("XREID_BACKEND"):
        backend = os.environ["XREID_BACKEND"]
        if backend not in BACKENDS:
            raise ValueError(f"XREID_BACKEND={backend!r} is not a backend; choose from {', '.join(BACKENDS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if precision not in (None, *PRECISIONS):
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    kind = {".pt": "xreid", ".pth": "xreid", ".onnx": "onnx", ".xml": "openvino"}.get(path.suffix)
    if kind is None:
        raise ValueError(f"{path}: unknown model format '{path.suffix}' (expected .pt, .onnx or .xml)")
    if backend == "auto":
        backend = "openvino" if precision == "bf16" or kind == "openvino" else "onnx"
    if precision == "bf16" and backend != "openvino":
        raise ValueError(f"precision bf16 needs the OpenVINO backend (ONNX Runtime and PyTorch run f32), "
                         f"not backend {backend!r}")
    if backend == "torch" and kind != "xreid":
        raise ValueError(f"{path}: only xreid models (.pt) run in PyTorch; this is a black-box {kind} model")
    if backend == "onnx" and kind == "openvino":
        raise ValueError(f"{path}: an OpenVINO IR runs only in OpenVINO (backend 'openvino' or 'auto')")
    return backend


def load_embedder(spec: str | Path, flip_average: bool = False, backend: str = "auto", precision: str | None = None,
                  **preprocess_overrides) -> Embedder:
    """The embedder for ``spec``: 'default', a .pt checkpoint, a .onnx or an OpenVINO .xml file, or
    several of them separated by commas ('a.xml,b.xml': their concatenation, ``ConcatEmbedder``;
    every option applies to each part).

    ``backend`` ('auto', 'torch', 'onnx', 'openvino', see ``choose_backend``): xreid models run in
    a cached compiled copy under 'auto' (``model_cache``), in PyTorch under 'torch'; every xreid
    embedder still has ``.model`` for Grad-CAM. ``precision`` ('f32', 'bf16'; None = f32) is
    OpenVINO's inference precision. ``flip_average`` turns on flip test-time augmentation (see
    ``Embedder.flip_average``). ``preprocess_overrides`` apply to black-box models.
    """
    specs = [s.strip() for s in str(spec).split(",")]
    if len(specs) > 1:
        from xreid.models.concat import ConcatEmbedder

        if not all(specs):
            raise ValueError(f"model list {str(spec)!r}: an empty name between commas")
        return ConcatEmbedder([load_embedder(s, flip_average, backend, precision, **preprocess_overrides)
                               for s in specs])
    path = resolve_model_path(spec)
    if path.suffix == ".xcam":
        embedder = _centred_embedder(path, flip_average, backend, precision, preprocess_overrides)
        embedder.fingerprint = fingerprint(path)
        return embedder
    added = _formats().get(path.suffix)
    chosen = "own" if added is not None else choose_backend(path, backend, precision)
    fp = fingerprint(path)
    if added is not None:
        embedder = added(path, preprocess_overrides)
    elif path.suffix in (".pt", ".pth"):
        embedder = _xreid_embedder(path, BUNDLED_NAME if str(spec) == BUNDLED_NAME else path.stem, fp, chosen, precision)
    else:
        embedder = runtime_embedder(path, black_box_preprocess(path, preprocess_overrides), chosen, precision)
    embedder.fingerprint, embedder.flip_average = fp, flip_average
    return embedder


def _xreid_embedder(path: Path, name: str, fp: str, backend: str, precision: str | None) -> TorchEmbedder:
    """The xreid model in ``path`` (fingerprint ``fp``) run by ``backend``; in PyTorch when that is
    asked for or no compiled copy can be had (the reason is logged)."""
    from xreid.models.checkpoint import read_camera_norms

    model, embedder = None, None
    if backend != "torch":
        from xreid.models.model_cache import compiled_runtime  # loads onnx / openvino: only when needed

        runtime, model = compiled_runtime(path, fp, backend, precision)
        if runtime is not None:
            embedder = CompiledEmbedder(runtime, path, name, model)
    if embedder is None:
        embedder = TorchEmbedder(model if model is not None else load_model_file(path)[0], name=name)
    embedder.camera_norms = read_camera_norms(path)
    return embedder


def _centred_embedder(path: Path, flip_average: bool, backend: str, precision: str | None, overrides: dict) -> Embedder:
    """The camera-centred model in ``path``: its base model loaded with these options, checked against
    the fingerprint the file was made with, and wrapped (``CameraCentredEmbedder``)."""
    from xreid.binding import check_binding
    from xreid.models.camera_centring import CameraCentredEmbedder, CameraCentring

    centring = CameraCentring.load(path)
    try:
        base = load_embedder(centring.base, flip_average, backend, precision, **overrides)
    except (OSError, ValueError) as exc:
        raise type(exc)(f"{path}: its base model {centring.base}: {exc}") from None
    check_binding(path, centring.base_identity, base.identity(), what="its means were measured with another model "
                  "set-up", verb="measured with", remedy=f"Centre again: `xreid adapt CROPS --model {centring.base} "
                  f"--out NEW.xcam` (or use the options the file was made with).")
    return CameraCentredEmbedder(base, centring, name=path.stem)
