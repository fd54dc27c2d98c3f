"""The distilled interpreter network (docs/METHODS.md#interpreter): per-attribute distance components
with an attention map per attribute, on the frozen backbone of the bundled re-id model.

Two parts:

- ``InterpreterTrunk``: the bundled MobileNetV2 re-id backbone (IBN-a since issue 30), frozen, up to its last bottleneck
  (320 channels, 1/32 of the input). Its maps of the training crops are computed once and cached
  (``xreid.training.interpreter``); nothing in it is trained.
- ``InterpreterNet``: what is trained, on those maps. A learnt 1x1 convolution with ReLU to
  ``width`` channels F, then per attribute a: a spatial attention att_a = softmax over positions of a 1x1
  convolution of F, the attended feature v_a = sum_s att_a(s) F(s) (L2-normalised),
  and a projection z_a = P_a v_a (``dim`` numbers). The distance component of attribute a between
  two images is d_a(x, y) = ||z_a(x) - z_a(y)||^2 >= 0 and their sum reconstructs the target
  model's distance (``xreid.explain.interpretation``). A linear classifier per attribute reads z_a
  (the attribute guidance of the attention).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

#: Index into the MobileNetV2 ``features`` where the trunk stops (the last bottleneck's output).
TRUNK_END = 18


@dataclass
class InterpreterSpec:
    """Everything needed to rebuild an InterpreterNet (stored in every interpreter file)."""

    attributes: int
    dim: int = 16  # numbers per attribute component z_a
    width: int = 256  # channels of the learnt 1x1 reduction of the 1280-channel map
    in_channels: int = 320  # channels of the cached trunk map

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InterpreterSpec":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class InterpreterTrunk(nn.Module):
    """The frozen part of the bundled re-id backbone whose maps are cached: RGB in [0, 1] -> 320-ch map."""

    def __init__(self, reid_net: nn.Module):
        super().__init__()
        if getattr(reid_net.spec, "backbone", None) not in ("mobilenetv2", "mobilenetv2_ibn"):
            raise ValueError("the interpreter's trunk is the bundled MobileNetV2 (or MobileNetV2 IBN-a) re-id backbone")
        self.register_buffer("pixel_mean", reid_net.pixel_mean.clone(), persistent=False)
        self.register_buffer("pixel_std", reid_net.pixel_std.clone(), persistent=False)
        self.features = copy.deepcopy(reid_net.backbone.features[:TRUNK_END]).float().eval()
        self.input_size = tuple(reid_net.spec.input_size)
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features((images - self.pixel_mean) / self.pixel_std)


class InterpreterNet(nn.Module):
    """Cached trunk maps (B x 320 x H x W) -> per-attribute components z (B x A x dim), attention
    maps (B x A x H x W) and attribute logits (B x A)."""

    def __init__(self, spec: InterpreterSpec):
        super().__init__()
        self.spec = spec
        a = spec.attributes
        self.reduce = nn.Sequential(nn.Conv2d(spec.in_channels, spec.width, 1), nn.ReLU(inplace=True))
        self.attention = nn.Conv2d(spec.width, a, 1)
        self.project = nn.Parameter(torch.randn(a, spec.width, spec.dim) * 0.05)
        self.classifier_weight = nn.Parameter(torch.zeros(a, spec.dim))
        self.classifier_bias = nn.Parameter(torch.zeros(a))

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.reduce(maps.float())
        b, c, h, w = feat.shape
        att = torch.softmax(self.attention(feat).flatten(2), dim=-1)  # B x A x S
        pooled = nn.functional.normalize(torch.bmm(att, feat.flatten(2).transpose(1, 2)), dim=-1)  # B x A x C
        z = torch.einsum("bac,acd->bad", pooled, self.project)
        logits = (z * self.classifier_weight).sum(-1) + self.classifier_bias
        return z, att.view(b, -1, h, w), logits


INTERPRETER_FORMAT = "xreid-interpreter"


def bundled_trunk() -> InterpreterTrunk:
    """The interpreter's frozen trunk, from the bundled model."""
    from xreid.models.checkpoint import load_model_file
    from xreid.models.loading import BUNDLED_MODEL

    return InterpreterTrunk(load_model_file(BUNDLED_MODEL)[0])


