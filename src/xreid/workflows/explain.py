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

from xreid.data import images
from xreid.data.images import ImageError
from xreid.data.pids import pid_from_name
from xreid.data.transforms import resize_rgb
from xreid.distance import cosine_distance
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.fusion import Fusion
from xreid.explain.interpretation import InterpretedRanking
from xreid.explain.maps.base import QUERY
from xreid.explain.maps.compute import MapSet, compute_maps, parse_kinds
from xreid.explain.query_check import check_query
from xreid.explain.ranking import RankingExplanation, ResultExplanation, check_options, explain_ranking
from xreid.explain.sightings import CropPairs, crop_distances, representative_pair, typical_view
from xreid.index.base import Gallery, Hits
from xreid.index.filters import Filter, parse_filter
from xreid.index.memory import MemoryGallery
from xreid.index.metadata import CAMERA, PID
from xreid.io import atomic_write, write_json
from xreid.models.embedders import Embedder
from xreid.paths import resolve_data_root

GallerySpec = Path | str | Sequence[Path | str]
log = logging.getLogger(__name__)
#: the string fields an in-memory gallery knows (from a CSV list, a protocol or a file-name convention)
MEMORY_FIELDS = (PID, CAMERA)


@dataclass
class Explained:
    """An explained ranking with everything needed to draw or save it: the explanation, the gallery
    it was searched in and its hits (images are read through the gallery, decoded once), the query
    image (H x W x 3 RGB) and the maps."""

    explanation: RankingExplanation
    query_path: Path
    gallery: Gallery
    skipped: list[str]
    notes: list[str] = field(default_factory=list)
    maps: MapSet | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)  # model-size images the maps lie on
    interpretation: InterpretedRanking | None = None  # the interpreter's parts (``--interpreter``)
    hits: Hits | None = None
    query_image: np.ndarray | None = None
    #: results read through their crops (``ResultExplanation.crops``): the crop shown, and all its crops
    #: as small pictures for the report's strip, by result key
    shown: dict[str, np.ndarray] = field(default_factory=dict)
    strips: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def results(self) -> list[ResultExplanation]:
        return self.explanation.results

    def picture(self, key: str) -> np.ndarray | Path | None:
        """A result's image for the report (from the gallery's cache), or its path where it cannot be read."""
        if key in self.shown:
            return self.shown[key]
        ids = dict(zip(self.hits.keys, self.hits.ids.tolist())) if self.hits is not None else {}
        if key not in ids:
            return None
        try:
            return self.gallery.image(ids[key])
        except (ImageError, ValueError):
            return None

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
                 skipped: list[str], head: AttributeHead | None = None,
                 cameras: list[str | None] | None = None) -> MemoryGallery:
    res = embedder.embed_paths(paths, progress=len(paths) > 500, cameras=cameras)
    cams = cameras or [None] * len(paths)
    return MemoryGallery([keys[i] for i in res.kept], res.features, [paths[i] for i in res.kept],
                         [pids[i] for i in res.kept], head, fields=[{CAMERA: cams[i]} if cams[i] else {} for i in res.kept],
                         skipped=skipped + [str(e) for e in res.skipped])


