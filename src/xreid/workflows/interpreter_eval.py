"""Scoring an interpreter on a protocol's test sets (docs/METHODS.md#interpreter): fidelity of its
reconstructed distances, the target's ranking quality when ranked by them (and by a mix with the
target's own distance: re-weighting), and the explanation metrics of its contributions.

Inputs are arrays for the protocol's test images (one row per image, in ``Protocol.test_images()``
order): component vectors z (N x A x k), target embeddings, labels; the test sets are given as
(query rows, gallery rows, query records, gallery records).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from xreid.distance import cosine_distance
from xreid.evaluation.amd_metrics import explanation_metrics
from xreid.evaluation.metrics import evaluate_distances
from xreid.explain.interpretation import component_distances, contributions, fidelity


@dataclass
class TestPairs:
    """One test set's query and gallery rows (into the arrays of test images) and their records."""

    name: str
    query_rows: np.ndarray
    gallery_rows: np.ndarray
    q_pids: list
    g_pids: list
    q_cams: list
    g_cams: list


def test_pairs(protocol) -> tuple[list[str], list[TestPairs]]:
    """(keys of the test images, each test set as TestPairs) for a resolved protocol."""
    keys = [r.path for r in protocol.test_images()]
    row = {k: i for i, k in enumerate(keys)}
    sets = [TestPairs(ts.name, np.array([row[r.path] for r in ts.query]), np.array([row[r.path] for r in ts.gallery]),
                      [r.pid for r in ts.query], [r.pid for r in ts.gallery],
                      [r.cam for r in ts.query], [r.cam for r in ts.gallery]) for ts in protocol.test_sets]
    return keys, sets


def top_impostors(dist: np.ndarray, q_pids: Sequence, g_pids: Sequence, k: int = 10) -> list[tuple[int, int]]:
    """(query, gallery) index pairs of each query's results of another identity within its top ``k``
    by ``dist`` (the pairs xreid's explanation precision scores)."""
    out = []
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    for qi, row in enumerate(order):
        out += [(qi, int(g)) for g in row if g_pids[g] != q_pids[qi]]
    return out


def evaluate_interpretation(z: np.ndarray, targets: np.ndarray, labels: np.ndarray, labelled: np.ndarray,
                            sets: Sequence[TestPairs], keep: np.ndarray | None = None,
                            mixes: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                            baselines: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] | None = None,
                            top_k: int = 10) -> dict:
    """Fidelity, mAP by reconstruction and by mixes (1 - w) d + w d_hat, and explanation metrics
    (AMD's over all labelled pairs of two identities, xreid's top-1 precision over each query's
    top-``top_k`` impostors by the target's ranking) of the interpreter and of ``baselines``
    (name -> function(query rows, gallery rows) -> Q x G x A scores)."""
    methods: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "interpreter": lambda q, g: component_distances(z[q], z[g])}
    methods.update(baselines or {})
    rec_all, tgt_all = [], []
    per_set, amd_pairs, top1 = {}, {m: ([], []) for m in methods}, {m: [] for m in methods}
    for ts in sets:
        q, g = ts.query_rows, ts.gallery_rows
        target = cosine_distance(targets[q], targets[g]).astype(np.float64)
        parts = {m: f(q, g) for m, f in methods.items()}
        rec = parts["interpreter"].sum(-1)
        rec_all.append(rec.ravel())
        tgt_all.append(target.ravel())
        scored = {}
        for w in mixes:
            scale = target.mean() / max(rec.mean(), 1e-12)  # the mix compares like with like
            scored[f"mix_{w:g}"] = 100 * evaluate_distances((1 - w) * target + w * scale * rec, ts.q_pids, ts.g_pids,
                                                            ts.q_cams, ts.g_cams).mAP
        per_set[ts.name] = {"fidelity": fidelity(rec, target), "mAP_target": scored.get("mix_0"),
                            "mAP_reconstructed": scored.get("mix_1"), "mAP_mix": scored}
        ok = labelled[q][:, None] & labelled[g][None, :]
        other = np.asarray(ts.q_pids, object)[:, None] != np.asarray(ts.g_pids, object)[None, :]
        use = ok & other
        differs = labels[q][:, None, :] != labels[g][None, :, :]
        imp = [(a, b) for a, b in top_impostors(target, ts.q_pids, ts.g_pids, top_k) if ok[a, b]]
        for m, p in parts.items():
            amd_pairs[m][0].append(p[use])
            amd_pairs[m][1].append(differs[use])
            if imp:
                a_idx, b_idx = np.array(imp).T
                chosen = np.argmax(np.where(keep, p[a_idx, b_idx], -np.inf) if keep is not None else p[a_idx, b_idx],
                                   axis=-1)
                top1[m] += list(differs[a_idx, b_idx, chosen])
    out = {"fidelity": fidelity(np.concatenate(rec_all), np.concatenate(tgt_all)), "per_set": per_set}
    for w in mixes:
        out[f"mAP_mix_{w:g}"] = float(np.mean([s["mAP_mix"][f"mix_{w:g}"] for s in per_set.values()]))
    out["explanation"] = {}
    for m in methods:
        c = np.concatenate(amd_pairs[m][0])
        d = np.concatenate(amd_pairs[m][1])
        scores = contributions(c) if m == "interpreter" else c
        out["explanation"][m] = {**explanation_metrics(scores, d, keep),
                                 "top1_precision": 100 * float(np.mean(top1[m])) if top1[m] else None,
                                 "top1_pairs": len(top1[m])}
    return out
