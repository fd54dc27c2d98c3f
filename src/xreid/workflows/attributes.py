"""``xreid attributes fit`` / ``eval``: the attribute layer of a model, fitted and scored on a protocol."""

from __future__ import annotations

from pathlib import Path

from xreid.explain.attribute_head import AttributeHead, fit_attribute_head
from xreid.models.embedders import Embedder


def fit_head(embedder: Embedder, data_root: Path, protocol: str = "peta-reid", market_root: Path | None = None,
             market_attributes: Path | None = None, epochs: int = 300, model_name: str = "") -> AttributeHead:
    """Fit the bias-free attribute layer on the protocol's train + attribute-only images (PETA
    vocabulary), or on Market-1501's training images with its 30 attributes."""
    from xreid.data.peta import EXPLANATION_ATTRIBUTES
    from xreid.evaluation.attributes import labelled_embeddings

    if market_root is not None:
        from xreid.data.market import MARKET_ATTRIBUTES, load_market, load_market_attributes

        if market_attributes is None:
            raise ValueError("--market-root needs --market-attributes market_attribute.mat")
        labels = load_market_attributes(market_attributes)
        records, root, names = load_market(market_root, "bounding_box_train", labels), market_root, MARKET_ATTRIBUTES
        source = f"Market-1501 {market_root}"
    else:
        from xreid.data.protocol import load_protocol

        proto = load_protocol(protocol, data_root)
        records, root, names = proto.train + proto.attribute_only, proto.image_root, EXPLANATION_ATTRIBUTES
        source = f"{proto.name} train + attribute_only"
    feats, labels_m, _ = labelled_embeddings(embedder, root, records, names)
    meta = {"model": model_name or embedder.name, "source": source, "embedder": embedder.name,
            "model_fingerprint": getattr(embedder, "fingerprint", None)}
    return fit_attribute_head(feats, labels_m, names, epochs=epochs, meta=meta)


def evaluate_head(embedder: Embedder, head: AttributeHead, data_root: Path, protocol: str = "peta-reid") -> dict:
    """Attribute recognition on the protocol's test images: mA and per-attribute rates."""
    from xreid.data.protocol import load_protocol
    from xreid.evaluation.attributes import attribute_report, labelled_embeddings

    head.check_model(embedder, "attribute head")
    proto = load_protocol(protocol, data_root)
    feats, labels, _ = labelled_embeddings(embedder, proto.image_root, proto.test_images(), head.names)
    return attribute_report(head.predict(feats), labels, head.names, proto.attributes or None)
