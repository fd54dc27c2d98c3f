"""The bias-free linear attribute layer on frozen re-id embeddings (docs/METHODS.md#attribute-layer).

x = sigmoid(W^T f) with f the L2-normalised embedding and W an N x A matrix: because the layer
sees only the embedding, W says which embedding dims carry which attribute. Trained with the
class-balanced BCE of ``formulas.class_balanced_weights`` (inverse-frequency by default). Stored as ``.npz`` (no pickle).

A head may carry, per attribute, a calibration of its probabilities and its reliability, both
measured on validation images it did not train on (``xreid.explain.calibration``); explanations
name only differences that calibrated, reliable attributes support.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.binding import check_binding, record
from xreid.distance import l2_normalise, row_norms
from xreid.explain.formulas import class_balanced_weights
from xreid.io import read_arrays, write_arrays


@dataclass
class AttributeHead:
    names: list[str]
    weights: np.ndarray  # N x A
    positive_ratio: np.ndarray  # A, in the training data
    meta: dict = field(default_factory=dict)
    calibration: np.ndarray | None = None  # A x 2 (slope, intercept) of the logit, from validation images
    reliability: np.ndarray | None = None  # A: balanced accuracy on validation images (NaN: not measurable)
    source: str | None = field(default=None, compare=False)  # the file it was loaded from, for messages

    def __post_init__(self) -> None:
        if self.weights.ndim != 2 or self.weights.shape[1] != len(self.names):
            raise ValueError(f"attribute head: {len(self.names)} attribute names but weights of shape "
                             f"{tuple(self.weights.shape)} (expected embedding_dim x {len(self.names)})")
        if len(self.positive_ratio) != len(self.names):
            raise ValueError(f"attribute head: {len(self.names)} attribute names but {len(self.positive_ratio)} "
                             f"positive ratios")
        if len(set(self.names)) != len(self.names):
            raise ValueError("attribute head: an attribute name appears twice")
        for what, value, shape in (("calibration", self.calibration, (len(self.names), 2)),
                                   ("reliability", self.reliability, (len(self.names),))):
            if value is not None and value.shape != shape:
                raise ValueError(f"attribute head: {what} of shape {tuple(value.shape)}, expected {shape}")

    def calibrated(self, features: np.ndarray) -> np.ndarray:
        """Probabilities that mean what they say (calibrated on validation images); the raw ones
        when the head has no calibration."""
        from xreid.explain.calibration import apply_platt

        z = self.logits(features)
        return apply_platt(z, self.calibration) if self.calibration is not None else self.predict(features)

    def reliable(self, at_least: float) -> np.ndarray:
        """A bool per attribute: reliability measured and at least ``at_least``; all True when the
        head carries no reliability (nothing is known to be unreliable)."""
        if self.reliability is None:
            return np.ones(len(self.names), bool)
        return np.nan_to_num(self.reliability, nan=0.0) >= at_least

    @property
    def model_fingerprint(self) -> str | None:
        """The fingerprint of the model whose embeddings the head was fitted on (None for old heads)."""
        return self.meta.get("model_fingerprint")

    def check_model(self, embedder, where: str = "") -> None:
        """Refuse a head fitted on another model: embeddings of the same width from two models
        mean different things, so the attributes would be read from the wrong directions."""
        where = where or "attribute head"
        if self.source and self.source not in where:
            where = f"{where} {self.source}"
        check_binding(where, self.binding, record(embedder), fields=("fingerprint",), strict=False,
                      what="fitted on another model", verb="fitted on model",
                      remedy="Fit a head for it with `xreid attributes fit --model ...`.")

    @property
    def binding(self) -> dict:
        """The model the head was fitted on (``xreid.binding``)."""
        return {"model": self.meta.get("model", "?"), "fingerprint": self.model_fingerprint}

    @property
    def embedding_dim(self) -> int:
        return self.weights.shape[0]

    def check_embedding(self, features: np.ndarray, where: str = "embeddings") -> None:
        if features.shape[-1] != self.embedding_dim:
            raise ValueError(f"{where}: attribute head expects {self.embedding_dim}-d embeddings, got "
                             f"{features.shape[-1]}-d (was it fitted on another model? "
                             f"head model: {self.meta.get('model', 'unknown')})")

    def logits(self, features: np.ndarray) -> np.ndarray:
        self.check_embedding(features)
        x = np.asarray(features)
        x = x if x.dtype == np.float32 else x.astype(np.float64)  # a float32 gallery is read without a float64 copy
        return ((x @ self.weights.astype(x.dtype)) / row_norms(x)[..., None]).astype(np.float64)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Attribute probabilities (... x A) of raw (not necessarily normalised) embeddings."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(features), -50, 50)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The head as named arrays (its file's content)."""
        extra = {k: v for k, v in (("calibration", self.calibration), ("reliability", self.reliability))
                 if v is not None}
        return dict(weights=self.weights.astype(np.float32), positive_ratio=self.positive_ratio, **extra,
                    names=np.array(self.names), meta=np.array(json.dumps(self.meta)))

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray], where: str = "attribute head") -> "AttributeHead":
        try:
            names, weights = [str(n) for n in d["names"]], d["weights"].astype(np.float64)
            ratio, meta = d["positive_ratio"].astype(np.float64), json.loads(str(d["meta"]))
            optional = {k: d[k].astype(np.float64) for k in ("calibration", "reliability") if k in d}
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{where}: not an xreid attribute head ({exc})") from None
        try:
            return cls(names, weights, ratio, meta, **optional)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def save(self, path: str | Path) -> None:
        write_arrays(path, self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> "AttributeHead":
        head = cls.from_arrays(read_arrays(path, "attribute head", made_by="`xreid attributes fit`"), str(path))
        head.source = str(path)
        return head


def fit_attribute_head(features: np.ndarray, labels: np.ndarray, names: Sequence[str], epochs: int = 300,
                       lr: float = 0.05, weight_decay: float = 0.0, seed: int = 0, meta: dict | None = None,
                       balance: str = "inverse") -> AttributeHead:
    """Train W (N x A, no bias) with class-balanced BCE on L2-normalised, frozen embeddings (full batch, Adam)."""
    import torch

    if len(features) != len(labels):
        raise ValueError(f"{len(features)} embeddings but {len(labels)} label rows")
    if len(features) == 0:
        raise ValueError("no labelled embeddings to fit the attribute head on")
    torch.manual_seed(seed)
    x = torch.from_numpy(l2_normalise(np.asarray(features, np.float64)).astype(np.float32))
    y = torch.from_numpy(np.asarray(labels, np.float32))
    ratio = labels.mean(0)
    w_bce = torch.from_numpy(class_balanced_weights(labels, ratio, balance).astype(np.float32))
    weight = torch.zeros(x.shape[1], y.shape[1], requires_grad=True)
    opt = torch.optim.Adam([weight], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    loss_fn = torch.nn.BCEWithLogitsLoss(weight=w_bce)
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(x @ weight, y)
        loss.backward()
        opt.step()
        sched.step()
    never = [n for n, r in zip(names, ratio) if r == 0]
    info = {**(meta or {}), "train_images": int(len(features)), "final_loss": float(loss.detach()),
            "never_positive_in_training": never, "balance": balance}
    return AttributeHead(list(names), weight.detach().double().numpy(), ratio.astype(np.float64), info)


def combine_heads(heads: Sequence[AttributeHead], shares: np.ndarray, meta: dict | None = None) -> AttributeHead:
    """One bias-free head on the concatenation of the heads' embeddings (each part L2-normalised,
    ``models.concat.concatenate_embeddings``) whose logit is, per attribute a, the shares' mix of the
    heads' calibrated slopes times their logits: sum_k shares[k, a] * slope_k[a] * z_k[a] (a head
    without calibration: slope 1). The intercepts drop out (the layer has no bias): calibrate the
    result again (``fit_platt``)."""
    if not heads:
        raise ValueError("no attribute heads to combine")
    names = heads[0].names
    if any(h.names != names for h in heads):
        raise ValueError("attribute heads to combine must have the same attributes in the same order")
    shares = np.asarray(shares, np.float64)
    if shares.shape != (len(heads), len(names)):
        raise ValueError(f"shares of shape {shares.shape}, expected {(len(heads), len(names))}")
    # the concatenation's norm is sqrt(K) (K unit parts), so a part's logit z_k = f_k . W_k is
    # sqrt(K) * (f / |f|) . W_k: scale each part's weights by sqrt(K)
    blocks = [math.sqrt(len(heads)) * h.weights * (s * (h.calibration[:, 0] if h.calibration is not None else 1.0))
              for h, s in zip(heads, shares)]
    ratio = np.mean([h.positive_ratio for h in heads], axis=0)
    return AttributeHead(list(names), np.concatenate(blocks, axis=0), ratio, dict(meta or {}))
