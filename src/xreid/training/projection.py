"""A compact embedding for a trained AANet (docs/METHODS.md#compact-projection): its ranking
descriptor (e.g. the 'balanced' 3,072-d one) mapped to D dimensions -- optionally the attribute
directions of a head fitted on the descriptor first, then the principal directions of the descriptor
on a seeded sample of training crops, and optionally one constant dimension (a bias for the
bias-free attribute head) -- stored in the model file as a linear layer (``AANet.projection``), so
the model embeds, exports and is fingerprinted as one network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from xreid.data.records import ImageRecord


def pca_projection(features: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(W, mean): the ``dims`` principal directions of ``features`` (N x F) as the rows of W (dims x F),
    largest variance first, and the features' mean (F,), so y = W (x - mean). Each direction's sign
    puts its largest-magnitude coordinate positive (the first one on ties), so the fit is deterministic."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"a projection needs at least 2 feature vectors, got an array of shape {x.shape}")
    if not 0 < dims <= x.shape[1]:
        raise ValueError(f"cannot project {x.shape[1]}-d features to {dims} dimensions")
    mean = x.mean(0)
    values, vectors = np.linalg.eigh(np.cov((x - mean).T).reshape(x.shape[1], x.shape[1]))
    top = vectors[:, np.argsort(values, kind="stable")[::-1][:dims]].T  # dims x F
    signs = np.sign(top[np.arange(dims), np.abs(top).argmax(1)])
    return top * signs[:, None], mean


def attribute_first_projection(features: np.ndarray, dims: int, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W, mean) as ``pca_projection``, but W's first rows are the attribute directions ``basis`` (F x
    A, e.g. ``orthonormal_attribute_basis`` of a head fitted on the features; when its columns are not
    orthonormal -- dependent weights -- an orthonormal basis of their span, by SVD, takes their place)
    and the remaining rows the principal directions of the centred features with that span removed."""
    x = np.asarray(features, np.float64)
    u = span_basis(basis).T  # K x F, orthonormal rows
    if not 0 < len(u) < dims:
        raise ValueError(f"{len(u)} attribute directions leave no room in {dims} dimensions")
    mean = x.mean(0)
    centred = x - mean
    rest, _ = pca_projection(centred - (centred @ u.T) @ u, dims - len(u))
    return np.concatenate([u, rest]), mean


def span_basis(basis: np.ndarray) -> np.ndarray:
    """``basis`` (F x A) itself when its columns are orthonormal, else the left singular vectors of its
    span (singular values above 1e-6 times the largest): an orthonormal basis of the same span."""
    u = np.asarray(basis, np.float64)
    if np.allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-6):
        return u
    left, singular, _ = np.linalg.svd(u, full_matrices=False)
    return left[:, singular > 1e-6 * singular.max()]


def constant_row(projected: np.ndarray, offset: float) -> float:
    """The value of the constant dimension: ``offset`` times the median norm of the ``projected`` fit
    vectors (N x D, centred), so the head's bias weighs alike whatever the descriptor's scale."""
    return float(offset) * float(np.median(np.linalg.norm(projected, axis=1)))


def fit_sample(count: int, size: int, seed: int = 0) -> list[int]:
    """Which of ``count`` crops a projection is fitted on: ``size`` of them drawn without replacement
    (``seed``), in their original order; all of them when there are no more than ``size``."""
    if count <= size:
        return list(range(count))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(count, size, replace=False))


def projected_spec(spec, descriptor: str, branch_weight: float, dims: int):
    """``spec`` (an AANet's, no classes) ranking with ``descriptor`` at ``branch_weight``, projected to
    ``dims`` dimensions (0: not projected); its attributes, regions and attention-map members kept."""
    from xreid.models.aanet import aanet_extra

    if spec.head != "aanet":
        raise ValueError(f"a compact projection is fitted on an AANet's descriptor; this model's head is {spec.head!r}")
    kept = {k: v for k, v in spec.extra.items() if k not in ("descriptor", "branch_weight", "projection")}
    new = aanet_extra(kept["attributes"], int(kept.get("hidden", 256)), descriptor, branch_weight, dims)
    ranking = {k: new[k] for k in ("descriptor", "branch_weight", "projection") if k in new}
    return replace(spec, extra={**kept, **ranking}, num_classes=0)


