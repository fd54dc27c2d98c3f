"""Visual explanations for an explained ranking: which maps, for which images, with which method.

``occlusion`` works for every model (it needs only embeddings); ``pair``, ``attention`` and
``attributes`` are Grad-CAM maps and need an xreid PyTorch model. A black-box model asked for a
Grad-CAM kind gets the occlusion map of the same question instead, and the result says so.
Returns data (``MapSet``); ``xreid.rendering.maps`` draws it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from xreid.explain.attribute_head import AttributeHead
from xreid.explain.maps.base import QUERY, SaliencyMap
from xreid.explain.ranking import RankingExplanation
from xreid.models.embedders import Embedder, TorchEmbedder

GRADIENT_KINDS = ("pair", "attention", "attributes")
MAP_KINDS = GRADIENT_KINDS + ("occlusion",)
#: what a report of one xreid model draws when no map type is named (less those measured near chance:
#: ``quality.default_map_choice``); black-box models get none (occlusion costs seconds per result)
DEFAULT_KINDS = ("pair",)
#: map methods added beside the built-in kinds, by name: ``method(embedder, head, images, keys,
#: dominant) -> list[SaliencyMap]`` (``images`` and ``dominant`` as ``compute_maps`` has them). A new
#: method is one module that calls ``register_map``, plus its line in ``MAP_MODULES``.
MAP_METHODS: dict[str, Callable] = {}
#: the modules that register map methods (imported when the kinds are first needed)
MAP_MODULES: tuple[str, ...] = ()


def register_map(name: str, method: Callable) -> Callable:
    """Make ``method`` a map kind called ``name`` (``--maps name``)."""
    if name in MAP_KINDS:
        raise ValueError(f"map kind {name!r} is built in")
    MAP_METHODS[name] = method
    return method


def map_kinds() -> tuple[str, ...]:
    """Every map kind: the built-in ones, then the registered methods."""
    import importlib

    for module in MAP_MODULES:
        importlib.import_module(module)
    return MAP_KINDS + tuple(MAP_METHODS)


@dataclass
class MapSet:
    """The maps of one explained ranking, the seconds each map type took, and what was substituted."""

    maps: list[SaliencyMap] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    substituted: list[str] = field(default_factory=list)  # Grad-CAM kinds answered by occlusion


def parse_kinds(text: str | None) -> list[str]:
    """``"pair,occlusion"`` -> ["pair", "occlusion"]; unknown or repeated names are an error."""
    kinds = [k.strip() for k in (text or "").split(",") if k.strip()]
    known = map_kinds()
    bad = [k for k in kinds if k not in known]
    if bad:
        raise ValueError(f"--maps: unknown map type(s) {', '.join(bad)}; choose from {', '.join(known)}")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"--maps: a map type is named twice ({text})")
    return kinds


def dominant_attributes(explanation: RankingExplanation, per_result: int = 1) -> dict[str, list[str]]:
    """For each result, the attributes its explanation names first (the most likely reliable
    differences), else its reliable attributes with the largest parts of the distance."""
    names = explanation.attribute_names
    reliable = explanation.attribute_reliable or [True] * len(names)
    out = {}
    for r in explanation.results:
        named = [d.name for d in r.summary.differences] if r.summary is not None else []
        by_part = [names[a] for a in np.argsort(r.exact_parts)[::-1] if r.exact_parts[a] > 0 and reliable[a]]
        out[r.key] = list(dict.fromkeys(named + by_part))[:per_result]
    return out


def _timed(seconds: dict[str, float], kind: str, make) -> list[SaliencyMap]:
    tic = time.perf_counter()
    out = make()
    seconds[kind] = seconds.get(kind, 0.0) + time.perf_counter() - tic
    return out


def _gradcam_maps(model: torch.nn.Module, head: AttributeHead, images: dict[str, np.ndarray], keys: list[str],
                  dominant: dict[str, list[str]], kinds: list[str], k: int, seconds: dict[str, float]) -> list[SaliencyMap]:
    from xreid.explain.maps.attention import implicit_attention
    from xreid.explain.maps.attribute import attribute_maps
    from xreid.explain.maps.pair import pair_maps, summed_pair_maps

    tensor = {key: torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255).unsqueeze(0)
              for key, im in images.items()}
    maps: list[SaliencyMap] = []
    if "pair" in kinds and keys:
        def pairs() -> list[SaliencyMap]:
            _, q_maps, g_maps = pair_maps(model, tensor[QUERY], torch.cat([tensor[key] for key in keys]), k, keys)
            per_dim = [m for q_row, g_row in zip(q_maps, g_maps) for m in q_row + g_row]
            return summed_pair_maps(per_dim) + per_dim
        maps += _timed(seconds, "pair", pairs)
    if "attention" in kinds:
        maps += _timed(seconds, "attention",
                       lambda: [implicit_attention(model, tensor[key], key=key) for key in [QUERY] + keys])
    if "attributes" in kinds:
        def attrs() -> list[SaliencyMap]:
            wanted = sorted({a for attrs in dominant.values() for a in attrs})
            out = attribute_maps(model, head, tensor[QUERY], wanted, key=QUERY)
            for key in keys:
                out += attribute_maps(model, head, tensor[key], dominant[key], key=key)
            return out
        maps += _timed(seconds, "attributes", attrs)
    return maps


def _occlusion_maps(embedder: Embedder, head: AttributeHead, images: dict[str, np.ndarray], keys: list[str],
                    dominant: dict[str, list[str]], pairs: bool, attributes: bool,
                    seconds: dict[str, float]) -> list[SaliencyMap]:
    from xreid.explain.maps.occlusion import occlusion_attribute, occlusion_pair

    maps: list[SaliencyMap] = []
    if pairs and keys:
        def pair_maps() -> list[SaliencyMap]:
            feats = embedder.embed_arrays(np.stack([images[key] for key in [QUERY] + keys]))
            out = []
            for i, key in enumerate(keys):
                out.append(occlusion_pair(embedder, images[key], feats[0], key))
                out.append(occlusion_pair(embedder, images[QUERY], feats[1 + i], QUERY, pair=key))
            return out
        maps += _timed(seconds, "occlusion-pair", pair_maps)
    if attributes:
        maps += _timed(seconds, "occlusion-attribute", lambda: [
            occlusion_attribute(embedder, head, images[key], a, key) for key in keys for a in dominant[key]])
    return maps


def compute_maps(embedder: Embedder, head: AttributeHead, explanation: RankingExplanation,
                 images: dict[str, np.ndarray], kinds: list[str], k: int = 5) -> MapSet:
    """The requested maps for the query and the explained results.

    ``images`` holds the query (key ``QUERY``) and every result, resized to the model's input size
    (H x W x 3 uint8 RGB). ``k`` is the number of embedding dims per pair for Grad-CAM pair maps.
    """
    keys = [r.key for r in explanation.results]
    dominant = dominant_attributes(explanation)
    out = MapSet()
    gradient = [kind for kind in kinds if kind in GRADIENT_KINDS]
    if gradient and isinstance(embedder, TorchEmbedder):
        out.maps += _gradcam_maps(embedder.model, head, images, keys, dominant, gradient, k, out.seconds)
        gradient = []
    out.substituted = gradient
    pairs = "occlusion" in kinds or "pair" in gradient or "attention" in gradient
    out.maps += _occlusion_maps(embedder, head, images, keys, dominant, pairs, "attributes" in gradient, out.seconds)
    for kind in kinds:
        if kind in MAP_METHODS:
            out.maps += _timed(out.seconds, kind, lambda m=MAP_METHODS[kind]: m(embedder, head, images, keys, dominant))
    return out
