"""From files to an explained ranking: resolve the query and the gallery, embed, explain, compute
maps, and write the report (HTML) and the data (JSON). What ``xreid explain`` and
``xreid.explain`` do end to end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xreid.data.images import ImageError, load_image
from xreid.data.pids import pid_from_name
from xreid.data.transforms import resize_rgb
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.fusion import Fusion
from xreid.explain.interpretation import InterpretedRanking
from xreid.explain.maps.base import QUERY
from xreid.explain.maps.compute import MapSet, compute_maps, parse_kinds
from xreid.explain.query_check import check_query
from xreid.explain.ranking import RankingExplanation, ResultExplanation, check_options, explain_ranking, parse_filter
from xreid.io import atomic_write, write_json
from xreid.models.embedders import Embedder
from xreid.paths import resolve_data_root

GallerySpec = Path | str | Sequence[Path | str]
log = logging.getLogger(__name__)


@dataclass
class Gallery:
    """Embedded gallery items: key (path relative to the data root), file, vector, known person id."""

    keys: list[str]
    paths: list[Path]
    features: np.ndarray
    pids: list[str | None]
    skipped: list[str] = field(default_factory=list)


@dataclass
class Explained:
    """An explained ranking with everything needed to draw or save it."""

    explanation: RankingExplanation
    query_path: Path
    gallery: Gallery
    skipped: list[str]
    notes: list[str] = field(default_factory=list)
    maps: MapSet | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)  # model-size images the maps lie on
    interpretation: InterpretedRanking | None = None  # the interpreter's parts (``--interpreter``)

    @property
    def results(self) -> list[ResultExplanation]:
        return self.explanation.results

    def to_dict(self, map_files: list[str] | None = None) -> dict:
        """Every number of the explanation, the files skipped, the notes and (if any) the maps."""
        data = {**asdict(self.explanation), "skipped": self.skipped, "notes": self.notes}
        if self.interpretation is not None:
            data["interpreter"] = asdict(self.interpretation)
        if self.maps is not None:
            files = map_files or [None] * len(self.maps.maps)
            data["maps"] = {
                "seconds": self.maps.seconds, "substituted_by_occlusion": self.maps.substituted,
                "maps": [{"kind": m.kind, "label": m.label, "image": m.image, "pair": m.pair, "file": f,
                          "all_zero": m.is_empty, "max": float(np.max(m.values, initial=0.0))}
                         for m, f in zip(self.maps.maps, files)]}
        return data


def _key(path: Path, root: Path) -> str:
    """``path`` relative to the data root when it lies inside it, else as given (no link resolution:
    a link loop must give a clear error from the image reader, not a traceback here)."""
    absolute, base = os.path.abspath(path), os.path.abspath(root)
    return Path(os.path.relpath(absolute, base)).as_posix() if absolute.startswith(base + os.sep) else Path(path).as_posix()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _embed_files(embedder: Embedder, paths: list[Path], keys: list[str], pids: list[str | None],
                 skipped: list[str]) -> Gallery:
    res = embedder.embed_paths(paths, progress=len(paths) > 500)
    return Gallery([keys[i] for i in res.kept], [paths[i] for i in res.kept], res.features,
                   [pids[i] for i in res.kept], skipped + [str(e) for e in res.skipped])


def load_gallery(embedder: Embedder, gallery: GallerySpec, root: Path) -> Gallery:
    """A gallery from a folder of images, a CSV list (``path[,person_id[,camera]]``, paths relative to
    the data root), an ``.npz`` from ``xreid embed``, or a list of image files. Person ids are taken
    only from a CSV column or a dataset naming convention (``xreid.data.pids``)."""
    from xreid.data.folder import load_folder, load_list
    from xreid.data.peta import LoadReport

    if not isinstance(gallery, (str, Path)):
        paths = [Path(p) for p in gallery]
        keys = [_key(p, root) for p in paths]
        return _embed_files(embedder, paths, keys, [pid_from_name(k) for k in keys], [])
    gallery = Path(gallery)
    if gallery.suffix == ".npz":
        from xreid.index.features import MODEL_FIELDS, check_same_model, load_features_with_identity

        feats, stored = load_features_with_identity(gallery)
        if not feats:
            raise ValueError(f"{gallery}: no embeddings in this file")
        if stored is None:
            log.warning("%s records no model identity (an older xreid wrote it): cannot check that %s embedded it",
                        gallery, embedder.name)
        else:
            check_same_model(gallery, stored, embedder.identity(), fields=MODEL_FIELDS,
                             remedy=f"Its vectors cannot be compared with this model's: embed the gallery again with "
                                    f"`xreid embed --model {embedder.name} ...`.")
        keys = list(feats)
        return Gallery(keys, [root / k for k in keys], np.stack([feats[k] for k in keys]),
                       [pid_from_name(k) for k in keys])
    report = LoadReport()
    if gallery.suffix.lower() in (".csv", ".txt") and gallery.is_file():
        records = load_list(gallery, report)
        paths = [root / r.path for r in records]
        pids = [r.pid or pid_from_name(r.path) for r in records]
    elif gallery.is_dir():
        records = load_folder(gallery, root=gallery, report=report)
        paths = [gallery / r.path for r in records]
        pids = [pid_from_name(_key(p, root)) for p in paths]
    elif not gallery.exists():
        raise FileNotFoundError(f"{gallery}: gallery not found")
    else:
        raise ValueError(f"{gallery}: gallery must be a folder of images, a CSV list (.csv, with a header row) "
                         f"or an .npz of embeddings")
    return _embed_files(embedder, paths, [_key(p, root) for p in paths], pids, list(report.problems))


def _leave_out_query(gal: Gallery, query_path: Path, query_key: str) -> tuple[Gallery, list[str]]:
    """The gallery without the query's own file (it would come back at rank 1, d = 0)."""
    own = [i for i, (k, p) in enumerate(zip(gal.keys, gal.paths)) if k == query_key or _same_file(p, query_path)]
    if not own:
        return gal, []
    keep = [i for i in range(len(gal.keys)) if i not in set(own)]
    left = [gal.keys[i] for i in own]
    trimmed = Gallery([gal.keys[i] for i in keep], [gal.paths[i] for i in keep], gal.features[keep],
                      [gal.pids[i] for i in keep], gal.skipped)
    return trimmed, left


