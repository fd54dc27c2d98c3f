"""A calibrated "same person?" probability for each result of a search
(docs/METHODS.md#same-person-probability).

What the probability means: among the results an analyst sees (the top ``CONTEXT`` = 10 of a
search in a gallery of a few hundred people where the query's person appears once, as in the
PETA-ReID test galleries), those shown with probability p are the query's person in a share p of
cases. It is not P(same | distance) over all pairs of a gallery: almost every pair there is an
impostor, so that probability is ~0 everywhere and its tiny calibration error says nothing.

The formula reads one search's result list only (distances nearest first), so a server can apply
it to any search result: for the result at distance d,

    p = sigmoid(w_d * d + w_1 * d_1 + w_K * d_K + b)

with d_1 the first result's distance and d_K the ``CONTEXT``-th (the last one given when the list
is shorter). d_1 and d_K say how close the nearest people are for this query, which differs a lot
between camera set-ups (low-resolution GRID crops all lie close together). w_d < 0 is required, so
within one list probabilities never rise down the ranking. The weights are fitted (logistic
regression, ``fit_logistic``) on the top-``CONTEXT`` pairs of simulated searches on a training split
(``calibration_episodes``): galleries of ``gallery_size`` identities, one image each, queried with
another camera's image of every identity seen by two cameras or more.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.binding import check_binding
from xreid.distance import rank_gallery
from xreid.explain.calibration import sigmoid
from xreid.io import read_json, write_json

FORMAT, VERSION = "xreid-match-calibration", 1
#: results of a search the probability reads (the top-10 an analyst sees)
CONTEXT = 10
#: default open-set threshold: results below it are flagged "probably not the person"
THRESHOLD = 0.5
#: how many equal-width probability bins the expected calibration error uses
ECE_BINS = 15
FEATURES = ("distance", "first_distance", "context_distance")
#: distances a little below 0 (float error on the same picture) are read as 0
_TOLERANCE = 1e-4


# --- features ------------------------------------------------------------------------------------

def match_features(distances: np.ndarray, context: int = CONTEXT) -> np.ndarray:
    """(..., n, 3) features (d, d_1, d_K) of result lists (..., n): each list is one search's
    cosine distances, nearest first; d_K is the ``context``-th distance, or the last one of a
    shorter list. Raises ValueError for an empty list, NaN, negative or unsorted distances."""
    d = np.asarray(distances, np.float64)
    if d.ndim == 0 or d.shape[-1] == 0:
        raise ValueError("match probability: no search results (distances) given")
    if not np.all(np.isfinite(d)):
        raise ValueError("match probability: distances must be finite numbers (got NaN or infinity)")
    if np.any(d < -_TOLERANCE):
        raise ValueError(f"match probability: negative distance {d.min():.4g} (cosine distances lie in [0, 2])")
    if d.shape[-1] > 1 and np.any(np.diff(d, axis=-1) < -_TOLERANCE):
        raise ValueError("match probability: distances must be one search's results, nearest first")
    d = np.maximum(d, 0.0)
    first = np.broadcast_to(d[..., :1], d.shape)
    kth = np.broadcast_to(d[..., min(context, d.shape[-1]) - 1:][..., :1], d.shape)
    return np.stack([d, first, kth], axis=-1)


# --- fitting -------------------------------------------------------------------------------------

def _logistic_loss(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> float:
    t = x @ w
    return float(np.mean(np.logaddexp(0.0, t) - y * t) + 0.5 * l2 * np.sum(w[:-1] ** 2))


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1e-6, steps: int = 100) -> np.ndarray:
    """Weights (w_1..w_F, intercept) maximising the likelihood of ``labels`` (M bool) under
    sigmoid(features @ w + intercept) (features M x F), with a small pull ``l2`` of the w (not the
    intercept) towards 0 so separable data stay finite. Damped Newton steps (halved until the
    loss does not rise). The multi-feature sibling of ``calibration.fit_platt``."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"logistic fit: features {x.shape} must be M x F and labels {y.shape} length M")
    if len(x) == 0:
        raise ValueError("logistic fit: no examples")
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[-1] = 0.0
    loss = _logistic_loss(x, y, w, l2)
    for _ in range(steps):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) / len(y) + reg * w
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(y) + np.diag(reg) + 1e-12 * np.eye(len(w))
        delta = np.linalg.solve(hess, grad)
        step = 1.0
        for _ in range(30):
            trial = _logistic_loss(x, y, w - step * delta, l2)
            if trial <= loss + 1e-12:
                break
            step /= 2
        else:
            break  # no step lowers the loss: at the optimum within float precision
        w = w - step * delta
        if loss - trial < 1e-12:
            break
        loss = trial
    return w


