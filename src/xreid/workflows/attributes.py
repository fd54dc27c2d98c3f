"""``xreid attributes fit`` / ``eval``: the attribute layer of a model, fitted and scored on a protocol."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xreid.data.peta import PROTOCOL_FILES
from xreid.data.records import ImageRecord
from xreid.data.splits import CALIBRATION_SHARE, held_out  # noqa: F401 - re-exported (workflows.fuse)

from xreid.explain.attribute_head import AttributeHead, fit_attribute_head
from xreid.models.embedders import Embedder

log = logging.getLogger(__name__)


#: Fewer held-out images than this cannot calibrate 57 attributes: the head is then left uncalibrated.
MIN_CALIBRATION_IMAGES = 50


def calibration_split(data_root: Path, protocol: str) -> tuple[list[ImageRecord], list[ImageRecord], str]:
    """(fit images, calibration images, description) for a PETA-style protocol.

    PETA-ReID has a validation twin (PETA-ReID-val): the head fits on its train split (the training
    identities minus the validation ones) and most attribute-only images, and is calibrated on the
    validation query / gallery images and the held-out attribute-only images. Any other protocol:
    20 % of its training identities are held out instead."""
    from xreid.data.protocol import load_protocol

    proto = load_protocol(protocol, data_root)
    ao_fit = [r for r in proto.attribute_only if not held_out(r.path, CALIBRATION_SHARE)]
    ao_cal = [r for r in proto.attribute_only if held_out(r.path, CALIBRATION_SHARE)]
    if protocol in ("peta-reid", "peta_reid") and (data_root / "peta" / PROTOCOL_FILES["peta-reid-val"]).is_file():
        val = load_protocol("peta-reid-val", data_root)
        return (val.train + ao_fit, val.test_images() + ao_cal,
                f"fit: {val.name} train + 70 % of attribute_only; calibrated on {val.name} test sets + "
                f"the other 30 % of attribute_only")
    train_fit = [r for r in proto.train if not held_out(r.pid or r.path, 0.2)]
    train_cal = [r for r in proto.train if held_out(r.pid or r.path, 0.2)]
    return (train_fit + ao_fit, train_cal + ao_cal,
            f"fit: {proto.name} train (80 % of identities) + 70 % of attribute_only; calibrated on the rest")


def fit_head(embedder: Embedder, data_root: Path, protocol: str = "peta-reid", market_root: Path | None = None,
             market_attributes: Path | None = None, epochs: int = 300, model_name: str = "",
             cache: Path | None = None, names: list[str] | None = None) -> AttributeHead:
    """Fit the bias-free attribute layer on frozen embeddings (PETA vocabulary on a protocol, or
    Market-1501's 30 attributes), then calibrate its probabilities and measure each attribute's
    reliability on held-out images of other identities (docs/METHODS.md#attribute-calibration).
    ``cache``: an embedding cache folder (one file per model or part), so an interrupted fit resumes;
    ``names``: the PETA attributes to fit (default: the 57 xreid explains with)."""
    from xreid.data.peta import EXPLANATION_ATTRIBUTES
    from xreid.evaluation.attributes import labelled_embeddings

    if market_root is not None:
        from xreid.data.market import MARKET_ATTRIBUTES, load_market, load_market_attributes

        if market_attributes is None:
            raise ValueError("--market-root needs --market-attributes market_attribute.mat")
        records = load_market(market_root, "bounding_box_train", load_market_attributes(market_attributes))
        fit_recs = [r for r in records if not held_out(r.pid or r.path, 0.2)]
        cal_recs = [r for r in records if held_out(r.pid or r.path, 0.2)]
        root, names = market_root, MARKET_ATTRIBUTES
        source = f"Market-1501 {market_root}: fit on 80 % of the training identities, calibrated on the rest"
    else:
        from xreid.data.protocol import load_protocol

        fit_recs, cal_recs, source = calibration_split(data_root, protocol)
        root, names = load_protocol(protocol, data_root).image_root, names or EXPLANATION_ATTRIBUTES
    if cache is not None:
        from xreid.workflows.embedding_cache import CachedEmbedder

        embedder = CachedEmbedder(embedder, root, cache)
    feats, labels, kept = labelled_embeddings(embedder, root, fit_recs + cal_recs, names)
    fit_paths = {r.path for r in fit_recs}
    is_fit = np.array([r.path in fit_paths for r in kept], bool)
    if not is_fit.any():
        raise ValueError(f"attribute head: no labelled image to fit on ({source})")
    calibrate = (~is_fit).sum() >= MIN_CALIBRATION_IMAGES
    if not calibrate:  # too small a data set to hold images out: fit on everything, say so
        log.warning("only %d held-out labelled images: the attribute head is fitted on all images and left "
                    "uncalibrated (every attribute counts as reliable)", int((~is_fit).sum()))
        is_fit[:] = True
        source += "; too few held-out images: fitted on all, not calibrated"
    meta = {"model": model_name or embedder.name, "source": source, "embedder": embedder.name,
            "model_fingerprint": getattr(embedder, "fingerprint", None),
            "calibration_images": int((~is_fit).sum())}
    return fit_calibrated(feats, labels, is_fit, names, epochs, meta, calibrate)


def fit_calibrated(feats: np.ndarray, labels: np.ndarray, is_fit: np.ndarray, names, epochs: int, meta: dict,
                   calibrate: bool = True) -> AttributeHead:
    """The layer fitted on the rows ``is_fit``, then calibrated and its reliability measured on the others."""
    head = fit_attribute_head(feats[is_fit], labels[is_fit], names, epochs=epochs, meta=meta)
    return calibrated(head, feats[~is_fit], labels[~is_fit]) if calibrate else head


def calibrated(head: AttributeHead, feats: np.ndarray, labels: np.ndarray) -> AttributeHead:
    """``head`` with its calibration fitted and its reliability measured on held-out ``feats`` / ``labels``."""
    from xreid.evaluation.attributes import reliability
    from xreid.explain.calibration import fit_platt

    logits = head.logits(feats)
    head.calibration, head.reliability = fit_platt(logits, labels), reliability(logits, labels)
    return head


def fit_combined(part_feats: list[np.ndarray], labels: np.ndarray, is_fit: np.ndarray, names, rule: str,
                 epochs: int, meta: dict) -> AttributeHead:
    """Each part's layer fitted on the rows ``is_fit`` and calibrated on the others, combined by
    ``rule`` (``head_shares`` on the other rows) into one layer on the parts' concatenation,
    calibrated there again. Compared on PETA-ReID-val with the layer fitted on the concatenation
    itself, which won (docs/RESULTS.md#description-attribute-source)."""
    from xreid.evaluation.attributes import head_shares
    from xreid.explain.attribute_head import combine_heads
    from xreid.models.concat import concatenate_embeddings

    heads = [fit_calibrated(f, labels, is_fit, names, epochs, {}) for f in part_feats]
    y_cal = labels[~is_fit]
    shares = head_shares([h.logits(f[~is_fit]) for h, f in zip(heads, part_feats)], y_cal, rule)
    head = combine_heads(heads, shares, {**meta, "combined": rule, "train_images": int(is_fit.sum()),
                                         "never_positive_in_training": heads[0].meta["never_positive_in_training"]})
    return calibrated(head, concatenate_embeddings([f[~is_fit] for f in part_feats]), y_cal)


def evaluate_head(embedder: Embedder, head: AttributeHead, data_root: Path, protocol: str = "peta-reid") -> dict:
    """Attribute recognition on the protocol's test images: mA and per-attribute rates."""
    from xreid.data.protocol import load_protocol
    from xreid.evaluation.attributes import attribute_report, labelled_embeddings

    head.check_model(embedder, "attribute head")
    proto = load_protocol(protocol, data_root)
    feats, labels, _ = labelled_embeddings(embedder, proto.image_root, proto.test_images(), head.names)
    never = set(head.meta.get("never_positive_in_training", []))  # nothing learnt: left out of mA
    scored = [n for n in (proto.attributes or head.names) if n not in never]
    report = attribute_report(head.predict(feats), labels, head.names, scored)
    report["excluded_never_positive_in_training"] = sorted(never & set(proto.attributes or head.names))
    return report