def read_query(path: Path) -> np.ndarray:
    """The query image (H x W x 3 uint8 RGB); ValueError naming the file if it cannot be used."""
    try:
        return load_image(path)
    except ImageError as exc:
        raise ValueError(f"query image unusable: {exc}") from None


def model_input(embedder: Embedder, path: Path) -> np.ndarray:
    """The image at ``path`` resized to the model's input (H x W x 3 uint8 RGB); ValueError if unusable."""
    return resize_rgb(read_query(path), embedder.preprocess.size)


def explain(embedder: Embedder, head: AttributeHead, query: Path | str | None = None,
            gallery: GallerySpec | None = None, *, data_root: Path | str | None = None,
            protocol: str | None = None, test_set: str | None = None, query_index: int = 0,
            query_id: str | None = None, top_k: int = 10, threshold: float = 0.3, filter: str | None = None,
            filter_mode: str = "rerank", maps: str | Sequence[str] | None = None, map_dims: int = 5,
            model_name: str | None = None, interpreter=None, fusion: Fusion | None = None,
            attribute_embedder: Embedder | None = None) -> Explained:
    """Rank a gallery for a query and explain the top ``top_k`` results (docs/METHODS.md).

    Either ``query`` and ``gallery`` (a folder, CSV list, ``.npz`` or list of image files), or a
    ``protocol`` test set and ``query_index``. ``maps``: any of pair, attention, attributes (Grad-CAM:
    they need a PyTorch embedder, ``load_embedder(..., backend="torch")``; other backends get
    occlusion maps instead) and occlusion. ``interpreter`` (``xreid.models.interpreter.Interpreter``
    fitted on this model) adds its per-attribute parts of each result's distance and its attention
    maps. ``fusion`` (``xreid fuse fit``; ``attribute_embedder`` is the model its attribute head
    reads, by default ``embedder``) ranks by the fused distance and splits it into the model's part
    and each attribute's part. Options are checked before any image is embedded.
    """
    root = resolve_data_root(data_root)
    check_options(top_k, threshold)
    wanted = parse_filter(filter, head.names)
    kinds = parse_kinds(maps) if isinstance(maps, (str, type(None))) else parse_kinds(",".join(maps))
    head.check_model(embedder, "attribute head")
    if interpreter is not None:
        from xreid.workflows.interpret import check_target

        check_target(interpreter, embedder, "interpreter")
    if fusion is not None:
        fusion.check_model(embedder)
        fusion.check_vocabulary(head.names, "attribute head of the explanation")
    notes: list[str] = []
    if protocol:
        from xreid.data.protocol import load_protocol

        proto = load_protocol(protocol, root)
        sets = {t.name: t for t in proto.test_sets}
        ts = sets.get(test_set or next(iter(sets)))
        if ts is None:
            raise ValueError(f"unknown test set {test_set!r}; choose from {', '.join(sets)}")
        if not 0 <= query_index < len(ts.query):
            raise ValueError(f"query index {query_index} out of range (test set {ts.name} has {len(ts.query)} queries)")
        q_rec = ts.query[query_index]
        query_path, query_key, query_id = proto.image_root / q_rec.path, q_rec.path, query_id or q_rec.pid
        original = read_query(query_path)
        gal = _embed_files(embedder, [proto.image_root / r.path for r in ts.gallery], [r.path for r in ts.gallery],
                           [r.pid for r in ts.gallery], [])
    else:
        if query is None or gallery is None:
            raise ValueError("give a query and a gallery (a folder, a CSV list or an .npz), or a protocol and test set")
        query_path = Path(query)
        query_key = _key(query_path, root)
        query_id = query_id or pid_from_name(query_key)
        original = read_query(query_path)
        gal = load_gallery(embedder, gallery, root)
        gal, left_out = _leave_out_query(gal, query_path, query_key)
        if left_out:
            notes.append(f"The query itself is in the gallery ({', '.join(left_out)}); it was left out of the ranking.")
    out = explain_gallery(embedder, head, original, query_path, query_key, gal, query_id=query_id, notes=notes,
                          top_k=top_k, threshold=threshold, wanted=wanted, filter_mode=filter_mode, kinds=kinds,
                          map_dims=map_dims, model_name=model_name, fusion=fusion,
                          attribute_embedder=attribute_embedder)
    if interpreter is not None:
        _interpret(out, interpreter, original)
    return out


