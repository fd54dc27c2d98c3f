"""ACRN training around the training loop (docs/METHODS.md#acrn-training): before it, the attribute
classifier's out-of-fold probabilities of the training images (``prepare_acrn``); after it, the
test-time fused distance as a fusion file beside the model (``finish_acrn``), so `xreid eval /
explain --fusion` rank and explain with CNN distance + mixing x weighted attribute distance.

The attribute classifier is an attribute head on a model's embedding (``acrn.classifier``, e.g.
OMZ 0277 + 0286 + 0287, networks that never saw PETA), fitted like `xreid attributes fit --protocol
peta-reid` (PETA-ReID-val's train list and 70 % of the attribute-only crops) unless ``acrn.head``
gives one. The probabilities the loss reads for the training images are out of fold: the head is
refitted without each fifth of the training identities and predicts those, so each image's
attributes come from a classifier that never saw its person (``workflows.fuse``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xreid.binding import check_binding, record
from xreid.data.labels import label_matrix
from xreid.data.protocol import load_protocol
from xreid.distance import cosine_distance
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.fusion import Fusion
from xreid.training.acrn import TABLE_FILE, AttributeTable
from xreid.training.config import Config
from xreid.workflows.attributes import CALIBRATION_SHARE, fit_head, held_out
from xreid.workflows.embedding_cache import CachedEmbedder, cached_embeddings
from xreid.workflows.fuse import Lookup, out_of_fold_probabilities, score_sets

log = logging.getLogger(__name__)

#: The fitted attribute head, beside the run's checkpoint, when the config names none.
HEAD_FILE = "acrn_head.npz"


def fusion_path(model_file: str | Path) -> Path:
    """Where an ACRN run writes its test-time fusion: beside the model, ``NAME_fusion.npz``."""
    model_file = Path(model_file)
    return model_file.with_name(f"{model_file.stem}_fusion.npz")


def _classifier(cfg: Config, data_root: Path, cache_dir: Path, progress: bool):
    """(the classifier's embedder, its attribute head): the configured head, the one fitted by an
    earlier start of this run, or a new one (saved beside the checkpoint)."""
    from xreid.models.loading import load_embedder

    c = cfg.acrn
    if not c.classifier:
        raise ValueError(f"{cfg.name}: acrn.gamma is {c.gamma} but acrn.classifier names no model: give the model "
                         f"whose embedding the attribute classifier reads (e.g. OMZ 0277's .xml)")
    embedder = load_embedder(c.classifier)
    path = Path(c.head) if c.head else cfg.run_dir / HEAD_FILE
    if path.is_file():
        head = AttributeHead.load(path)
        head.check_model(embedder, f"acrn.head {path}" if c.head else
                         f"{path} (the head this run fitted for its classifier; start a run under another name "
                         f"to change acrn.classifier)")
        return embedder, head
    if c.head:
        raise FileNotFoundError(f"acrn.head {path}: attribute head not found (make one with `xreid attributes fit "
                                f"--model {c.classifier}`, or leave acrn.head out to fit it in the run)")
    root = load_protocol(cfg.protocol, data_root).image_root
    head = fit_head(CachedEmbedder(embedder, root, cache_dir, progress), data_root, "peta-reid",
                    model_name=embedder.name)  # PETA-ReID-val's train list when the data has it
    head.save(path)
    return embedder, head


def prepare_acrn(cfg: Config, data_root: Path, cache_dir: Path, progress: bool = True) -> Path | None:
    """Write ``run_dir/acrn_attributes.npz`` (once; kept across resumes): the classifier's out-of-fold
    probabilities of the protocol's training images. None when the config does not use ACRN."""
    c = cfg.acrn
    if not c.gamma:
        return None
    if c.gamma < 0:
        raise ValueError(f"{cfg.name}: acrn.gamma must be >= 0 (got {c.gamma})")
    out = cfg.run_dir / TABLE_FILE
    embedder, head = _classifier(cfg, data_root, cache_dir, progress)
    if out.is_file():
        table = AttributeTable.load(out)
        check_binding(out, {"model": table.meta.get("classifier"), "fingerprint": table.meta.get("classifier_fingerprint"),
                            "names": table.names}, {**record(embedder), "names": head.names}, fields=("fingerprint", "names"),
                      what="made with another attribute classifier than the config's", verb="made with",
                      remedy="Delete it to recompute.")
        return out
    protocol = load_protocol(cfg.protocol, data_root)
    train = [r for r in protocol.train if r.pid]
    ao = [r for r in protocol.attribute_only if r.attributes is not None and not held_out(r.path, CALIBRATION_SHARE)]
    feats, kept, _ = cached_embeddings(embedder, protocol.image_root, [r.path for r in train + ao], cache_dir, progress)
    rows = Lookup(kept, feats)
    train = [r for r in train if r.path in rows.row]
    ao = [r for r in ao if r.path in rows.row]
    ao_labels, _ = label_matrix(ao, head.names)
    probs = out_of_fold_probabilities(head, rows(train), train, rows(ao), ao_labels, progress=progress)
    meta = {"classifier": c.classifier, "classifier_fingerprint": embedder.fingerprint,
            "head": str(c.head or cfg.run_dir / HEAD_FILE), "head_source": head.meta.get("source"),
            "images": f"{protocol.name} train list ({len(train)} images), out of fold over identities"}
    AttributeTable([r.path for r in train], head.names, probs, meta).save(out)
    return out


def finish_acrn(cfg: Config, model_file: Path, data_root: Path, cache_dir: Path, progress: bool = True
                ) -> tuple[Path, dict] | None:
    """Write the trained run's fusion (``fusion_path(model_file)``): its learnt attribute weights, the
    classifier, and the mixing of the two distances -- chosen on the validation sets when the run
    trained on PETA-ReID-val (they are its test sets, never trained on), else ``acrn.default_mixing``.
    Returns (path, {mixing: validation mean mAP}) or None when the config does not use ACRN."""
    import torch

    from xreid.models.checkpoint import load_safely
    from xreid.models.loading import load_embedder

    c = cfg.acrn
    if not c.gamma:
        return None
    stored = load_safely(model_file)["meta"]["acrn"]
    weights = stored["weights"].double().numpy() if torch.is_tensor(stored["weights"]) else np.asarray(stored["weights"])
    embedder = load_embedder(model_file)
    classifier, head = _classifier(cfg, data_root, cache_dir, progress)
    if list(stored["names"]) != head.names:
        raise ValueError(f"{model_file}: its attribute weights are for other attributes than the classifier's head")
    scores: dict[float, float] = {}
    mixing = c.default_mixing
    if cfg.protocol.replace("_", "-") == "peta-reid-val":
        protocol = load_protocol(cfg.protocol, data_root)
        images = protocol.test_images()
        keys = [r.path for r in images]
        res = embedder.embed_paths([protocol.image_root / k for k in keys], progress=progress)
        model = Lookup([keys[i] for i in res.kept], res.features)
        a_feats, a_kept, _ = cached_embeddings(classifier, protocol.image_root, keys, cache_dir, progress)
        probs = Lookup(a_kept, head.calibrated(a_feats))
        for mix in c.mixings:
            cand = Fusion(weights, float(mix), head, record(embedder), {})
            _, mean = score_sets(protocol.test_sets, lambda q, g: cand.distances(
                cosine_distance(model(q), model(g)), probs(q), probs(g)))
            scores[float(mix)] = mean["mAP"]
        mixing = max(scores, key=lambda m: (scores[m], -m))
    meta = {"objective": "acrn", "gamma": c.gamma, "protocol": cfg.protocol, "validation_mAP": scores,
            "chosen": {"mixing": mixing, "how": "best validation mean mAP" if scores else "acrn.default_mixing"}}
    fusion = Fusion(weights, float(mixing), head, record(embedder),
                    {"spec": c.classifier, **record(classifier)}, meta)
    out = fusion_path(model_file)
    fusion.save(out)
    return out, scores
