"""``xreid index``: build a persistent gallery index from images, add to it, export its embeddings,
search it (the library side is ``xreid.index.gallery``).

A build embeds the images batch by batch; each batch (embeddings, calibrated attribute
probabilities from the head, 128 px JPEG thumbnails, metadata) is committed as one segment, so an
interrupted build keeps every finished batch and the same command continues where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.data.images import ImageError, load_image
from xreid.explain.attribute_head import AttributeHead
from xreid.index.features import MODEL_FIELDS, check_same_model
from xreid.index.filters import parse_filter
from xreid.index.gallery import THUMB_HEIGHT, Filter, GalleryIndex, IndexWriter, Rows, SearchResult, export_features
from xreid.index.metadata import Entry, fields_from_name, read_gallery_csv
from xreid.models.embedders import Embedder

log = logging.getLogger(__name__)

BATCH_SIZE = 256


@dataclass
class IndexReport:
    case: Path
    added: int
    already: int  # images the index held before (a resumed build, or an add of known images)
    count: int  # rows in the index now
    skipped: list[str] = field(default_factory=list)
    ann: dict | None = None


def head_fingerprint(head: AttributeHead) -> str:
    """16 hex digits of the sha256 of what decides the head's probabilities (names, weights,
    calibration), whatever file it came from."""
    h = hashlib.sha256(json.dumps(head.names).encode())
    for arr in (head.weights, head.calibration):
        if arr is not None:
            h.update(np.ascontiguousarray(arr, np.float64).tobytes())
    return h.hexdigest()[:16]


def head_info(head: AttributeHead, name: str) -> dict:
    return {"head": name, "head_fingerprint": head_fingerprint(head),
            "calibrated": head.calibration is not None}


def thumbnail(path: Path, height: int = THUMB_HEIGHT) -> bytes:
    """A JPEG of the image at ``path`` scaled to ``height`` pixels high (aspect kept)."""
    from PIL import Image

    arr = load_image(path)
    h, w = arr.shape[:2]
    width = max(1, round(w * height / h))
    buf = io.BytesIO()
    Image.fromarray(arr).resize((width, height), Image.BILINEAR).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def gallery_entries(root: Path, images: Path | None = None, list_file: Path | None = None
                    ) -> tuple[list[Entry], list[str]]:
    """The images to index with their metadata, and what the folder walk could not follow. CSV
    values win over what a file name states; without a CSV the camera and person id come from
    Market-1501 / PETA file names where they follow the convention."""
    from xreid.data.folder import load_folder
    from xreid.data.peta import LoadReport

    found = LoadReport()
    if (images is None) == (list_file is None):
        raise ValueError("give a folder of images or a list file")
    if images is not None:
        folder = images if images.is_absolute() or images.is_dir() else root / images
        entries = [Entry(r.path) for r in load_folder(folder, root=root, report=found)]
    else:
        entries, _ = read_gallery_csv(list_file)
    for e in entries:
        e.fields = {**fields_from_name(e.key), **e.fields}
    return entries, list(found.problems)


def _index_entries(writer: IndexWriter, embedder: Embedder, head: AttributeHead, root: Path, entries: list[Entry],
                   batch_size: int, progress: bool) -> tuple[int, list[str]]:
    """Embed, describe and commit ``entries`` not yet in the index, ``batch_size`` per commit."""
    from tqdm import tqdm

    todo = [e for e in entries if e.key not in writer.keys]
    added, skipped = 0, []
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc=f"indexing ({embedder.name})", unit="img",
               disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            res = embedder.embed_paths([root / e.key for e in batch], batch_size=batch_size)
            skipped += [str(err) for err in res.skipped]
            keep, thumbs = [], []
            for row, i in enumerate(res.kept):
                try:
                    thumbs.append(thumbnail(root / batch[i].key))
                except ImageError as exc:
                    skipped.append(str(exc))
                    continue
                keep.append((row, batch[i]))
            if keep:
                features = res.features[[r for r, _ in keep]]
                probs = head.calibrated(features)
                chosen = [e for _, e in keep]
                writer.commit(Rows([e.key for e in chosen], features, probs, [e.fields for e in chosen],
                                   np.array([e.time for e in chosen], np.float64), thumbs))
                added += len(chosen)
            bar.update(len(batch))
    finally:
        bar.close()
    for s in skipped:
        log.warning("skipped %s", s)
    return added, skipped


def _check_head(embedder: Embedder, head: AttributeHead) -> None:
    head.check_model(embedder, where="attribute head")


def build_index(embedder: Embedder, head: AttributeHead, root: Path, out: Path, images: Path | None = None,
                list_file: Path | None = None, head_name: str = "", batch_size: int = BATCH_SIZE,
                progress: bool = True) -> IndexReport:
    """Index a folder or CSV list of images into ``out``; continues an interrupted build of the same
    model found there. Every batch is committed as it finishes."""
    _check_head(embedder, head)
    entries, problems = gallery_entries(root, images, list_file)
    source = str(images if images is not None else list_file)
    with IndexWriter.create(out, embedder.identity(), head.names, head_info(head, head_name), head.embedding_dim,
                            source=source) as writer:
        before = writer.count
        added, skipped = _index_entries(writer, embedder, head, root, entries, batch_size, progress)
        manifest = writer.finish()
    return IndexReport(Path(out), added, before, manifest["count"], problems + skipped, manifest.get("ann"))


def add_to_index(embedder: Embedder, head: AttributeHead, root: Path, case: Path, images: Path | None = None,
                 list_file: Path | None = None, head_name: str = "", batch_size: int = BATCH_SIZE,
                 progress: bool = True) -> IndexReport:
    """Append images to a finished index (same model set-up and head); images it holds are skipped."""
    _check_head(embedder, head)
    entries, problems = gallery_entries(root, images, list_file)
    with IndexWriter.append(case, embedder.identity(), head.names, head_info(head, head_name)) as writer:
        known = sum(e.key in writer.keys for e in entries)
        added, skipped = _index_entries(writer, embedder, head, root, entries, batch_size, progress)
        manifest = writer.finish()
    return IndexReport(Path(case), added, known, manifest["count"], problems + skipped, manifest.get("ann"))


def export_index(case: Path, out: Path) -> int:
    """Write the index's embeddings in ``xreid embed``'s ``.npz`` format; returns how many."""
    return export_features(case, out)


def search_index(embedder: Embedder, case: Path | GalleryIndex, query: Path, where: Filter | str | dict | None = None,
                 top_k: int = 10, exact: bool = False) -> SearchResult:
    """Embed the query image with ``embedder`` (which must be the index's model set-up) as ``xreid
    explain`` and the server do (``xreid.workflows.explain.embed_query``) and search the index;
    ``where``: a ``Filter``, or the command line's text or a JSON object (``parse_filter``)."""
    from xreid.workflows.explain import embed_query, read_query

    index = case if isinstance(case, GalleryIndex) else GalleryIndex.open(case)
    check_same_model(index.case, index.identity, embedder.identity(), fields=MODEL_FIELDS,
                     remedy="Search with the model options the index was built with.")
    where = parse_filter(where, index.attribute_names, index.field_names, source="index")
    return index.search(embed_query(embedder, read_query(Path(query))), top_k, where=where, exact=exact)