def _bundled_fingerprint() -> str:
    from xreid.models.fingerprint import fingerprint
    from xreid.models.loading import BUNDLED_MODEL

    return fingerprint(BUNDLED_MODEL)


def trunk_identity(trunk: InterpreterTrunk) -> dict:
    """Who made the trunk's maps: stored with every cache and interpreter, checked when one loads."""
    return {"trunk": "bundled MobileNetV2 re-id backbone to its last bottleneck",
            "fingerprint": _bundled_fingerprint(), "input_size": list(trunk.input_size)}


def check_trunk(meta: dict, path) -> None:
    """Refuse an interpreter fitted on another bundled model's trunk (one shipped by an earlier
    xreid): its components would be read from maps of a network it never saw."""
    from xreid.binding import check_binding

    check_binding(path, meta.get("trunk"), {"trunk": "bundled model", "fingerprint": _bundled_fingerprint()},
                  fields=("fingerprint",), strict=False, verb="fitted on the trunk of",
                  what="this interpreter was fitted on the trunk of another bundled model",
                  remedy="Fit it again with `xreid interpret fit`.")


class Interpreter:
    """A fitted interpreter: the frozen trunk, the trained network, the attribute vocabulary (with
    the attributes never seen positive in training, whose components carry no attribute meaning)
    and the identity of the target model whose distances it decomposes (``Embedder.identity()``)."""

    def __init__(self, net: InterpreterNet, names: list[str], absent: list[str], target: dict, meta: dict,
                 trunk: InterpreterTrunk | None = None):
        if len(names) != net.spec.attributes:
            raise ValueError(f"interpreter: {len(names)} attribute names for {net.spec.attributes} components")
        self.net, self.names, self.absent, self.target, self.meta = net.eval(), list(names), list(absent), target, meta
        self._trunk = trunk

    @property
    def trunk(self) -> InterpreterTrunk:
        """The frozen trunk, from the bundled model (loaded on first use)."""
        if self._trunk is None:
            self._trunk = bundled_trunk()
        return self._trunk

    @torch.no_grad()
    def run(self, images) -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
        """Component vectors (N x A x k), attention maps (N x A x h x w) and attribute logits (N x A)
        of RGB uint8 images already resized to ``trunk.input_size``."""
        import numpy as np

        x = torch.from_numpy(np.stack(list(images)).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        z, att, logits = self.net(self.trunk(x))
        return z.numpy(), att.numpy(), logits.numpy()

    def save(self, path) -> None:
        from xreid.io import save_torch

        save_torch({"format": INTERPRETER_FORMAT, "spec": self.net.spec.to_dict(),
                    "state_dict": self.net.state_dict(), "attributes": self.names, "absent": self.absent,
                    "target": self.target, "meta": self.meta}, path)

    @classmethod
    def load(cls, path) -> "Interpreter":
        from pathlib import Path

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: interpreter not found (fit one with `xreid interpret fit`)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not its own
            raise ValueError(f"{path}: not an xreid interpreter ({type(exc).__name__}: {str(exc)[:200]})") from None
        if not isinstance(state, dict) or state.get("format") != INTERPRETER_FORMAT:
            raise ValueError(f"{path}: not an xreid interpreter (format {state.get('format') if isinstance(state, dict) else None!r})")
        net = InterpreterNet(InterpreterSpec.from_dict(state["spec"]))
        try:
            net.load_state_dict(state["state_dict"])
        except RuntimeError as exc:
            raise ValueError(f"{path}: interpreter weights do not fit its spec ({str(exc)[:200]})") from None
        check_trunk(state["meta"], path)
        return cls(net, state["attributes"], state["absent"], state["target"], state["meta"])