def load_gallery(embedder: Embedder, gallery: GallerySpec, root: Path, head: AttributeHead | None = None
                 ) -> MemoryGallery:
    """A gallery from a folder of images, a CSV list (``path[,person_id[,camera]]``, paths relative to
    the data root), an ``.npz`` from ``xreid embed``, or a list of image files. Person ids are taken
    only from a CSV column or a dataset naming convention (``xreid.data.pids``). ``head``: the
    attribute head whose probabilities its filters and explanations read."""
    from xreid.data.folder import load_folder, load_list
    from xreid.data.peta import LoadReport

    if not isinstance(gallery, (str, Path)):
        paths = [Path(p) for p in gallery]
        keys = [_key(p, root) for p in paths]
        return _embed_files(embedder, paths, keys, [pid_from_name(k) for k in keys], [], head)
    gallery = Path(gallery)
    if gallery.suffix == ".npz":
        from xreid.binding import check_binding
        from xreid.index.features import load_features_with_identity

        feats, stored = load_features_with_identity(gallery)
        if not feats:
            raise ValueError(f"{gallery}: no embeddings in this file")
        if stored is None:
            log.warning("%s records no model identity (an older xreid wrote it): cannot check that %s embedded it",
                        gallery, embedder.name)
        else:
            check_binding(gallery, stored, embedder.identity(),
                          remedy=f"Its vectors cannot be compared with this model's: embed the gallery again with "
                                 f"`xreid embed --model {embedder.name} ...`.")
        keys = list(feats)
        return MemoryGallery(keys, np.stack([feats[k] for k in keys]), [root / k for k in keys],
                             [pid_from_name(k) for k in keys], head)
    report = LoadReport()
    cameras = None
    if gallery.suffix.lower() in (".csv", ".txt") and gallery.is_file():
        records = load_list(gallery, report)
        paths = [root / r.path for r in records]
        pids = [r.pid or pid_from_name(r.path) for r in records]
        cameras = [r.cam for r in records]
    elif gallery.is_dir():
        records = load_folder(gallery, root=gallery, report=report)
        paths = [gallery / r.path for r in records]
        pids = [pid_from_name(_key(p, root)) for p in paths]
    elif not gallery.exists():
        raise FileNotFoundError(f"{gallery}: gallery not found")
    else:
        raise ValueError(f"{gallery}: gallery must be a folder of images, a CSV list (.csv, with a header row) "
                         f"or an .npz of embeddings")
    return _embed_files(embedder, paths, [_key(p, root) for p in paths], pids, list(report.problems), head, cameras)


def _leave_out_query(gal: MemoryGallery, query_path: Path, query_key: str) -> tuple[MemoryGallery, list[str]]:
    """The gallery without the query's own file (it would come back at rank 1, d = 0)."""
    own = [i for i, (k, p) in enumerate(zip(gal.keys, gal.paths)) if k == query_key or _same_file(p, query_path)]
    if not own:
        return gal, []
    mine = set(own)
    return gal.subset([i for i in range(len(gal)) if i not in mine]), [gal.keys[i] for i in own]


def read_query(path: Path) -> np.ndarray:
    """The query image (H x W x 3 uint8 RGB); ValueError naming the file if it cannot be used."""
    try:
        return images.load_image(path)
    except ImageError as exc:
        raise ValueError(f"query image unusable: {exc}") from None


def map_choice(maps: str | None, model: str) -> tuple[list[str], list[str]]:
    """The maps ``--maps`` asks for (a named type is always drawn), and the notes of the default choice:
    without ``--maps``, the default kinds (``DEFAULT_KINDS``) for one xreid model, none for black boxes,
    less those the model's map-quality record (``xreid.models.map_quality``) measured near chance
    (``xreid.explain.maps.quality``), each with a note saying why."""
    from xreid.explain.maps.compute import DEFAULT_KINDS
    from xreid.explain.maps.quality import default_map_choice
    from xreid.models.map_quality import load_map_quality
    from xreid.workflows.loading import is_xreid_model

    if maps is not None:
        return ([] if maps.strip() == "none" else parse_kinds(maps)), []
    if not is_xreid_model(model):
        return [], []
    quality = load_map_quality(model)
    return default_map_choice(DEFAULT_KINDS, quality.maps if quality else None)


