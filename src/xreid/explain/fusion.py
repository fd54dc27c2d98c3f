"""The fused distance of a re-id model and weighted attributes, and its exact split
(docs/METHODS.md#attribute-fusion), after ACRN: at test time, distance = model distance + weighted
attribute distance.

    d_fused(q, g) = d_model(q, g) + mixing * sum_a w_a (p_q,a - p_g,a)^2

with d_model the ranking distance of ``xreid.distance`` (1 - cos), p the calibrated attribute
probabilities of an attribute classifier (an attribute head on some model's embedding), w_a >= 0
one learned weight per attribute and ``mixing`` >= 0 the learned mixing. Every term is
non-negative, so the fused distance splits exactly into the model's part and one part per
attribute. ``Fusion`` is the file that carries w, the mixing, the attribute classifier and the
identity of the model it was fitted for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.binding import check_binding, record
from xreid.explain.attribute_head import AttributeHead
from xreid.io import read_arrays, write_arrays


def attribute_terms(p_q: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    """Per-attribute squared differences (p_q,a - p_g,a)^2 of matched rows (... x A)."""
    return (np.asarray(p_q, np.float64) - np.asarray(p_g, np.float64)) ** 2


def attribute_distance(p_q: np.ndarray, p_g: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_a w_a (p_q,a - p_g,a)^2 between every row of ``p_q`` (Q x A) and every row of ``p_g``
    (G x A): Q x G, without the Q x G x A tensor."""
    q, g, w = (np.asarray(x, np.float64) for x in (p_q, p_g, weights))
    d = (q * q) @ w[:, None] + ((g * g) @ w)[None, :] - 2.0 * (q * w) @ g.T
    return np.maximum(d, 0.0)


def fused_distance(d_model: np.ndarray, d_attributes: np.ndarray, mixing: float) -> np.ndarray:
    """d_model + mixing * d_attributes (any matching shapes)."""
    return np.asarray(d_model, np.float64) + float(mixing) * np.asarray(d_attributes, np.float64)


def fused_parts(d_model: float, p_q: np.ndarray, p_g: np.ndarray, weights: np.ndarray,
                mixing: float) -> tuple[float, np.ndarray]:
    """(model part, per-attribute parts) of one pair's fused distance; they add up to it exactly."""
    return float(d_model), float(mixing) * np.asarray(weights, np.float64) * attribute_terms(p_q, p_g)


@dataclass
class Fusion:
    """Learned attribute weights and mixing for one re-id model, with the attribute classifier
    (an attribute head on ``attribute_model``'s embedding) whose probabilities they weigh."""

    weights: np.ndarray  # A, non-negative
    mixing: float
    head: AttributeHead  # the attribute classifier (names = the vocabulary of the weights)
    model: dict  # {"name", "fingerprint"} of the re-id model the fusion was fitted for
    attribute_model: dict  # {"spec", "name", "fingerprint"} of the model the head reads
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, np.float64)
        if self.weights.shape != (len(self.head.names),):
            raise ValueError(f"fusion: {len(self.weights)} weights for {len(self.head.names)} attributes")
        if not np.all(np.isfinite(self.weights)) or (self.weights < 0).any():
            raise ValueError("fusion: attribute weights must be finite and non-negative")
        if not np.isfinite(self.mixing) or self.mixing < 0:
            raise ValueError(f"fusion: mixing must be finite and non-negative (got {self.mixing})")

    @property
    def names(self) -> list[str]:
        return self.head.names

    def check_model(self, embedder, where: str = "fusion") -> None:
        """Refuse a fusion fitted for another model (its weights complement that model's distance)."""
        check_binding(where, self.model, record(embedder), fields=("fingerprint",), strict=False,
                      what="fitted for another model", verb="fitted for model",
                      remedy="Fit one for it with `xreid fuse fit --model ...`.")

    def check_vocabulary(self, names: list[str], where: str = "attribute head") -> None:
        """Refuse an attribute classifier whose attributes are not the fusion's, in the same order."""
        if list(names) != list(self.names):
            missing = [n for n in self.names if n not in names]
            extra = [n for n in names if n not in self.names]
            detail = (f"missing {', '.join(missing[:5])}" if missing else "") + \
                     (f"{'; ' if missing else ''}not in the fusion: {', '.join(extra[:5])}" if extra else "")
            raise ValueError(f"{where}: its {len(names)} attributes are not the fusion's {len(self.names)} "
                             f"({detail or 'same names, another order'})")

    def probabilities(self, attribute_features: np.ndarray) -> np.ndarray:
        """Calibrated attribute probabilities of the attribute model's embeddings."""
        return self.head.calibrated(attribute_features)

    def distances(self, d_model: np.ndarray, p_q: np.ndarray, p_g: np.ndarray) -> np.ndarray:
        """Fused Q x G distances from the model's Q x G distances and both sides' probabilities."""
        return fused_distance(d_model, attribute_distance(p_q, p_g, self.weights), self.mixing)

    def save(self, path: str | Path) -> None:
        h = self.head
        extra = {f"head_{k}": v for k, v in (("calibration", h.calibration), ("reliability", h.reliability))
                 if v is not None}
        info = {"mixing": self.mixing, "model": self.model, "attribute_model": self.attribute_model,
                "head_meta": h.meta, **self.meta}
        write_arrays(path, dict(weights=self.weights, names=np.array(h.names), head_weights=h.weights,
                                head_positive_ratio=h.positive_ratio, meta=np.array(json.dumps(info)), **extra))

    @classmethod
    def load(cls, path: str | Path) -> "Fusion":
        d = read_arrays(path, "fusion file", " (make one with `xreid fuse fit`)")
        try:
            info = json.loads(str(d["meta"]))
            names = [str(n) for n in d["names"]]
            optional = {k: d[f"head_{k}"].astype(np.float64) for k in ("calibration", "reliability")
                        if f"head_{k}" in d}
            head = AttributeHead(names, d["head_weights"].astype(np.float64),
                                 d["head_positive_ratio"].astype(np.float64), info.pop("head_meta", {}), **optional)
            weights = d["weights"].astype(np.float64)
            mixing, model, attr_model = info.pop("mixing"), info.pop("model"), info.pop("attribute_model")
            return cls(weights, float(mixing), head, model, attr_model, info)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not an xreid fusion file ({exc})") from None
