"""Fitting the attribute weights of a fusion (docs/METHODS.md#attribute-fusion) and the KISSME
baseline: pure numpy / torch on precomputed distances and attribute probabilities.

The weights are learnt by a triplet loss on frozen inputs. ``objective="complementary"`` (xreid's
default for a frozen model): the loss sees the model's distance beside the weighted attribute
distance, max(0, m + d_ap - d_an + sum_a w_a (t_ap,a - t_an,a)), so attributes are weighted where
they repair the model's own mistakes (the frozen-model counterpart of ACRN's complementary loss);
``objective="attributes"``: ACRN's weight-layer loss on weighted attribute distances alone.
Weights stay non-negative (projected after each step); an L2 pull towards zero makes attributes
that carry no signal (probabilities near 0.5 everywhere: t ~ 0) end at zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xreid.distance import l2_normalise

OBJECTIVES = ("complementary", "attributes")


def hard_triplets(pids: Sequence[str], features: np.ndarray, negatives: int = 20, positives: int = 2,
                  seed: int = 0, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor, positive, negative) index arrays: for every image with another image of its person,
    up to ``positives`` of those (random) crossed with its ``negatives`` nearest other people by the
    model's distance (the impostors the model ranks highest)."""
    rng = np.random.default_rng(seed)
    pids = np.asarray(pids)
    f = l2_normalise(np.asarray(features, np.float32))
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pids):
        groups.setdefault(p, []).append(i)
    n_neg = min(negatives, len(pids) - 1)
    a, p_, n = [], [], []
    for s in range(0, len(f), chunk):
        d = 1.0 - f[s:s + chunk] @ f.T
        for r in range(d.shape[0]):
            i = s + r
            same = groups[pids[i]]
            pos = [j for j in same if j != i]
            row = d[r].copy()
            row[same] = np.inf
            k = min(n_neg, int(np.isfinite(row).sum()))
            if not pos or k == 0:
                continue
            neg = np.argpartition(row, k - 1)[:k]
            for j in rng.choice(pos, min(positives, len(pos)), replace=False):
                a += [i] * k
                p_ += [int(j)] * k
                n += neg.tolist()
    return np.array(a, int), np.array(p_, int), np.array(n, int)


def model_margins(features: np.ndarray, a: np.ndarray, p: np.ndarray, n: np.ndarray,
                  chunk: int = 8192) -> np.ndarray:
    """d(a, p) - d(a, n) = cos(a, n) - cos(a, p) of every (anchor, positive, negative) triplet, the
    model's part of ``triplet_weight_loss``; in chunks, so that hundreds of thousands of triplets of
    a 3,072-d descriptor never stand in memory as T x D arrays."""
    f = l2_normalise(np.asarray(features, np.float64))
    out = np.empty(len(a))
    for s in range(0, len(a), chunk):
        fa = f[a[s:s + chunk]]
        out[s:s + chunk] = np.einsum("td,td->t", fa, f[n[s:s + chunk]]) - np.einsum("td,td->t", fa, f[p[s:s + chunk]])
    return out


def triplet_weight_loss(w: np.ndarray, t_ap: np.ndarray, t_an: np.ndarray, base: np.ndarray | float,
                        margin: float, decay: float) -> float:
    """mean_i max(0, margin + base_i + w . (t_ap,i - t_an,i)) + decay ||w||^2 (numpy; the loss
    ``fit_attribute_weights`` minimises)."""
    z = margin + np.asarray(base) + (np.asarray(t_ap) - np.asarray(t_an)) @ np.asarray(w)
    return float(np.maximum(z, 0.0).mean() + decay * np.sum(np.asarray(w) ** 2))


def fit_attribute_weights(t_ap: np.ndarray, t_an: np.ndarray, base: np.ndarray | float = 0.0,
                          margin: float = 0.0, decay: float = 1e-4, steps: int = 300, lr: float = 0.05,
                          seed: int = 0) -> np.ndarray:
    """Non-negative per-attribute weights minimising ``triplet_weight_loss`` (full batch, Adam,
    projected onto w >= 0 after each step, starting at zero). ``t_ap``, ``t_an``: T x A attribute
    terms of the anchor-positive and anchor-negative pairs; ``base``: the model's d_ap - d_an
    (complementary objective) or 0 (attributes alone)."""
    import torch

    t_ap, t_an = np.asarray(t_ap, np.float32), np.asarray(t_an, np.float32)
    if t_ap.shape != t_an.shape or t_ap.ndim != 2:
        raise ValueError(f"attribute terms of shapes {t_ap.shape} and {t_an.shape}: expected two T x A arrays")
    if len(t_ap) == 0:
        raise ValueError("no triplets to fit the attribute weights on (no person has two images?)")
    torch.manual_seed(seed)
    diff = torch.from_numpy(t_ap - t_an)
    offset = torch.as_tensor(np.broadcast_to(np.asarray(base, np.float32) + margin, (len(diff),)).copy())
    w = torch.zeros(diff.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.relu(offset + diff @ w).mean() + decay * (w * w).sum()
        loss.backward()
        opt.step()
        with torch.no_grad():
            w.clamp_(min=0.0)
    out = w.detach().double().numpy()
    return np.where(np.isfinite(out), out, 0.0)


def kissme(positive_diffs: np.ndarray, negative_diffs: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """KISSME metric M = Sigma_S^-1 - Sigma_D^-1 (Koestinger et al.) from difference vectors of
    same-person pairs (S) and different-person pairs (D), projected onto the positive semi-definite
    cone (negative eigenvalues clipped); ``ridge`` times the mean variance is added to each
    covariance's diagonal. d(x, y) = (x - y)^T M (x - y)."""
    def cov(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        c = x.T @ x / max(len(x), 1)
        return c + ridge * max(float(np.trace(c)) / len(c), 1e-12) * np.eye(len(c))

    m = np.linalg.inv(cov(positive_diffs)) - np.linalg.inv(cov(negative_diffs))
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.clip(vals, 0.0, None)) @ vecs.T


def metric_distance(x: np.ndarray, y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(x_i - y_j)^T M (x_i - y_j) for every row of ``x`` (Q x A) and of ``y`` (G x A): Q x G."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xm, ym = x @ m, y @ m
    d = (xm * x).sum(1)[:, None] + (ym * y).sum(1)[None, :] - 2.0 * xm @ y.T
    return np.maximum(d, 0.0)