def explain(embedder: Embedder, head: AttributeHead, query: Path | str | None = None,
            gallery: GallerySpec | None = None, *, data_root: Path | str | None = None,
            protocol: str | None = None, test_set: str | None = None, query_index: int = 0,
            query_id: str | None = None, top_k: int = 10, threshold: float = 0.3, filter: str | dict | Filter | None = None,
            filter_mode: str = "rerank", maps: str | Sequence[str] | None = None, map_dims: int = 5,
            model_name: str | None = None, interpreter=None, fusion: Fusion | None = None,
            attribute_embedder: Embedder | None = None, map_notes: Sequence[str] = ()) -> Explained:
    """Rank a gallery for a query and explain the top ``top_k`` results (docs/METHODS.md).

    Either ``query`` and ``gallery`` (a folder, CSV list, ``.npz`` or list of image files), or a
    ``protocol`` test set and ``query_index``. ``filter``: the command line's text, a JSON object or a
    ``Filter`` (``xreid.index.filters.parse_filter``); ``filter_mode``: "rerank" (rows breaking an
    attribute condition sink) or "keep" (they are left out). ``maps``: any of pair, attention,
    attributes (Grad-CAM: they need a PyTorch embedder, ``load_embedder(..., backend="torch")``;
    other backends get occlusion maps instead) and occlusion. ``interpreter``
    (``xreid.models.interpreter.Interpreter`` fitted on this model) adds its per-attribute parts of
    each result's distance and its attention maps. ``fusion`` (``xreid fuse fit``;
    ``attribute_embedder`` is the model its attribute head reads, by default ``embedder``) ranks by
    the fused distance and splits it into the model's part and each attribute's part. Options are
    checked (once) before any image is embedded. ``map_notes``: why default map types were left out
    (``map_choice``), shown with the report's notes.
    """
    root = resolve_data_root(data_root)
    check_options(top_k, threshold)
    where = parse_filter(filter, head.names, MEMORY_FIELDS, mode=filter_mode)
    kinds = parse_kinds(maps) if isinstance(maps, (str, type(None))) else parse_kinds(",".join(maps))
    head.check_model(embedder, "attribute head")
    if interpreter is not None:
        from xreid.workflows.interpret import check_target

        check_target(interpreter, embedder, "interpreter")
    if fusion is not None:
        fusion.check_model(embedder)
        fusion.check_vocabulary(head.names, "attribute head of the explanation")
    notes: list[str] = list(map_notes)
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
                           [r.pid for r in ts.gallery], [], head, [r.cam for r in ts.gallery])
    else:
        if query is None or gallery is None:
            raise ValueError("give a query and a gallery (a folder, a CSV list or an .npz), or a protocol and test set")
        query_path = Path(query)
        query_key = _key(query_path, root)
        query_id = query_id or pid_from_name(query_key)
        original = read_query(query_path)
        gal = load_gallery(embedder, gallery, root, head)
        gal, left_out = _leave_out_query(gal, query_path, query_key)
        if left_out:
            notes.append(f"The query itself is in the gallery ({', '.join(left_out)}); it was left out of the ranking.")
    return explain_gallery(embedder, head, original, query_path, query_key, gal, query_id=query_id, notes=notes,
                           top_k=top_k, threshold=threshold, where=where, kinds=kinds, map_dims=map_dims,
                           model_name=model_name, fusion=fusion, attribute_embedder=attribute_embedder,
                           interpreter=interpreter)


def explain_gallery(embedder: Embedder, head: AttributeHead, original: np.ndarray, query_path: Path, query_key: str,
                    gal: Gallery, *, query_id: str | None = None, notes: list[str] | None = None, top_k: int = 10,
                    threshold: float = 0.3, where: Filter | None = None, kinds: Sequence[str] = (),
                    map_dims: int = 5, model_name: str | None = None, query_feature: np.ndarray | None = None,
                    fusion: Fusion | None = None, attribute_embedder: Embedder | None = None,
                    interpreter=None) -> Explained:
    """``explain`` once the query image (``original``, H x W x 3 RGB) is read and the gallery embedded:
    embed the query, search the gallery (``Gallery.search``; with a ``fusion``, rank an in-memory
    gallery by the fused distance), then explain the hits (``explain_hits``). ``query_feature``
    replaces the query image's embedding (a query made of several images)."""
    if len(gal) == 0:
        skipped = getattr(gal, "skipped", [])
        raise ValueError("no usable gallery image" + (f" ({len(skipped)} skipped)" if skipped else ""))
    q_feat = embed_query(embedder, original) if query_feature is None else query_feature
    fusion_probs = None
    if fusion is None:
        hits = gal.search(q_feat, top_k, where)
    else:
        probs, gal = _fusion_probabilities(fusion, attribute_embedder or embedder, embedder, original,
                                           q_feat, query_feature is not None, gal)
        hits, fusion_probs = fused_search(gal, q_feat, fusion, probs, top_k, where)
    return explain_hits(embedder, head, gal, hits, q_feat, original, query_path, query_key, query_id=query_id,
                        notes=notes, threshold=threshold, where=where, kinds=kinds, map_dims=map_dims,
                        model_name=model_name, fusion=fusion, fusion_probabilities=fusion_probs,
                        interpreter=interpreter)


