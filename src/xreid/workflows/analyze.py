"""``xreid analyze``: embed a protocol's test images and draw the embedding analysis pages."""

from __future__ import annotations

from pathlib import Path

from xreid.explain.attribute_head import AttributeHead
from xreid.explain.embedding_analysis import default_dims, dim_rank_lists, dims_table
from xreid.models.embedders import Embedder


def parse_dims(text: str | None, head: AttributeHead) -> list[int]:
    """``"3,17"`` -> [3, 17] checked against the embedding size; None -> the most attribute-specific dims."""
    if not text:
        return default_dims(head)
    try:
        dims = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise ValueError(f"--dims {text!r}: expected comma-separated integers") from None
    bad = [d for d in dims if not 0 <= d < head.embedding_dim]
    if bad or not dims:
        raise ValueError(f"--dims {text!r}: out of range (dims must lie in 0..{head.embedding_dim - 1})")
    return dims


def analyze(embedder: Embedder, head: AttributeHead, protocol: str, data_root: Path, out: Path,
            dims: str | None = None) -> Path:
    """Write the analysis pages for ``protocol``'s test images to ``out``; returns the index page."""
    from xreid.data.protocol import load_protocol
    from xreid.rendering.analysis import write_analysis

    chosen = parse_dims(dims, head)
    head.check_model(embedder, "attribute head")
    proto = load_protocol(protocol, data_root)
    images = proto.test_images()
    res = embedder.embed_paths([proto.image_root / r.path for r in images], progress=True, cameras=[r.cam for r in images])
    head.check_embedding(res.features, f"{embedder.name} embeddings")
    keys = [images[i].path for i in res.kept]
    return write_analysis(out, dims_table(head), dim_rank_lists(head, res.features, keys, chosen),
                          {k: proto.image_root / k for k in keys}, embedder.name)