def project_model(model_path: Path, records: Sequence[ImageRecord], image_root: Path, out: Path, *, dims: int,
                  descriptor: str = "balanced", branch_weight: float = 1.0, fit_crops: int = 6000, seed: int = 0,
                  attribute_records: Sequence[ImageRecord] = (), attribute_names: Sequence[str] = (),
                  offset: float = 0.0, progress: bool = True) -> dict:
    """Write ``out``: the AANet of ``model_path`` ranking with ``descriptor`` projected to ``dims``:
    ``pca_projection`` of that descriptor on ``fit_sample`` of ``records`` (their crops under
    ``image_root``); with ``attribute_records`` (labelled crops) the ``attribute_names`` directions of
    a head fitted on the descriptor of those crops first (``attribute_first_projection``); with
    ``offset`` > 0 the last dimension constant (``constant_row``). Returns what was fitted (stored in
    the file's meta under 'projection')."""
    from xreid.models.checkpoint import load_model_file, save_model_file
    from xreid.models.networks import build_model
    from xreid.models.reid_net import ModelSpec

    net, content = load_model_file(model_path)
    if getattr(net, "projection", None) is not None:
        raise ValueError(f"{model_path}: already projected (to {net.embedding_dim} dimensions); project the model "
                         f"it was made from")
    spec = ModelSpec.from_dict(content["spec"])
    full = build_model(projected_spec(spec, descriptor, branch_weight, 0), pretrained=False)
    full.load_state_dict(net.state_dict())
    picked = [records[i] for i in fit_sample(len(records), fit_crops, seed)]
    if not picked:
        raise ValueError("no training crops to fit the projection on")
    features = _descriptors(full, picked, image_root, "projection", progress)
    keep = dims - (1 if offset > 0 else 0)
    fitted = {"descriptor": descriptor, "branch_weight": float(branch_weight), "dims": int(dims),
              "fit_crops": len(picked), "seed": int(seed), "from": str(model_path)}
    if attribute_records:
        from xreid.data.labels import label_matrix
        from xreid.explain.attribute_head import fit_attribute_head
        from xreid.explain.formulas import orthonormal_attribute_basis

        labelled = [r for r in attribute_records if r.attributes is not None]
        labels, _ = label_matrix(labelled, list(attribute_names))
        head = fit_attribute_head(_descriptors(full, labelled, image_root, "attribute", progress), labels,
                                  list(attribute_names))
        basis = span_basis(orthonormal_attribute_basis(head.weights))
        weights, mean = attribute_first_projection(features, keep, basis)
        fitted.update(attribute_directions=int(basis.shape[1]), attribute_crops=len(labelled))
    else:
        weights, mean = pca_projection(features, keep)
    bias = -weights @ mean
    if offset > 0:
        size = constant_row((features - mean) @ weights.T, offset)
        weights, bias = np.concatenate([weights, np.zeros((1, weights.shape[1]))]), np.append(bias, size)
        fitted.update(offset=float(offset), constant=size)
    compact = build_model(projected_spec(spec, descriptor, branch_weight, dims), pretrained=False)
    missing = compact.load_state_dict(net.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["projection.bias", "projection.weight"], missing
    with torch.no_grad():
        compact.projection.weight.copy_(torch.from_numpy(weights))
        compact.projection.bias.copy_(torch.from_numpy(bias))
    meta = {k: v for k, v in content.get("meta", {}).items() if k != "attribute_layer"}  # that layer read the old embedding
    save_model_file(compact.eval(), compact.spec, out, {**meta, "projection": fitted})
    return fitted


def _descriptors(net, records: Sequence[ImageRecord], image_root: Path, what: str, progress: bool) -> np.ndarray:
    """The (unprojected) descriptors of ``records``' crops, every one of which must load."""
    from xreid.models.embedders import TorchEmbedder

    result = TorchEmbedder(net.eval(), name=f"{what} crops").embed_paths(
        [image_root / r.path for r in records], batch_size=64, progress=progress)
    if len(result.kept) != len(records):
        raise ValueError(f"{len(records) - len(result.kept)} of the {len(records)} {what} crops could not be read "
                         f"(under {image_root})")
    return result.features.astype(np.float64)