def embed_query(embedder: Embedder, image: np.ndarray) -> np.ndarray:
    """The embedding of a query image (H x W x 3 RGB, any size)."""
    return embedder.embed_arrays([resize_rgb(image, embedder.preprocess.size)])[0]


def explain_hits(embedder: Embedder, head: AttributeHead, gallery: Gallery, hits: Hits, query_feature: np.ndarray,
                 original: np.ndarray, query_path: Path, query_key: str, *, query_id: str | None = None,
                 notes: list[str] | None = None, threshold: float = 0.3, where: Filter | None = None,
                 kinds: Sequence[str] = (), map_dims: int = 5, model_name: str | None = None,
                 fusion: Fusion | None = None, fusion_probabilities: tuple | None = None, interpreter=None,
                 basis: np.ndarray | None = None, include_vectors: bool = True,
                 query_row: int | None = None) -> Explained:
    """Explain ``hits`` of ``gallery`` for the query (its embedding and its image ``original``): the
    numbers (``explain_ranking``), then the maps (``kinds``) and the interpreter's parts on images
    read through the gallery (each decoded once). What ``xreid explain``, ``xreid index search`` and
    the server's explanations share.

    A result that is a sighting of footage, or every result when the query is one (``query_row``:
    the query is that row of ``gallery``), is read through the sightings' best crops
    (``read_through_crops``): the maps and pictures show the crop pair that stands for the ranking's
    distance."""
    notes = list(notes or [])
    explanation = explain_ranking(query_feature, hits, gallery, head, threshold=threshold, query_pid=query_id,
                                  query_key=query_key, basis=basis, include_vectors=include_vectors,
                                  model=model_name or embedder.name, query_check=check_query(original),
                                  fusion=fusion, fusion_probabilities=fusion_probabilities, filter=where)
    identical = [r.key for r in explanation.results if r.identical_to_query]
    if identical:
        notes.append(f"{len(identical)} result(s) are the same picture as the query (distance 0): "
                     f"{', '.join(identical)}.")
    original, shown, strips = read_through_crops(embedder, gallery, hits, explanation, query_feature, original,
                                                 query_row, notes)
    out = Explained(explanation, query_path, gallery, list(getattr(gallery, "skipped", [])), notes, hits=hits,
                    query_image=original, shown=shown, strips=strips)
    if kinds:
        out.images = {QUERY: resize_rgb(original, embedder.preprocess.size)}
        for i, r in zip(hits.ids.tolist(), explanation.results):
            picture = shown[r.key] if r.key in shown else _gallery_image(gallery, i)
            out.images[r.key] = resize_rgb(picture, embedder.preprocess.size)
        out.maps = compute_maps(embedder, head, explanation, out.images, kinds, k=map_dims)
        if out.maps.substituted:
            notes.append(f"This model has no gradients: occlusion maps were drawn instead of "
                         f"{', '.join(out.maps.substituted)} maps.")
    if interpreter is not None:
        _interpret(out, interpreter, original)
    return out


#: height (pixels) of the crops in a report's strip
STRIP_HEIGHT = 96


def _read_views(paths: list[Path]) -> tuple[list[str], list[np.ndarray], list[str]]:
    """The readable pictures among ``paths``: their file names, pixels, and the problems of the others."""
    names, pictures, skipped = [], [], []
    for p in paths:
        try:
            pictures.append(images.load_image(p))
            names.append(p.name)
        except ImageError as exc:
            skipped.append(str(exc))
    return names, pictures, skipped


