"""Calibrated attribute probabilities and per-attribute reliability (docs/METHODS.md#attribute-calibration).

The attribute layer is trained with a class-balanced loss, so its probabilities are skewed towards
rare attributes (a balanced decision says "sunglasses" far more often than people wear them). For
naming what differs between two people, a probability must mean what it says: per attribute, a
logistic (Platt) recalibration p = sigmoid(slope * z + intercept) of the layer's logit z is fitted
on validation images the layer never trained on. Reliability, the balanced accuracy of the
layer's own decisions (z > 0) on the same images, is measured by ``xreid.evaluation.attributes.reliability``.
"""

from __future__ import annotations

import numpy as np



def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def _platt_loss(z: np.ndarray, y: np.ndarray, slope: np.ndarray, intercept: np.ndarray, l2: float) -> np.ndarray:
    """Mean negative log-likelihood per attribute, plus the pull towards (1, 0)."""
    t = slope * z + intercept
    nll = np.logaddexp(0.0, t) - y * t
    return nll.mean(0) + 0.5 * l2 * ((slope - 1) ** 2 + intercept ** 2)


def fit_platt(logits: np.ndarray, labels: np.ndarray, steps: int = 100, l2: float = 1e-3) -> np.ndarray:
    """Per attribute, (slope, intercept) maximising the likelihood of ``labels`` (M x A bool) under
    sigmoid(slope * logits + intercept), with a small pull of the slope towards 1 and of the
    intercept towards 0 (``l2``), so an attribute with one class only stays finite. Damped Newton
    steps (halved until the loss does not rise) on all attributes at once. Returns A x 2."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)
    if z.shape != y.shape or z.ndim != 2:
        raise ValueError(f"calibration: logits {z.shape} and labels {y.shape} must be the same M x A shape")
    if len(z) == 0:
        raise ValueError("calibration: no images to calibrate on")
    slope, intercept = np.ones(z.shape[1]), np.zeros(z.shape[1])
    loss = _platt_loss(z, y, slope, intercept, l2)
    for _ in range(steps):
        p = sigmoid(slope * z + intercept)
        w = p * (1 - p)
        g_s = ((p - y) * z).mean(0) + l2 * (slope - 1)
        g_i = (p - y).mean(0) + l2 * intercept
        h_ss, h_si, h_ii = (w * z * z).mean(0) + l2, (w * z).mean(0), w.mean(0) + l2
        det = h_ss * h_ii - h_si ** 2
        d_s, d_i = (h_ii * g_s - h_si * g_i) / det, (h_ss * g_i - h_si * g_s) / det
        step = np.ones_like(slope)
        for _ in range(30):  # halve each attribute's step until its loss does not rise
            trial = _platt_loss(z, y, slope - step * d_s, intercept - step * d_i, l2)
            worse = trial > loss + 1e-12
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
        slope, intercept = slope - step * d_s, intercept - step * d_i
        new_loss = _platt_loss(z, y, slope, intercept, l2)
        if np.max(loss - new_loss) < 1e-12:
            break
        loss = new_loss
    return np.stack([slope, intercept], axis=1)


def apply_platt(logits: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """Calibrated probabilities (... x A) from logits and the A x 2 (slope, intercept) of ``fit_platt``."""
    return sigmoid(np.asarray(logits, np.float64) * calibration[:, 0] + calibration[:, 1])