def explain_gallery(embedder: Embedder, head: AttributeHead, original: np.ndarray, query_path: Path, query_key: str,
                    gal: Gallery, *, query_id: str | None = None, notes: list[str] | None = None, top_k: int = 10,
                    threshold: float = 0.3, wanted: dict[str, bool] | None = None, filter_mode: str = "rerank",
                    kinds: Sequence[str] = (), map_dims: int = 5, model_name: str | None = None,
                    query_feature: np.ndarray | None = None, fusion: Fusion | None = None,
                    attribute_embedder: Embedder | None = None) -> Explained:
    """``explain`` once the query image (``original``, H x W x 3 RGB) is read and the gallery embedded
    (the server passes rows of its index). ``query_feature`` replaces the query image's embedding (a
    query made of several images); the maps are then drawn on ``original``."""
    notes = list(notes or [])
    if len(gal.keys) == 0:
        raise ValueError("no usable gallery image" + (f" ({len(gal.skipped)} skipped)" if gal.skipped else ""))
    query_image = resize_rgb(original, embedder.preprocess.size)
    q_feat = embedder.embed_arrays([query_image])[0] if query_feature is None else query_feature
    fusion_probs = None
    if fusion is not None:
        fusion_probs, gal = _fusion_probabilities(fusion, attribute_embedder or embedder, embedder, original,
                                                  q_feat, query_feature is not None, gal)
    explanation = explain_ranking(q_feat, gal.features, gal.keys, head, top_k=top_k, threshold=threshold,
                                  gallery_pids=gal.pids, query_pid=query_id, filter_spec=wanted,
                                  filter_mode=filter_mode, query_key=query_key,
                                  model=model_name or embedder.name, query_check=check_query(original),
                                  fusion=fusion, fusion_probabilities=fusion_probs)
    identical = [r.key for r in explanation.results if r.identical_to_query]
    if identical:
        notes.append(f"{len(identical)} result(s) are the same picture as the query (distance 0): "
                     f"{', '.join(identical)}.")
    out = Explained(explanation, query_path, gal, gal.skipped, notes)
    if kinds:
        paths = dict(zip(gal.keys, gal.paths))
        out.images = {QUERY: query_image}
        for r in explanation.results:
            out.images[r.key] = model_input(embedder, paths[r.key])
        out.maps = compute_maps(embedder, head, explanation, out.images, kinds, k=map_dims)
        if out.maps.substituted:
            notes.append(f"This model has no gradients: occlusion maps were drawn instead of "
                         f"{', '.join(out.maps.substituted)} maps.")
    return out


