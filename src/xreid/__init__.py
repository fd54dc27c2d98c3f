"""xreid: explainable person re-identification.

The flat library API: load a model, evaluate it on a protocol, rank and explain a gallery.

    import xreid
    model = xreid.load_embedder("default")
    protocol = xreid.load_protocol("peta-reid")
    result = xreid.evaluate(model, protocol)
    head = xreid.load_head("default")
    explained = xreid.explain_query(model, head, query="q.jpg", gallery="gallery/")
    xreid.write_report(explained, "report.html")

Heavy modules (torch, onnxruntime, openvino) load on first use, so ``import xreid`` is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from xreid.data.protocol import Protocol
    from xreid.evaluation.evaluate import ProtocolResult
    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.embedders import Embedder

__all__ = ["__version__", "evaluate", "explain_query", "load_embedder", "load_head", "load_protocol", "write_report"]


def load_embedder(model: str | Path = "default", flip: bool = False, **options) -> "Embedder":
    """A model as a function from person crops to embeddings: ``"default"`` (the bundled model), a
    ``.pt`` checkpoint from ``xreid train``, an ``.onnx`` file or an OpenVINO ``.xml``. ``flip`` averages
    each crop with its mirror image; ``options``: ``backend`` ("auto", or "torch" where gradients are
    needed), ``precision`` (OpenVINO "f32" / "bf16"), ``height``, ``width``, ``channel_order``, ``scale``."""
    from xreid.models.loading import load_embedder as _load

    return _load(model, flip_average=flip, **options)


def load_head(head: str | Path = "default") -> "AttributeHead":
    """An attribute head (the attribute layer with its calibration): ``"default"`` (the bundled model's) or an
    ``.npz`` from ``xreid attributes fit``."""
    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.loading import BUNDLED_HEAD

    return AttributeHead.load(BUNDLED_HEAD if str(head) == "default" else head)


def load_protocol(name: str = "peta-reid", data_root: str | Path | None = None) -> "Protocol":
    """An evaluation protocol (``"peta-reid"`` or a protocol JSON) from the data root (default:
    ``$XREID_DATA_ROOT``, else ``~/.cache/xreid``; prepare it with ``xreid data prepare peta``)."""
    from xreid.data.protocol import load_protocol as _load
    from xreid.paths import resolve_data_root

    return _load(name, resolve_data_root(data_root))


def evaluate(model: "Embedder", protocol: "Protocol", **options) -> "ProtocolResult":
    """CMC and mAP of ``model`` on every test set of ``protocol`` and their mean (``result.mean["mAP"]``);
    ``options``: ``rerank``, ``query_expansion``, ``batch_size``, ``progress``."""
    from xreid.evaluation.evaluate import evaluate_protocol

    return evaluate_protocol(model, protocol, **options)


def explain_query(model: "Embedder", head: "AttributeHead", query=None, gallery=None, **options):
    """Rank ``gallery`` (a folder, CSV list, ``.npz`` or list of image files) for ``query`` and explain
    the top results; see ``xreid.workflows.explain.explain`` for the options. (Not ``xreid.explain``:
    that name is the package of explanation computations.)"""
    from xreid.workflows.explain import explain as _explain

    return _explain(model, head, query, gallery, **options)


def write_report(explained, html: str | Path | None = None, json: str | Path | None = None) -> None:
    """Write an explained ranking as a self-contained HTML report and / or a JSON of every number."""
    from xreid.workflows.explain import write_report as _write

    _write(explained, html, json)
