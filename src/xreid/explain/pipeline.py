"""From files to an explained ranking: resolve the query and gallery, embed, explain, write outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.data.images import ImageError, load_image
from xreid.data.transforms import resize_rgb
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.pids import infer_pid
from xreid.explain.ranking import RankingExplanation, explain_ranking, parse_filter
from xreid.io import atomic_write, write_json
from xreid.models.embedders import Embedder


@dataclass
class Gallery:
    keys: list[str]
    paths: list[Path]
    features: np.ndarray
    pids: list[str | None]
    skipped: list[str] = field(default_factory=list)


@dataclass
class ExplainResult:
    explanation: RankingExplanation
    query_path: Path
    gallery: Gallery
    skipped: list[str]


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def gallery_from_folder(embedder: Embedder, folder: Path, root: Path, exclude: Path | None = None) -> Gallery:
    from xreid.data.folder import load_folder

    records = load_folder(folder, root=folder)
    paths = [folder / r.path for r in records]
    if exclude is not None:
        paths = [p for p in paths if p.resolve() != exclude.resolve()]
    res = embedder.embed_paths(paths, progress=len(paths) > 500)
    keys = [_rel(paths[i], root) for i in res.kept]
    return Gallery(keys, [paths[i] for i in res.kept], res.features, [infer_pid(k) for k in keys],
                   [str(e) for e in res.skipped])


def gallery_from_features(npz: Path, root: Path) -> Gallery:
    from xreid.index.features import load_features

    feats = load_features(npz)
    if not feats:
        raise ValueError(f"{npz}: no embeddings in this file")
    keys = list(feats)
    return Gallery(keys, [root / k for k in keys], np.stack([feats[k] for k in keys]), [infer_pid(k) for k in keys])


def embed_one(embedder: Embedder, path: Path) -> np.ndarray:
    try:
        image = load_image(path)
    except ImageError as exc:
        raise ValueError(f"query image unusable: {exc}") from None
    return embedder.embed_arrays([resize_rgb(image, embedder.preprocess.size)])[0]


def explain_query(embedder: Embedder, head: AttributeHead, data_root: Path, *, query: Path | None = None,
                  gallery: Path | None = None, protocol: str | None = None, test_set: str | None = None,
                  query_index: int = 0, query_id: str | None = None, top_k: int = 10, threshold: float = 0.3,
                  filter_text: str | None = None, filter_mode: str = "rerank", out_html: Path | None = None,
                  out_json: Path | None = None, model_name: str = "", maps_for=None) -> ExplainResult:
    """Explain one query; ``maps_for(explanation, query_path, gallery)`` may add visual maps to the report."""
    wanted = parse_filter(filter_text, head.names)
    if protocol:
        from xreid.data.protocol import load_protocol

        proto = load_protocol(protocol, data_root)
        sets = {t.name: t for t in proto.test_sets}
        ts = sets.get(test_set or next(iter(sets)))
        if ts is None:
            raise ValueError(f"unknown test set {test_set!r}; choose from {', '.join(sets)}")
        if not 0 <= query_index < len(ts.query):
            raise ValueError(f"--query-index {query_index} out of range (test set {ts.name} has {len(ts.query)} queries)")
        q_rec = ts.query[query_index]
        query_path, query_key, query_id = proto.image_root / q_rec.path, q_rec.path, query_id or q_rec.pid
        res = embedder.embed_paths([proto.image_root / r.path for r in ts.gallery], progress=False)
        kept = [ts.gallery[i] for i in res.kept]
        gal = Gallery([r.path for r in kept], [proto.image_root / r.path for r in kept], res.features,
                      [r.pid for r in kept], [str(e) for e in res.skipped])
    else:
        if query is None or gallery is None:
            raise ValueError("give --query and --gallery (a folder or an .npz), or --protocol with --test-set")
        query_path, query_key = query, _rel(query, data_root)
        query_id = query_id or infer_pid(query_key)
        if gallery.suffix == ".npz":
            gal = gallery_from_features(gallery, data_root)
        elif gallery.is_dir():
            gal = gallery_from_folder(embedder, gallery, data_root, exclude=query)
        else:
            raise FileNotFoundError(f"{gallery}: gallery must be a folder of images or an .npz of embeddings")
    if len(gal.keys) == 0:
        raise ValueError("no usable gallery image")
    q_feat = embed_one(embedder, query_path)
    explanation = explain_ranking(q_feat, gal.features, gal.keys, head, top_k=top_k, threshold=threshold,
                                  gallery_pids=gal.pids, query_pid=query_id, filter_spec=wanted,
                                  filter_mode=filter_mode, query_key=query_key, model=model_name)
    data = explanation.to_dict()
    maps = maps_for(explanation, query_path, gal) if maps_for else None
    if maps:
        data["maps"] = maps.get("json", {})
    if out_json:
        write_json(out_json, data)
    if out_html:
        from xreid.explain.report import render_report

        paths = dict(zip(gal.keys, gal.paths))
        page = render_report(data, query_path, paths, maps.get("html") if maps else None)
        atomic_write(out_html, lambda fh: fh.write(page.encode()))
    return ExplainResult(explanation, query_path, gal, gal.skipped)
