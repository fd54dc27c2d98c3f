"""``xreid eval`` end to end: load the protocol, rank each test set by the model's distance (with
re-ranking or query expansion) or by a fusion's fused distance, and score it."""

from __future__ import annotations

from pathlib import Path

from xreid.data.protocol import load_protocol
from xreid.errors import InvalidInput
from xreid.evaluation.evaluate import ProtocolResult, evaluate_protocol
from xreid.models.embedders import Embedder


def evaluate_model(embedder: Embedder, protocol: str, data_root: Path, rerank: bool = False,
                   query_expansion: bool = False, batch_size: int = 64, fusion=None,
                   attribute_embedder: Embedder | None = None, query_cameras: bool = True) -> ProtocolResult:
    """The protocol's figures for ``embedder`` (``fusion``: rank by its fused distance instead, the
    attributes read by ``attribute_embedder``)."""
    if fusion is not None and (rerank or query_expansion):
        raise InvalidInput("--fusion ranks by the fused distance: it cannot be combined with --rerank or "
                           "--query-expansion")
    if fusion is not None and not query_cameras:
        raise InvalidInput("--fusion embeds every image with its camera: it cannot be combined with "
                           "--no-query-cameras")
    proto = load_protocol(protocol, data_root)
    if fusion is not None:
        from xreid.workflows.fuse import evaluate_fused

        return evaluate_fused(embedder, attribute_embedder, fusion, proto, batch_size=batch_size)
    return evaluate_protocol(embedder, proto, rerank=rerank, query_expansion=query_expansion, batch_size=batch_size,
                             query_cameras=query_cameras)
