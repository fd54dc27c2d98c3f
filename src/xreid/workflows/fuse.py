"""``xreid fuse fit`` and the fused evaluation: attribute weights and mixing for a frozen re-id
model, fitted on a protocol's training identities and chosen on its validation sets
(docs/METHODS.md#attribute-fusion).

On PETA-ReID the weights are fitted on the PETA-ReID-val ``train`` list and every choice (margin,
L2 pull, mixing) is made on the PETA-ReID-val query / gallery sets; the test sets are never looked
at. The attribute probabilities of the training images are out-of-fold: the attribute head is
refitted ``FOLDS`` times, each time without one fifth of the training identities, and predicts
those, so the weights are learnt on probabilities as (un)reliable as on new people.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xreid.binding import record
from xreid.data.labels import label_matrix
from xreid.data.protocol import Protocol, TestSet, load_protocol
from xreid.data.records import ImageRecord
from xreid.distance import cosine_distance
from xreid.evaluation.evaluate import METRIC_KEYS, ProtocolResult
from xreid.evaluation.metrics import evaluate_distances
from xreid.explain.attribute_head import AttributeHead, fit_attribute_head
from xreid.explain.calibration import apply_platt, sigmoid
from xreid.explain.fusion import Fusion, attribute_distance, attribute_terms
from xreid.models.embedders import Embedder
from xreid.training.fusion import OBJECTIVES, fit_attribute_weights, hard_triplets, model_margins
from xreid.workflows.attributes import CALIBRATION_SHARE, held_out
from xreid.workflows.embedding_cache import cached_embeddings

log = logging.getLogger(__name__)

FOLDS = 5
MARGINS = (0.0, 0.05)
DECAYS = (1e-4, 1e-3)
MIXINGS = (0.0, 0.25, 0.5, 1.0, 2.0)


@dataclass
class FusionSplit:
    """Images to fit on (with person ids), validation sets to choose on, and the extra
    attribute-only images the attribute head was fitted with."""

    name: str
    image_root: Path
    train: list[ImageRecord]
    val_sets: list[TestSet]
    attribute_only: list[ImageRecord]


def check_fusion_protocol(protocol: str) -> None:
    """Only protocols with a validation twin can be fused: every choice is made on validation sets."""
    if protocol.replace("_", "-") not in ("peta-reid", "peta-reid-val"):
        raise ValueError(f"fuse fit: protocol {protocol!r} has no validation twin to choose on; use peta-reid "
                         f"(fitted on PETA-ReID-val's train list, chosen on its validation sets)")


def fusion_split(data_root: Path, protocol: str) -> FusionSplit:
    """PETA-ReID (or its -val twin by name): fit on PETA-ReID-val's train list, choose on its val sets."""
    check_fusion_protocol(protocol)
    val = load_protocol("peta-reid-val", data_root)
    ao = [r for r in val.attribute_only if not held_out(r.path, CALIBRATION_SHARE)]
    return FusionSplit(val.name, val.image_root, [r for r in val.train if r.pid], val.test_sets, ao)


def _fold(pid: str, folds: int) -> int:
    return int(hashlib.sha256(pid.encode()).hexdigest()[:8], 16) % folds


def out_of_fold_probabilities(head: AttributeHead, features: np.ndarray, records: Sequence[ImageRecord],
                              extra_features: np.ndarray, extra_labels: np.ndarray, folds: int = FOLDS,
                              progress: bool = True) -> np.ndarray:
    """Calibrated probabilities of ``records`` (features M x D) from heads that never saw their
    person: the head's recipe refitted ``folds`` times on the other identities' labelled images
    plus ``extra_*`` (attribute-only images), the head's calibration applied to the logits.
    Unlabelled records get the head's own probabilities."""
    from tqdm import tqdm

    out = head.calibrated(features)
    labels, labelled = label_matrix(records, head.names)
    fold = np.array([_fold(r.pid or r.path, folds) for r in records])
    for f in tqdm(range(folds), desc="out-of-fold attribute heads", disable=not progress):
        fit = labelled & (fold != f)
        rows = fold == f
        if not rows.any():
            continue
        h = fit_attribute_head(np.concatenate([features[fit], extra_features]),
                               np.concatenate([labels[fit], extra_labels]), head.names)
        z = h.logits(features[rows])
        out[rows] = apply_platt(z, head.calibration) if head.calibration is not None else sigmoid(z)
    return out