def _small(image: np.ndarray, height: int = STRIP_HEIGHT) -> np.ndarray:
    h, w = image.shape[:2]
    return resize_rgb(image, (height, max(1, round(w * height / max(h, 1))))) if h > height else image


def read_through_crops(embedder: Embedder, gallery: Gallery, hits: Hits, explanation: RankingExplanation,
                       query_feature: np.ndarray, original: np.ndarray, query_row: int | None,
                       notes: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """Explain each pair through the sightings' best crops (docs/METHODS.md#footage-and-sightings):
    every view of the query (``query_row``'s, else the query image) and of each result
    (``Gallery.view_paths``) is embedded, and ``ResultExplanation.crops`` records the distance of
    each crop pair and the pair shown: the query's most typical crop (nearest the query embedding)
    with the result crop whose distance to it is nearest the ranking's distance. Nothing is done
    when neither side has more than one picture. Returns the query picture to show and, by result
    key, the crop shown and the strip of all its crops (small)."""
    paths = {int(i): gallery.view_paths(int(i)) for i in hits.ids}
    q_paths = gallery.view_paths(int(query_row)) if query_row is not None else []
    if len(q_paths) <= 1 and all(len(p) <= 1 for p in paths.values()):
        return original, {}, {}

    def embed(pictures: list[np.ndarray]) -> np.ndarray:
        return embedder.embed_arrays([resize_rgb(p, embedder.preprocess.size) for p in pictures])

    q_names, q_pictures, q_skipped = _read_views(q_paths) if len(q_paths) > 1 else ([], [], [])
    if q_pictures:
        q_vectors = embed(q_pictures)
        q_shown = typical_view(q_vectors, query_feature)
        original = q_pictures[q_shown]
        notes.append(f"The query is a sighting: its {len(q_pictures)} best crops were read; its picture and maps are "
                     f"{q_names[q_shown]}, the crop nearest its embedding."
                     + (f" Unreadable: {'; '.join(q_skipped)}." if q_skipped else ""))
    else:
        q_names, q_vectors, q_shown = ["query"], embed_query(embedder, original)[None], 0
    shown, strips = {}, {}
    for r, i in zip(explanation.results, hits.ids.tolist()):
        names, pictures, skipped = _read_views(paths[i])
        if not pictures:
            continue
        d = crop_distances(q_vectors, embed(pictures))
        target = r.fused.model if r.fused is not None else r.distance
        pair = representative_pair(d, target, q_shown)
        r.crops = CropPairs(q_names, names, d.round(6).tolist(), pair, float(target), skipped)
        shown[r.key], strips[r.key] = pictures[pair[1]], [_small(p) for p in pictures]
    return original, shown, strips


def fused_search(gal: MemoryGallery, query_feature: np.ndarray, fusion: Fusion, probabilities: tuple,
                 k: int, where: Filter | None) -> tuple[Hits, tuple[np.ndarray, np.ndarray]]:
    """The top ``k`` rows of ``gal`` by the fused distance (docs/METHODS.md#attribute-fusion), given the
    fusion's attribute probabilities of the query (A) and of every row (N x A); returns the hits and
    those probabilities of the query and of the hits."""
    f_q, f_g = probabilities
    model_dist = cosine_distance(np.asarray(query_feature, np.float32), np.asarray(gal.vectors, np.float32))
    fused = fusion.distances(model_dist[None], np.asarray(f_q)[None], np.asarray(f_g))[0]
    hits = gal.rank(fused, k, where, model_distances=model_dist)
    return hits, (f_q, np.asarray(f_g)[hits.ids])


def _gallery_image(gallery: Gallery, i: int) -> np.ndarray:
    """Row ``i``'s image from the gallery's cache; ValueError naming the file if it cannot be used."""
    try:
        return gallery.image(i)
    except ImageError as exc:
        raise ValueError(f"gallery image unusable: {exc}") from None


def _fusion_probabilities(fusion: Fusion, attribute_embedder: Embedder, embedder: Embedder, original: np.ndarray,
                          q_feat: np.ndarray, given_query: bool, gal: MemoryGallery) -> tuple[tuple, MemoryGallery]:
    """The fusion's attribute probabilities of the query and the gallery (read by its attribute
    model: the re-id embeddings themselves when that is the model, else each image embedded again);
    gallery items the attribute model cannot read are left out of the ranking."""
    if not isinstance(gal, MemoryGallery):
        raise ValueError("a fused ranking needs a gallery held in memory (a folder, a CSV list, an .npz or a protocol)")
    if attribute_embedder is embedder:
        return (fusion.probabilities(q_feat[None])[0], fusion.probabilities(gal.vectors)), gal
    if given_query:
        raise ValueError("a query given as an embedding cannot be fused with another model's attributes")
    q = attribute_embedder.embed_arrays([resize_rgb(original, attribute_embedder.preprocess.size)])[0]
    res = attribute_embedder.embed_paths(gal.paths, progress=len(gal.paths) > 500)
    if len(res.kept) < len(gal):
        gal = gal.subset(res.kept, [str(e) for e in res.skipped])
    return (fusion.probabilities(q[None])[0], fusion.probabilities(res.features)), gal


def _interpret(out: Explained, interpreter, query_image: np.ndarray) -> None:
    """Add the interpreter's parts and attention maps to an explained ranking."""
    from xreid.workflows.interpret import interpret_ranking

    results = out.explanation.results
    images = [_gallery_image(out.gallery, i) for i in out.hits.ids.tolist()]
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
    query = explained.query_image if explained.query_image is not None else explained.query_path
    return render_report(explained.explanation, query, {r.key: explained.picture(r.key) for r in explained.results},
                         pictures, strips=explained.strips,
                         skipped=explained.skipped, notes=explained.notes if notes is None else notes,
                         interpretation=explained.interpretation)


def explain_vectors(query_feature: np.ndarray, gallery_features: np.ndarray, gallery_keys: Sequence[str],
                    head: AttributeHead, top_k: int = 10, threshold: float = 0.3,
                    gallery_pids: Sequence[str | None] | None = None, query_pid: str | None = None,
                    filter_spec: str | dict | Filter | None = None, filter_mode: str = "rerank",
                    gallery_probabilities: np.ndarray | None = None, fusion: Fusion | None = None,
                    fusion_probabilities: tuple[np.ndarray, np.ndarray] | None = None,
                    **explain_kw) -> RankingExplanation:
    """Search embeddings held in arrays and explain the top ``top_k``: an in-memory gallery
    (``MemoryGallery``), its search (or, with a ``fusion`` and its attribute probabilities of the
    query and every gallery row, its fused ranking) and ``explain_ranking``; no image is read.
    ``filter_spec``: attribute conditions ({name: wanted} or the command line's text);
    ``gallery_probabilities``: the rows' calibrated attribute probabilities, when already computed.
    Other keywords go to ``explain_ranking``."""
    check_options(top_k, threshold)
    gal = MemoryGallery(gallery_keys, gallery_features, pids=gallery_pids, head=head,
                        probabilities=gallery_probabilities)
    where = None
    if filter_spec:
        spec = {"attributes": filter_spec} if isinstance(filter_spec, dict) and "attributes" not in filter_spec \
            else filter_spec
        where = parse_filter(spec, head.names, MEMORY_FIELDS, mode=filter_mode)
    if len(gal) == 0:
        raise ValueError("the gallery is empty")
    if fusion is None:
        hits, f_probs = gal.search(query_feature, top_k, where), None
    else:
        if fusion_probabilities is None:
            raise ValueError("a fusion needs its attribute probabilities of the query and the gallery")
        hits, f_probs = fused_search(gal, query_feature, fusion, fusion_probabilities, top_k, where)
    return explain_ranking(query_feature, hits, gal, head, threshold=threshold, query_pid=query_pid,
                           fusion=fusion, fusion_probabilities=f_probs, filter=where, **explain_kw)
