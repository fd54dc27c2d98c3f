"""Visual explanations for an explained ranking: which maps, for which images, with which backend.

PyTorch models get Grad-CAM maps (pair, attention, attribute); black-box models (ONNX, OpenVINO)
get occlusion maps (pair similarity, attribute probability). Returns the maps as data plus where
their PNGs were written; drawing is done by ``render``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import torch

from xreid.data.images import load_image
from xreid.data.transforms import resize_rgb
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.maps.base import SaliencyMap
from xreid.explain.ranking import RankingExplanation
from xreid.models.embedders import Embedder, TorchEmbedder

MAP_KINDS = ("pair", "attention", "attributes")


def parse_kinds(text: str | None) -> list[str]:
    kinds = [k.strip() for k in (text or "").split(",") if k.strip()]
    bad = [k for k in kinds if k not in MAP_KINDS]
    if bad:
        raise ValueError(f"--maps: unknown map type(s) {bad}; choose from {', '.join(MAP_KINDS)}")
    return kinds


def dominant_attributes(explanation: RankingExplanation, per_result: int = 1) -> dict[str, list[str]]:
    """For each result, the attributes with the largest exact-decomposition parts of its distance."""
    names = explanation.attribute_names
    return {r.key: [names[a] for a in np.argsort(r.exact_parts)[::-1][:per_result] if r.exact_parts[a] > 0]
            for r in explanation.results}


def compute_maps(embedder: Embedder, head: AttributeHead, explanation: RankingExplanation, query_path: Path,
                 gallery_paths: dict[str, Path], kinds: list[str], k: int = 5) -> tuple[list[SaliencyMap], dict[str, float], dict[str, np.ndarray]]:
    """All requested maps for the query and the explained results, seconds per map type, and the images."""
    size = embedder.preprocess.size
    images = {"query": resize_rgb(load_image(query_path), size)}
    for r in explanation.results:
        images[r.key] = resize_rgb(load_image(gallery_paths[r.key]), size)
    keys = [r.key for r in explanation.results]
    dominant = dominant_attributes(explanation)
    maps: list[SaliencyMap] = []
    seconds: dict[str, float] = {}
    if isinstance(embedder, TorchEmbedder):
        from xreid.explain.maps.attention import implicit_attention
        from xreid.explain.maps.attribute import attribute_maps
        from xreid.explain.maps.pair import pair_maps

        model = embedder.model
        tensor = {key: torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255).unsqueeze(0) for key, im in images.items()}
        if "pair" in kinds and keys:
            t = time.perf_counter()
            _, q_maps, g_maps = pair_maps(model, tensor["query"], torch.cat([tensor[key] for key in keys]), k, keys)
            for key, qrow, grow in zip(keys, q_maps, g_maps):
                for qm in qrow:
                    qm.image = f"query|{key}"
                maps += qrow + grow
            seconds["pair"] = time.perf_counter() - t
        if "attention" in kinds:
            t = time.perf_counter()
            maps += [implicit_attention(model, tensor[key], key=key) for key in ["query"] + keys]
            seconds["attention"] = time.perf_counter() - t
        if "attributes" in kinds:
            t = time.perf_counter()
            wanted = sorted({a for attrs in dominant.values() for a in attrs})
            maps += attribute_maps(model, head, tensor["query"], wanted, key="query")
            for key in keys:
                maps += attribute_maps(model, head, tensor[key], dominant[key], key=key)
            seconds["attributes"] = time.perf_counter() - t
    else:
        from xreid.explain.maps.occlusion import occlusion_attribute, occlusion_pair

        feats = embedder.embed_arrays(np.stack([images[key] for key in ["query"] + keys]))
        if "pair" in kinds or "attention" in kinds:
            t = time.perf_counter()
            for i, key in enumerate(keys):
                maps.append(occlusion_pair(embedder, images[key], feats[0], key))
                m = occlusion_pair(embedder, images["query"], feats[1 + i], f"query|{key}")
                maps.append(m)
            seconds["occlusion-pair"] = time.perf_counter() - t
        if "attributes" in kinds:
            t = time.perf_counter()
            for key in keys:
                for a in dominant[key]:
                    maps.append(occlusion_attribute(embedder, head, images[key], a, key))
            seconds["occlusion-attribute"] = time.perf_counter() - t
    return maps, seconds, images


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:120]


def maps_for_report(embedder: Embedder, head: AttributeHead, kinds: list[str], out_dir: Path, k: int = 5):
    """A ``maps_for`` callback for ``explain_query``: computes maps, writes PNGs to ``out_dir``, and
    returns {'json': entries pointing to the PNGs, 'html': {image key: {label: data URI}}}."""
    from xreid.explain.maps.render import data_uri, overlay_png
    from xreid.io import atomic_write

    def callback(explanation: RankingExplanation, query_path: Path, gallery) -> dict:
        maps, seconds, images = compute_maps(embedder, head, explanation, query_path,
                                             dict(zip(gallery.keys, gallery.paths)), kinds, k)
        out_dir.mkdir(parents=True, exist_ok=True)
        entries, html = [], {}
        for i, m in enumerate(maps):
            base_key = m.image.split("|")[0]
            png = overlay_png(images["query" if base_key == "query" else base_key], m)
            path = out_dir / f"{i:03d}_{m.kind}_{_slug(m.image)}_{_slug(m.label)}.png"
            atomic_write(path, lambda fh, png=png: fh.write(png))
            entries.append({"kind": m.kind, "label": m.label, "image": m.image, "png": str(path),
                            "all_zero": m.is_empty, "max": float(np.max(m.values, initial=0.0))})
            owner = m.image.split("|")[1] if m.image.startswith("query|") else m.image
            prefix = "query: " if m.image.startswith("query") else ""
            owner = "__query__" if m.image == "query" else owner
            html.setdefault(owner, {})[f"{prefix}{m.kind} {m.label}"] = data_uri(png)
        return {"json": {"maps": entries, "seconds": seconds}, "html": html}

    return callback