def _fusion_probabilities(fusion: Fusion, attribute_embedder: Embedder, embedder: Embedder, original: np.ndarray,
                          q_feat: np.ndarray, given_query: bool, gal: Gallery) -> tuple[tuple, Gallery]:
    """The fusion's attribute probabilities of the query and the gallery (read by its attribute
    model: the re-id embeddings themselves when that is the model, else each image embedded again);
    gallery items the attribute model cannot read are left out of the ranking."""
    if attribute_embedder is embedder:
        return (fusion.probabilities(q_feat[None])[0], fusion.probabilities(gal.features)), gal
    if given_query:
        raise ValueError("a query given as an embedding cannot be fused with another model's attributes")
    q = attribute_embedder.embed_arrays([resize_rgb(original, attribute_embedder.preprocess.size)])[0]
    res = attribute_embedder.embed_paths(gal.paths, progress=len(gal.paths) > 500)
    if len(res.kept) < len(gal.keys):
        keep = res.kept
        gal = Gallery([gal.keys[i] for i in keep], [gal.paths[i] for i in keep], gal.features[keep],
                      [gal.pids[i] for i in keep], gal.skipped + [str(e) for e in res.skipped])
    return (fusion.probabilities(q[None])[0], fusion.probabilities(res.features)), gal


def _interpret(out: Explained, interpreter, query_image: np.ndarray) -> None:
    """Add the interpreter's parts and attention maps to an explained ranking."""
    from xreid.workflows.interpret import interpret_ranking

    paths = dict(zip(out.gallery.keys, out.gallery.paths))
    results = out.explanation.results
    images = [read_query(paths[r.key]) for r in results]
    out.interpretation, maps = interpret_ranking(interpreter, query_image, images, [r.key for r in results],
                                                 [r.distance for r in results])
    out.images.setdefault(QUERY, query_image)
    for r, im in zip(results, images):
        out.images.setdefault(r.key, im)
    if out.maps is None:
        out.maps = MapSet()
    out.maps.maps += maps
    out.maps.seconds["interpreter"] = out.interpretation.seconds
    if out.interpretation.absent:
        out.notes.append(f"{len(out.interpretation.absent)} attribute(s) never appeared in the interpreter's "
                         f"training data; their parts carry no attribute meaning and are never named: "
                         f"{', '.join(out.interpretation.absent)}.")


def maps_folder(out_html: Path) -> Path:
    """Where a report's map PNGs go: ``REPORT_maps/`` beside ``REPORT.html``."""
    return out_html.with_name(out_html.stem + "_maps")


def write_report(explained: Explained, out_html: Path | str | None = None, out_json: Path | str | None = None) -> None:
    """Write the self-contained HTML report and / or the JSON of every number (atomically); map
    pictures (JPEG) go to ``REPORT_maps/`` and the JSON points to them."""
    import re

    from xreid.rendering.maps import draw_maps

    pictures = draw_maps(explained.maps.maps, explained.images) if explained.maps else []
    files: list[str] = []
    if pictures and out_html is not None:
        folder = maps_folder(Path(out_html))
        for i, p in enumerate(pictures):
            m = p.saliency
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{i:03d}_{m.kind}_{m.image}_{m.pair or ''}_{m.label}")[:160]
            atomic_write(folder / f"{name}.jpg", lambda fh, jpeg=p.jpeg: fh.write(jpeg))
            files.append(str(folder / f"{name}.jpg"))
    if out_json is not None:
        write_json(out_json, explained.to_dict(files or None))
    if out_html is not None:
        page = render_explained(explained, pictures)
        atomic_write(out_html, lambda fh: fh.write(page.encode()))


def render_explained(explained: Explained, pictures: list | None = None, notes: list[str] | None = None) -> str:
    """The self-contained HTML report of ``explained`` (its maps drawn unless ``pictures`` are given;
    ``notes`` replace its notes)."""
    from xreid.rendering.maps import draw_maps
    from xreid.rendering.report import render_report

    if pictures is None:
        pictures = draw_maps(explained.maps.maps, explained.images) if explained.maps else []
    return render_report(explained.explanation, explained.query_path,
                         dict(zip(explained.gallery.keys, explained.gallery.paths)), pictures,
                         skipped=explained.skipped, notes=explained.notes if notes is None else notes,
                         interpretation=explained.interpretation)