def calibration_episodes(pids: Sequence[str], cams: Sequence[str | None], gallery_size: int = 300,
                         episodes: int = 20, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Simulated searches on a training split (one record per image: ``pids``, ``cams``): each
    episode draws ``gallery_size`` identities (all when fewer); the gallery holds one image of each;
    every drawn identity seen by two cameras or more is also a query, with an image from another
    camera than its gallery image. Returns (query indices, gallery indices) per episode."""
    if len(pids) != len(cams):
        raise ValueError(f"{len(pids)} person ids but {len(cams)} cameras")
    rng = np.random.default_rng(seed)
    images: dict[str, dict[str, list[int]]] = {}
    for i, (pid, cam) in enumerate(zip(pids, cams)):
        if pid is not None:
            images.setdefault(str(pid), {}).setdefault(str(cam), []).append(i)
    people = sorted(images)
    out = []
    for _ in range(episodes):
        chosen = rng.choice(len(people), min(gallery_size, len(people)), replace=False)
        queries, gallery = [], []
        for j in sorted(chosen):
            by_cam = images[people[j]]
            cams_seen = sorted(by_cam)
            if len(cams_seen) > 1:
                q_cam, g_cam = (cams_seen[k] for k in rng.permutation(len(cams_seen))[:2])
                queries.append(by_cam[q_cam][rng.integers(len(by_cam[q_cam]))])
            else:
                g_cam = cams_seen[0]
            gallery.append(by_cam[g_cam][rng.integers(len(by_cam[g_cam]))])
        out.append((np.array(queries, np.int64), np.array(gallery, np.int64)))
    return out


def search_pairs(queries: np.ndarray, gallery: np.ndarray, query_pids: Sequence, gallery_pids: Sequence,
                 top_k: int = CONTEXT) -> tuple[np.ndarray, np.ndarray]:
    """(distances, same person): the top ``top_k`` results of every query in ``gallery``, ranked
    by ``xreid.distance.rank_gallery``; both Q x min(top_k, G)."""
    q_p, g_p = np.asarray(query_pids, dtype=object), np.asarray(gallery_pids, dtype=object)
    k = min(top_k, len(gallery))
    dist, same = np.zeros((len(queries), k)), np.zeros((len(queries), k), bool)
    for i, q in enumerate(np.asarray(queries)):
        order, d = rank_gallery(q, gallery)
        dist[i], same[i] = d[order[:k]], g_p[order[:k]] == q_p[i]
    return dist, same


def episode_pairs(features: np.ndarray, pids: Sequence, episodes: list[tuple[np.ndarray, np.ndarray]],
                  top_k: int = CONTEXT) -> list[tuple[np.ndarray, np.ndarray]]:
    """``search_pairs`` of every episode of ``calibration_episodes`` (features: one row per image)."""
    p = np.asarray(pids, dtype=object)
    return [search_pairs(features[q], features[g], p[q], p[g], top_k) for q, g in episodes if len(q)]


# --- measuring -----------------------------------------------------------------------------------

def reliability_diagram(probabilities: np.ndarray, outcomes: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width probability bin [j/bins, (j+1)/bins) (the last one closed) holding any
    prediction: its bounds, how many predictions, their mean probability and the share that came
    true."""
    p = np.asarray(probabilities, np.float64).ravel()
    y = np.asarray(outcomes, np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities but {y.size} outcomes")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    rows = []
    for j in range(bins):
        m = which == j
        if m.any():
            rows.append({"low": j / bins, "high": (j + 1) / bins, "count": int(m.sum()),
                         "mean_probability": float(p[m].mean()), "match_rate": float(y[m].mean())})
    return rows


def expected_calibration_error(probabilities: np.ndarray, outcomes: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of (share of predictions in the bin) * |mean probability - share true|,
    with ``bins`` equal-width bins (``reliability_diagram``)."""
    rows = reliability_diagram(probabilities, outcomes, bins)
    total = sum(r["count"] for r in rows)
    if total == 0:
        raise ValueError("expected calibration error: no predictions")
    return sum(r["count"] * abs(r["mean_probability"] - r["match_rate"]) for r in rows) / total


# --- the record ----------------------------------------------------------------------------------

@dataclass
class MatchCalibration:
    """A fitted same-person probability for one model set-up (its ``Embedder.identity()``).

    ``weights`` = (w_d, w_1, w_K, b) of the module's formula; ``threshold`` is the default open-set
    threshold below which a result is flagged "probably not the person"; ``meta`` records how it was
    fitted (protocol, episodes, pairs, positives)."""

    weights: np.ndarray
    identity: dict
    context: int = CONTEXT
    threshold: float = THRESHOLD
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, np.float64).reshape(-1)
        if self.weights.shape != (len(FEATURES) + 1,) or not np.all(np.isfinite(self.weights)):
            raise ValueError(f"match calibration: weights must be {len(FEATURES) + 1} finite numbers "
                             f"({', '.join(FEATURES)}, intercept), got {self.weights.tolist()}")
        if not self.weights[0] < 0:
            raise ValueError(f"match calibration: the distance weight {self.weights[0]:.4g} must be negative "
                             f"(the probability must fall as the distance grows)")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"match calibration: threshold {self.threshold} is not a probability in [0, 1]")
        if int(self.context) < 1:
            raise ValueError(f"match calibration: context {self.context} must be at least 1")
        if not isinstance(self.identity, dict):
            raise ValueError("match calibration: the model identity must be a mapping")

    def probability(self, distances: np.ndarray) -> np.ndarray:
        """P(same person) for each result of one search: ``distances`` are the search's cosine
        distances (``SearchResult.distances``), nearest first, at least the first ``context`` (10)
        of them where the gallery (or filter) has that many; a shorter list uses its last distance
        in place of the 10th. A 2-D array is read as one list per row. Same shape as ``distances``."""
        x = match_features(distances, self.context)
        return sigmoid(x @ self.weights[:-1] + self.weights[-1])

    def flagged(self, distances: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """True where a result is "probably not the person": probability below ``threshold``
        (default: this calibration's)."""
        t = self.threshold if threshold is None else float(threshold)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"threshold {t} is not a probability in [0, 1]")
        return self.probability(distances) < t

    def check_model(self, identity: dict, where: str | Path = "match calibration") -> None:
        """IdentityMismatch naming both model set-ups unless ``identity`` (``Embedder.identity()`` or an
        index's) agrees with the one this was fitted for on what decides the embeddings."""
        check_binding(where, self.identity, identity,
                      remedy="A match calibration holds only for the model it was fitted on: fit one with "
                             "`xreid index calibrate CASE` and that model's options.")

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "features": list(FEATURES),
                "weights": {n: float(w) for n, w in zip(FEATURES + ("intercept",), self.weights)},
                "context": int(self.context), "threshold": float(self.threshold), "ece_bins": ECE_BINS,
                "identity": self.identity, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict, where: str = "match calibration") -> "MatchCalibration":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{where}: not an xreid match calibration (format "
                             f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}, "
                             f"expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"{where}: match calibration version {data.get('version')}, this xreid reads {VERSION}")
        try:
            weights = [data["weights"][n] for n in FEATURES + ("intercept",)]
            return cls(weights, data["identity"], int(data["context"]), float(data["threshold"]), data.get("meta", {}))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{where}: incomplete match calibration (missing {exc})") from None
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def save(self, path: str | Path) -> None:
        """JSON, written atomically; NaN is never written (refused)."""
        write_json(path, self.to_dict(), indent=1, allow_nan=False)

    @classmethod
    def load(cls, path: str | Path) -> "MatchCalibration":
        return cls.from_dict(read_json(path, "match calibration"), str(path))


def fit_match_calibration(features: np.ndarray, pids: Sequence, cams: Sequence, identity: dict,
                          gallery_size: int = 300, episodes: int = 20, seed: int = 0, context: int = CONTEXT,
                          threshold: float = THRESHOLD, meta: dict | None = None,
                          where: str = "training split") -> MatchCalibration:
    """Fit the same-person probability on the top-``context`` pairs of ``calibration_episodes`` of a
    training split (``features``: one embedding per image, with its person id and camera)."""
    eps = calibration_episodes(pids, cams, gallery_size, episodes, seed)
    pairs = episode_pairs(np.asarray(features, np.float32), pids, eps, context)
    if not pairs:
        raise ValueError(f"{where}: no identity is seen by two cameras, so no search can be simulated "
                         f"(the match calibration needs people photographed by at least two cameras)")
    same = np.concatenate([s.reshape(-1) for _, s in pairs])
    x = np.concatenate([match_features(d, context).reshape(-1, len(FEATURES)) for d, _ in pairs])
    searches = sum(len(s) for _, s in pairs)
    if not same.any():
        raise ValueError(f"{where}: no true match among the top {context} results of any of {searches} simulated "
                         f"searches; the model finds no one here, so no probability can be fitted")
    if same.all():
        raise ValueError(f"{where}: every top-{context} result is a true match; no impostor to calibrate against")
    weights = fit_logistic(x, same)
    if not weights[0] < 0:
        raise ValueError(f"{where}: the fitted probability does not fall with the distance (weight "
                         f"{weights[0]:.3g}); the model's distances carry no usable signal on this split")
    first = np.concatenate([s[:, 0] for _, s in pairs])
    info = {"gallery_size": gallery_size, "episodes": episodes, "seed": seed, "searches": searches,
            "pairs": int(len(same)), "true_matches": int(same.sum()), "rank1": round(float(first.mean()), 4),
            **(meta or {})}
    return MatchCalibration(weights, identity, context, threshold, info)
