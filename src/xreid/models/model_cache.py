"""Compiled copies of xreid PyTorch models: exported once to ONNX / OpenVINO IR, cached by content.

``load_embedder('default')`` runs the bundled model in ONNX Runtime, which is faster on a CPU than
PyTorch eager mode. The first load exports the PyTorch model to ``CACHE/<fingerprint>.onnx``
(atomically), checks the export once against PyTorch (cosine > 0.999 on random crops) and then
writes the sidecar ``<fingerprint>.onnx.xreid.json`` with the verdict and the exported files'
hashes; the sidecar lands last, so its presence means a complete entry. Later loads, in any process,
reuse the entry after checking those hashes; a damaged or half-written entry is rebuilt. An export
that disagrees with PyTorch is remembered as such and the model runs in PyTorch.

``CACHE`` is ``$XREID_MODEL_CACHE``, else ``$XDG_CACHE_HOME/xreid/models``, else
``~/.cache/xreid/models``: independent of the data root, since a model is the same whatever data it
embeds, and keyed by the source file's fingerprint, so a retrained ``model.pt`` gets a new entry.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from xreid.io import write_json
from xreid.models.checkpoint import load_model_file
from xreid.models.embedders import Embedder, Preprocess, TorchEmbedder, runtime_embedder, sidecar_path
from xreid.models.export import EXPORTERS, SUFFIXES, embedding_agreement, export_sidecar, random_crops
from xreid.models.fingerprint import files_sha256, model_files
from xreid.models.reid_net import BackboneNet

log = logging.getLogger(__name__)

#: an export must agree with PyTorch at least this well (cosine, every check crop) to be used
MIN_COSINE = 0.999
CHECK_CROPS = 4


def model_cache_dir() -> Path:
    """Where compiled models are cached: ``$XREID_MODEL_CACHE``, else ``$XDG_CACHE_HOME/xreid/models``,
    else ``~/.cache/xreid/models``."""
    if os.environ.get("XREID_MODEL_CACHE"):
        return Path(os.environ["XREID_MODEL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "xreid" / "models"


def cached_model_path(fingerprint: str, fmt: str) -> Path:
    """The cache entry of the model with ``fingerprint`` exported to ``fmt`` ('onnx' or 'openvino')."""
    return model_cache_dir() / f"{fingerprint}{SUFFIXES[fmt]}"


def _file_hashes(path: Path) -> dict[str, str]:
    return {p.name: files_sha256([p]) for p in model_files(path)}


def intact_entry(path: Path, fingerprint: str) -> dict | None:
    """The sidecar of the cache entry at ``path`` when it is complete, made from ``fingerprint`` and
    its files still hash as recorded; None otherwise (missing, half-written or damaged: rebuild)."""
    try:
        side = json.loads(sidecar_path(path).read_text())
        if side.get("source_fingerprint") != fingerprint or "verification" not in side:
            return None
        return side if _file_hashes(path) == side.get("files") else None
    except (OSError, ValueError, AttributeError):
        return None


def build_entry(model: BackboneNet, fingerprint: str, fmt: str) -> dict:
    """Export ``model`` to the cache, check it against PyTorch and write the sidecar; returns the sidecar.
    Raises OSError when the cache is not writable, and whatever the exporter raises."""
    path = cached_model_path(fingerprint, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    reference = TorchEmbedder(model)
    EXPORTERS[fmt](model, reference.preprocess.size, path)
    exported = runtime_embedder(path, reference.preprocess, fmt, precision="f32")
    agreement = embedding_agreement(reference, exported, random_crops(reference.preprocess.size, CHECK_CROPS))
    verification = {**agreement, "crops": CHECK_CROPS, "passed": agreement["min_cosine"] > MIN_COSINE}
    side = export_sidecar(model, reference.preprocess.to_dict(), source_fingerprint=fingerprint,
                          verification=verification, files=_file_hashes(path))
    write_json(sidecar_path(path), side)
    log.info("compiled %s to %s (min cosine vs PyTorch %.5f)", fingerprint, path, agreement["min_cosine"])
    return side


def compiled_runtime(source: Path, fingerprint: str, fmt: str,
                     precision: str | None) -> tuple[Embedder | None, BackboneNet | None]:
    """(runtime, model): the ONNX Runtime / OpenVINO embedder running the xreid model in ``source``,
    from the cache (built on a miss), and the PyTorch model when this call had to load it.

    The runtime is None, with a logged warning, when no usable compiled copy can be had: the cache
    is not writable, the export fails, or it disagrees with PyTorch. A model file that cannot be
    loaded safely is a ValueError, never a fallback.
    """
    try:
        path = cached_model_path(fingerprint, fmt)
    except RuntimeError as exc:  # no home folder to put the cache in
        log.warning("%s: no model cache folder (%s); running it in PyTorch", source, exc)
        return None, None
    side = intact_entry(path, fingerprint)
    model = None
    if side is None:
        model, _ = load_model_file(source)
        try:
            side = build_entry(model, fingerprint, fmt)
        except Exception as exc:  # noqa: BLE001 - any failure here has the same remedy: run in PyTorch
            log.warning("%s: cannot compile the model to %s in %s (%s); running it in PyTorch",
                        source, fmt, path.parent, exc)
            return None, model
    check = side["verification"]
    if not check["passed"]:
        log.warning("%s: the %s export disagrees with PyTorch (min cosine %.5f <= %s, %s); running it in PyTorch",
                    source, fmt, check["min_cosine"], MIN_COSINE, sidecar_path(path))
        return None, model
    try:
        return runtime_embedder(path, Preprocess.from_dict(side["preprocess"]), fmt, precision), model
    except ValueError as exc:
        log.warning("%s; running %s in PyTorch", exc, source)
        return None, model
