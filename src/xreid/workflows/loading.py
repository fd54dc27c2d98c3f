"""What commands load before they work: the model from its options, the attribute head that goes
with it, a fusion, an interpreter, a person detector. Each raises ValueError / FileNotFoundError naming the option or
file at fault; the CLI turns that into its error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from xreid.errors import InvalidInput


@dataclass
class ModelOptions:
    """The options every command that embeds shares: which model, how its input is prepared."""

    model: str = "default"
    height: Optional[int] = None
    width: Optional[int] = None
    channel_order: Optional[str] = None
    scale: Optional[float] = None
    flip: bool = False
    precision: Optional[str] = None
    backend: str = "auto"

    def check(self) -> None:
        """InvalidInput naming the first option out of range."""
        if self.channel_order not in (None, "rgb", "bgr"):
            raise InvalidInput(f"--channel-order must be 'rgb' or 'bgr', not {self.channel_order!r}")
        if self.precision not in (None, "f32", "bf16"):
            raise InvalidInput(f"--precision must be 'f32' or 'bf16', not {self.precision!r}")
        if self.backend not in ("auto", "torch", "onnx", "openvino"):
            raise InvalidInput(f"--backend must be auto, torch, onnx or openvino, not {self.backend!r}")
        for name, value in (("--height", self.height), ("--width", self.width), ("--scale", self.scale)):
            if value is not None and value <= 0:
                raise InvalidInput(f"{name} must be positive (got {value})")

    def load(self):
        """The embedder these options describe (checked first)."""
        from xreid.models.loading import load_embedder

        self.check()
        return load_embedder(self.model, flip_average=self.flip, backend=self.backend, precision=self.precision,
                             height=self.height, width=self.width, channel_order=self.channel_order, scale=self.scale)


def is_xreid_model(model: str) -> bool:
    """One xreid model (Grad-CAM needs its PyTorch module; a comma-separated list is a concatenation)."""
    return "," not in model and (model == "default" or Path(model).suffix in (".pt", ".pth"))


def load_head(model: str, head: Path | None):
    """The attribute head ``head``, else the model's own: the bundled one for the bundled model, or
    the one a multi-task run wrote beside its model file."""
    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.loading import BUNDLED_HEAD, model_head_path

    if head is None:
        own = BUNDLED_HEAD if model == "default" else model_head_path(model)
        if not own.is_file():
            raise InvalidInput("this model needs --head HEAD.npz (fit one with `xreid attributes fit --model ...`)")
        head = own
    return AttributeHead.load(head)


def claim_ray_cpus() -> None:
    """In a Ray worker: model runtimes (torch, ONNX Runtime, OpenVINO) run on as many threads as
    the CPUs Ray gave this worker, not on every core of its node (``$XREID_THREADS``). Call before
    loading a model; outside Ray it does nothing."""
    import os

    try:
        import ray
    except ImportError:
        return
    if not ray.is_initialized():
        return
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cpus:
        import torch

        from xreid.models.embedders import THREADS_ENV

        os.environ[THREADS_ENV] = str(max(1, int(cpus)))
        torch.set_num_threads(max(1, int(cpus)))


def model_and_head(opts: ModelOptions, head: Path | None):
    """The embedder and attribute head of the model options (what a Ray worker loads once)."""
    return opts.load(), load_head(opts.model, head)


def embedder_and_detector(opts: ModelOptions, detector: str):
    """The embedder of the model options and the person detector (what a Ray footage worker loads once)."""
    return opts.load(), load_detector(detector, opts.precision)


def head_name(model: str, head: Path | None) -> str:
    """How an index records the head it was built with."""
    return "bundled" if head is None and model == "default" else str(head)


def load_fusion(path: Path | None, embedder, attributes_model: str | None = None):
    """(the fusion at ``path``, checked against ``embedder``; the embedder its attributes read), or
    (None, None) without a path."""
    if path is None:
        return None, None
    from xreid.explain.fusion import Fusion
    from xreid.workflows.fuse import load_attribute_embedder

    fusion = Fusion.load(path)
    fusion.check_model(embedder, str(path))
    return fusion, load_attribute_embedder(fusion, embedder, attributes_model)


def load_interpreter(path: Path | None):
    """The interpreter at ``path`` (None without a path)."""
    if path is None:
        return None
    from xreid.models.interpreter import Interpreter

    return Interpreter.load(path)


def load_detector(detector: str, precision: str | None = None):
    """The person detector ``detector`` (a model file or a short name from ``xreid models get``)."""
    from xreid.models.detector import Detector, resolve_detector

    return Detector(resolve_detector(detector), precision=precision or "f32")