def score_sets(sets: Sequence[TestSet], distance: Callable[[list[ImageRecord], list[ImageRecord]], np.ndarray]
               ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """(per-set metrics, mean) of rankings by ``distance(query records, gallery records)`` (Q x G)."""
    per_set = {}
    for ts in sets:
        m = evaluate_distances(distance(ts.query, ts.gallery), [r.pid for r in ts.query], [r.pid for r in ts.gallery],
                               [r.cam for r in ts.query], [r.cam for r in ts.gallery])
        per_set[ts.name] = m.summary()
    return per_set, {k: float(np.mean([s[k] for s in per_set.values()])) for k in METRIC_KEYS}


class Lookup:
    """Rows of a feature or probability matrix by image record."""

    def __init__(self, keys: Sequence[str], values: np.ndarray):
        self.row = {k: i for i, k in enumerate(keys)}
        self.values = values

    def __call__(self, records: Sequence[ImageRecord]) -> np.ndarray:
        missing = [r.path for r in records if r.path not in self.row]
        if missing:
            raise ValueError(f"{len(missing)} image(s) could not be embedded, e.g. {missing[0]}")
        return self.values[[self.row[r.path] for r in records]]


class ValidationSeen(ValueError):
    """The attributes to fuse were trained on the identities the fusion would be chosen on."""


def check_attributes_unseen(attribute_spec: str, head: AttributeHead, validation: str = "peta-reid-val",
                            allow_seen: bool = False, fingerprint: str | None = None) -> dict:
    """Refuse (ValidationSeen, saying which file and why) when the attribute model or its head was
    trained on ``validation``'s identities: choosing the mixing there would favour attributes that
    know those people (docs/RESULTS.md#attribute-fusion-acrn: such a mixing loses mAP on the test
    sets). ``allow_seen`` fits anyway and records it. ``fingerprint``: the attribute
    embedder's; a single-file ``attribute_spec`` that is another file is not read as its record.
    Returns what the files say, for the fusion's meta."""
    from xreid.models.fingerprint import fingerprint as file_fingerprint
    from xreid.models.loading import resolve_model_path
    from xreid.models.provenance import Provenance, head_provenance, model_provenance

    try:
        found = model_provenance(attribute_spec) if attribute_spec else []
        if fingerprint and "," not in str(attribute_spec) and \
                file_fingerprint(resolve_model_path(attribute_spec)) != fingerprint:
            found = [Provenance(f"model {attribute_spec}", None, "the name given is not the attribute model used")]
    except (FileNotFoundError, ValueError):
        found = []
    found.append(head_provenance(head.meta))
    seen = [p for p in found if p.saw(validation)]
    unknown = [p for p in found if p.saw(validation) is None]
    record = {"validation": validation, "files": [{"what": p.what, "protocol": p.protocol, "how": p.how}
                                                  for p in found],
              "attributes_saw_validation": bool(seen)}
    if seen and not allow_seen:
        names = "; ".join(f"{p.what} was trained on {p.protocol} ({p.how})" for p in seen)
        raise ValidationSeen(
            f"fuse fit: not chosen: {names}. The training split of {seen[0].protocol} holds the {validation} "
            f"identities the mixing would be chosen on, so validation would favour these attributes (0277 with "
            f"the bundled attributes: 97.1 mean mAP on validation, 76.3 -> 61.8 on the test sets). Instead, use "
            f"attributes that never saw those identities: a head fitted on PETA-ReID-val's train list for a network "
            f"not trained on PETA-ReID's training split, e.g. the fused model itself: "
            f"`xreid attributes fit --model MODEL --out head.npz`, then `xreid fuse fit --model MODEL "
            f"--attributes-model MODEL --attributes-head head.npz --out FUSION.npz`; or pass "
            f"--allow-seen-validation to fit anyway (the choice is then biased and recorded as such).")
    if seen:
        log.warning("fusion chosen on %s although the attributes saw those identities (--allow-seen-validation): "
                    "the choice is biased", validation)
    for p in unknown:
        log.warning("%s: %s; cannot tell whether it saw the %s identities", p.what, p.how, validation)
    return record


def fit_fusion(embedder: Embedder, attribute_embedder: Embedder, head: AttributeHead, data_root: Path,
               cache_dir: Path, protocol: str = "peta-reid", attribute_spec: str = "default",
               objective: str = "complementary", margins: Sequence[float] = MARGINS,
               decays: Sequence[float] = DECAYS, mixings: Sequence[float] = MIXINGS,
               progress: bool = True, allow_seen_validation: bool = False) -> tuple[Fusion, dict]:
    """Fit the attribute weights for ``embedder`` (frozen) and choose margin, L2 pull and mixing on
    the validation sets; returns the fusion and a report of every candidate's validation figures.
    Refused (``ValidationSeen``) when the attribute model or head was trained on the validation
    identities, unless ``allow_seen_validation`` (``check_attributes_unseen``)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    check_fusion_protocol(protocol)
    provenance = check_attributes_unseen(attribute_spec, head, "peta-reid-val", allow_seen_validation,
                                         getattr(attribute_embedder, "fingerprint", None))
    head.check_model(attribute_embedder, "attribute head")
    tic = time.perf_counter()
    split = fusion_split(data_root, protocol)
    val_images = list({r.path: r for ts in split.val_sets for r in ts.query + ts.gallery}.values())
    keys = [r.path for r in split.train + val_images]
    feats, kept, skipped = cached_embeddings(embedder, split.image_root, keys, cache_dir, progress)
    model = Lookup(kept, feats)
    a_keys = keys + [r.path for r in split.attribute_only]
    same = attribute_embedder.identity() == embedder.identity()
    a_feats, a_kept, a_skipped = (feats, kept, skipped) if same else cached_embeddings(
        attribute_embedder, split.image_root, a_keys, cache_dir, progress)
    if same:
        extra, extra_kept, _ = cached_embeddings(attribute_embedder, split.image_root,
                                                 [r.path for r in split.attribute_only], cache_dir, progress)
        a_feats, a_kept = np.concatenate([feats, extra]), kept + extra_kept
    attrs = Lookup(a_kept, a_feats)
    embedded = time.perf_counter() - tic
    train = [r for r in split.train if r.path in model.row and r.path in attrs.row]
    ao = [r for r in split.attribute_only if r.path in attrs.row and r.attributes is not None]
    ao_labels, _ = label_matrix(ao, head.names)
    tic = time.perf_counter()
    probs = out_of_fold_probabilities(head, attrs(train), train, attrs(ao), ao_labels, progress=progress)
    a, p, n = hard_triplets([r.pid for r in train], model(train))
    base = model_margins(model(train), a, p, n) if objective == "complementary" else 0.0
    t_ap, t_an = attribute_terms(probs[a], probs[p]), attribute_terms(probs[a], probs[n])
    val_probs = Lookup([r.path for r in val_images], head.calibrated(attrs(val_images)))

    def d_model(q, g):
        return cosine_distance(model(q), model(g))

    def validation(w: np.ndarray, mix: float | None) -> dict[str, float]:
        """Validation mean figures of weights ``w`` fused at ``mix``, or of the attributes alone (None)."""
        if mix is None:
            return score_sets(split.val_sets, lambda q, g: attribute_distance(val_probs(q), val_probs(g), w))[1]
        cand = Fusion(w, mix, head, record(embedder), {})
        return score_sets(split.val_sets, lambda q, g: cand.distances(d_model(q, g), val_probs(q), val_probs(g)))[1]

    # 'complementary': margin, L2 and mixing together by the fused validation mAP. 'attributes' (ACRN's
    # weight layer: weights of the attributes alone): margin and L2 by the attributes' own validation mAP,
    # then the mixing of those weights by the fused one.
    candidates, best = [], None
    for margin in margins:
        for decay in decays:
            w = fit_attribute_weights(t_ap, t_an, base, margin=margin, decay=decay)
            for mix in (mixings if objective == "complementary" else [None]):
                mean = validation(w, mix)
                row = {"margin": margin, "decay": decay, "mixing": mix, "val_mAP": mean["mAP"], "val_R1": mean["R1"],
                       "weight_sum": float(w.sum()), "nonzero_weights": int((w > 0).sum())}
                candidates.append(row)
                if best is None or row["val_mAP"] > best[0]["val_mAP"] + 1e-9:
                    best = (row, w)
    if objective != "complementary":
        alone, w = best
        best = None
        for mix in mixings:
            mean = validation(w, mix)
            row = {**alone, "mixing": mix, "val_mAP": mean["mAP"], "val_R1": mean["R1"],
                   "attributes_alone_val_mAP": alone["val_mAP"]}
            candidates.append(row)
            if best is None or row["val_mAP"] > best[0]["val_mAP"] + 1e-9:
                best = (row, w)
    row, w = best
    fitted = time.perf_counter() - tic
    meta = {"objective": objective, "protocol": split.name, "chosen": row, "candidates": candidates,
            "train_images": len(train), "triplets": int(len(a)), "folds": FOLDS,
            "fit_images": f"{split.name} train list ({len(train)} images of {len({r.pid for r in train})} "
                          f"identities); chosen on {split.name} validation sets ({', '.join(t.name for t in split.val_sets)})",
            "seconds": {"embedding": round(embedded, 1), "fit": round(fitted, 1)}, "provenance": provenance,
            "skipped_images": sorted(set(skipped) | set(a_skipped))}
    attribute_model = {"spec": attribute_spec, **record(attribute_embedder)}
    return Fusion(w, float(row["mixing"]), head, record(embedder), attribute_model, meta), meta


def load_attribute_embedder(fusion: Fusion, embedder: Embedder, spec: str | None = None) -> Embedder:
    """The model the fusion's attribute head reads: the re-id model itself when the fusion says so,
    else ``spec`` or the spec the fusion recorded; its fingerprint must be the recorded one."""
    from xreid.models.loading import load_embedder

    recorded = fusion.attribute_model
    if spec is None and recorded.get("fingerprint") == embedder.fingerprint:
        return embedder
    other = load_embedder(spec or recorded.get("spec", "default"))
    fusion.head.check_model(other, "fusion's attribute classifier")
    return other


def evaluate_fused(embedder: Embedder, attribute_embedder: Embedder, fusion: Fusion, protocol: Protocol,
                   progress: bool = True, batch_size: int = 64) -> ProtocolResult:
    """``xreid eval --fusion``: the protocol's test sets ranked by the fused distance."""
    fusion.check_model(embedder)
    images = protocol.test_images()
    paths = [protocol.image_root / r.path for r in images]
    tic = time.perf_counter()
    cameras = [r.cam for r in images]
    res = embedder.embed_paths(paths, batch_size=batch_size, progress=progress, cameras=cameras)
    a_res = res if attribute_embedder is embedder else attribute_embedder.embed_paths(paths, batch_size=batch_size,
                                                                                      progress=progress, cameras=cameras)
    seconds = time.perf_counter() - tic
    both = sorted(set(res.kept) & set(a_res.kept))
    model = Lookup([images[i].path for i in res.kept], res.features)
    probs = Lookup([images[i].path for i in a_res.kept], fusion.probabilities(a_res.features))
    usable = {images[i].path for i in both}
    sets = [TestSet(t.name, [r for r in t.query if r.path in usable], [r for r in t.gallery if r.path in usable])
            for t in protocol.test_sets]
    per_set, mean = score_sets(sets, lambda q, g: fusion.distances(cosine_distance(model(q), model(g)),
                                                                   probs(q), probs(g)))
    skipped = sorted({str(e) for e in res.skipped} | {str(e) for e in a_res.skipped})
    options = {"fusion": {"mixing": fusion.mixing, "attribute_model": fusion.attribute_model},
               "flip": embedder.flip_average, "identity": embedder.identity()}
    return ProtocolResult(embedder.name, protocol.name, per_set, mean, skipped, seconds, len(both), options)
