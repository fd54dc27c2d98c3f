"""``xreid index``: build a persistent gallery index from images, add to it, export its embeddings,
search it (the library side is ``xreid.index.gallery``).

A build embeds the images batch by batch; each batch (embeddings, calibrated attribute
probabilities from the head, 128 px JPEG thumbnails, metadata) is committed as one segment, so an
interrupted build keeps every finished batch and the same command continues where it stopped.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreid.binding import check_binding, head_binding
from xreid.data.images import ImageError, load_image
from xreid.explain.attribute_head import AttributeHead
from xreid.index.filters import parse_filter
from xreid.index.gallery import THUMB_HEIGHT, Filter, GalleryIndex, IndexWriter, Rows, SearchResult, export_features
from xreid.index.integrity import CheckReport
from xreid.index.metadata import CAMERA, Entry, fields_from_name, read_gallery_csv
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
        if entries and Path(entries[0].key).is_absolute():  # keys are always paths inside the data root
            raise ValueError(f"{folder}: not inside the data root {root}; an index names its images by their path "
                             f"relative to the data root: give --data-root a folder that holds them")
    else:
        entries, _ = read_gallery_csv(list_file)
    for e in entries:
        e.fields = {**fields_from_name(e.key), **e.fields}
    return entries, list(found.problems)


class BatchEmbedder:
    """Embeds one batch of images: embeddings, calibrated attribute probabilities and thumbnails.

    Stateful, so that Ray Data's ``map_batches`` loads the model once per actor
    (``BatchEmbedder(root, make=...)``, ``make()`` returning the embedder and attribute head); one
    process builds it once with the objects it holds (``BatchEmbedder(root, embedder, head)``) and
    calls it the same way. In: ``{"key": keys}``; out: per image ``key``, ``ok``, ``error`` (why it
    was skipped), ``vector`` (zeros where skipped), ``prob`` and ``thumb`` (JPEG bytes)."""

    def __init__(self, root: str | Path, embedder: Embedder | None = None, head: AttributeHead | None = None,
                 make=None):
        if make is not None:  # a Ray actor: the model on the CPUs Ray gave it
            from xreid.workflows.loading import claim_ray_cpus

            claim_ray_cpus()
            embedder, head = make()
        self.root, self.embedder, self.head = Path(root), embedder, head

    def __call__(self, batch: dict) -> dict:
        keys = [str(k) for k in batch["key"]]
        cameras = {"cameras": [str(c) or None for c in batch["camera"]]} if "camera" in batch else {}
        res = self.embedder.embed_paths([self.root / k for k in keys], batch_size=max(1, len(keys)), **cameras)
        n, dim, n_attr = len(keys), self.head.embedding_dim, len(self.head.names)
        ok, error = np.zeros(n, bool), np.array([""] * n, dtype=object)
        vectors, probs = np.zeros((n, dim), np.float32), np.zeros((n, n_attr), np.float32)
        thumbs = np.array([b""] * n, dtype=object)
        why = {str(getattr(err, "path", "")): str(err) for err in res.skipped}
        for i, k in enumerate(keys):
            error[i] = why.get(str(self.root / k), "")
        rows = {int(i): r for r, i in enumerate(res.kept)}
        for i, k in enumerate(keys):
            if i not in rows:
                error[i] = error[i] or f"{k}: not embedded"
                continue
            try:
                thumbs[i] = thumbnail(self.root / k)
            except ImageError as exc:
                error[i] = str(exc)
                continue
            ok[i] = True
            vectors[i] = res.features[rows[i]]
        if ok.any():
            probs[ok] = self.head.calibrated(vectors[ok])
        return {"key": np.array(keys, dtype=object), "ok": ok, "error": error, "vector": vectors, "prob": probs,
                "thumb": thumbs}


def commit_batch(writers: list[IndexWriter], entries: dict[str, Entry], out: dict) -> tuple[int, list[str]]:
    """Commit one embedded batch (``BatchEmbedder``'s output): its rows go to shard
    ``shard_of(key, len(writers))``, one segment per shard it touches. Keys a shard already holds are
    left out, so a batch delivered twice (a retried task, a resumed build) is written once.
    Returns (rows added, skipped images)."""
    from xreid.index.sharded import shard_of

    keys = [str(k) for k in out["key"]]
    skipped = [str(e) for e, ok in zip(out["error"], out["ok"]) if not ok]
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        if out["ok"][i]:
            groups.setdefault(shard_of(k, len(writers)) if len(writers) > 1 else 0, []).append(i)
    added = 0
    for s, rows in sorted(groups.items()):
        rows = [i for i in rows if keys[i] not in writers[s].keys]
        if not rows:
            continue
        chosen = [entries[keys[i]] for i in rows]
        writers[s].commit(Rows([e.key for e in chosen], np.asarray(out["vector"])[rows],
                               np.asarray(out["prob"], np.float64)[rows], [e.fields for e in chosen],
                               np.array([e.time for e in chosen], np.float64), [bytes(out["thumb"][i]) for i in rows]))
        added += len(rows)
    return added, skipped


def ray_batches(keys: list[str], root: Path, make, batch_size: int, concurrency: int = 2, address: str | None = None,
                num_cpus: float = 1.0, num_gpus: float = 0.0, cameras: list[str] | None = None):
    """``BatchEmbedder``'s outputs for ``keys``, computed on a Ray cluster (``address``; None: the
    one this process is connected to, else a local one) with Ray Data: ``map_batches`` over
    ``concurrency`` actors, each loading the model once (``make``).

    Nothing is lost or written twice: Ray Data restarts a lost actor and retries its unfinished
    batches (its actor pools default to unlimited restarts and task retries), and only batches that
    finished reach this generator, in the driver; the caller commits each (``commit_batch``), which
    leaves out keys a shard already holds, so a batch delivered again (a retry after its output was
    sent, or a rerun of an interrupted build, which embeds only the keys no shard holds) adds no row.
    A batch is committed as one segment per shard it touches, so an interruption keeps every
    committed batch."""
    import ray

    from xreid.index.ray_sharded import connect

    connect(address)
    items = [{"key": k} for k in keys] if cameras is None else [{"key": k, "camera": c} for k, c in zip(keys, cameras)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(keys) // batch_size)))
    out = ds.map_batches(BatchEmbedder, fn_constructor_kwargs={"root": str(root), "make": make},
                         batch_size=batch_size,
                         # batches start as soon as one actor holds its model (not once all do)
                         compute=ray.data.ActorPoolStrategy(min_size=1, max_size=concurrency),
                         batch_format="numpy",
                         num_cpus=num_cpus, num_gpus=num_gpus)
    yield from out.iter_batches(batch_size=None, batch_format="numpy")


def _index_entries(writers: list[IndexWriter], embedder: Embedder, head: AttributeHead, root: Path,
                   entries: list[Entry], batch_size: int, progress: bool, ray: dict | None = None
                   ) -> tuple[int, list[str]]:
    """Embed, describe and commit ``entries`` not yet in the index (``writers``: one per shard),
    ``batch_size`` per batch: in this process, or with ``ray`` (``ray_batches``' options, with
    ``make``) on a Ray cluster."""
    from tqdm import tqdm

    from xreid.index.sharded import shard_of

    n = len(writers)
    todo = [e for e in entries if e.key not in writers[shard_of(e.key, n) if n > 1 else 0].keys]
    by_key = {e.key: e for e in todo}
    added, skipped = 0, []
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc=f"indexing ({embedder.name})", unit="img",
               disable=not progress)
    # a model with per-camera statistics embeds each crop with its camera's (xreid.models.camera_norm)
    cameras = [e.fields.get(CAMERA) or "" for e in todo] if embedder.camera_names() else None
    if ray is not None:
        batches = (ray_batches([e.key for e in todo], root, batch_size=batch_size, cameras=cameras, **ray) if todo
                   else iter(()))
    else:
        embed = BatchEmbedder(root, embedder, head)
        batches = (embed({"key": [e.key for e in todo[s:s + batch_size]],
                          **({"camera": cameras[s:s + batch_size]} if cameras is not None else {})})
                   for s in range(0, len(todo), batch_size))
    try:
        for out in batches:
            a, sk = commit_batch(writers, by_key, out)
            added, skipped = added + a, skipped + sk
            bar.update(len(out["key"]))
    finally:
        bar.close()
    for s in skipped:
        log.warning("skipped %s", s)
    return added, skipped


def _check_head(embedder: Embedder, head: AttributeHead) -> None:
    head.check_model(embedder, where="attribute head")


def build_index(embedder: Embedder, head: AttributeHead, root: Path, out: Path, images: Path | None = None,
                list_file: Path | None = None, head_name: str = "", batch_size: int = BATCH_SIZE,
                progress: bool = True, shards: int = 1, ray: dict | None = None,
                scan_floor: float | None = None) -> IndexReport:
    """Index a folder or CSV list of images into ``out``; continues an interrupted build of the same
    model found there. ``scan_floor``: the smallest fraction of the ANN's lists a search scans
    (``xreid.index.ann``; None: ``SCAN_FLOOR``, or the one an interrupted build recorded). Every batch is committed as it finishes. ``shards`` > 1 writes a sharded case
    (``xreid.index.sharded``: a row's shard is a stable hash of its key, so a rerun resumes each
    shard); ``ray``: embed on a Ray cluster (``ray_batches``' options: ``make``, ``concurrency``,
    ``address``, ...), writing the same rows."""
    from contextlib import ExitStack

    from xreid.index.sharded import finish_sharded, start_sharded

    _check_head(embedder, head)
    entries, problems = gallery_entries(root, images, list_file)
    source = str(images if images is not None else list_file)
    args = (embedder.identity(), head.names, head_binding(head, head_name), head.embedding_dim)
    dirs = start_sharded(out, shards, *args, source=source) if shards > 1 else [Path(out)]
    with ExitStack() as stack:
        writers = [stack.enter_context(IndexWriter.create(d, *args, source=source)) for d in dirs]
        before = sum(w.count for w in writers)
        added, skipped = _index_entries(writers, embedder, head, root, entries, batch_size, progress, ray)
        manifests = [w.finish(scan_floor=scan_floor) for w in writers]
    manifest = finish_sharded(out) if shards > 1 else manifests[0]
    return IndexReport(Path(out), added, before, manifest["count"], problems + skipped, manifest.get("ann"))


def add_to_index(embedder: Embedder, head: AttributeHead, root: Path, case: Path, images: Path | None = None,
                 list_file: Path | None = None, head_name: str = "", batch_size: int = BATCH_SIZE,
                 progress: bool = True) -> IndexReport:
    """Append images to a finished index (same model set-up and head); images it holds are skipped."""
    _check_head(embedder, head)
    entries, problems = gallery_entries(root, images, list_file)
    with IndexWriter.append(case, embedder.identity(), head.names, head_binding(head, head_name)) as writer:
        known = sum(e.key in writer.keys for e in entries)
        added, skipped = _index_entries([writer], embedder, head, root, entries, batch_size, progress)
        manifest = writer.finish()
    return IndexReport(Path(case), added, known, manifest["count"], problems + skipped, manifest.get("ann"))


def check_index(case: Path, repair: bool = False) -> tuple[CheckReport, list[str]]:
    """Verify every file of the index at ``case`` against the checksums its manifest recorded
    (``xreid.index.integrity``), and its footage files (``xreid.index.sightings.check_footage``); a
    sharded case shard by shard. With ``repair``, drop what is damaged (under the writer's lock): a
    damaged segment's rows become dropped rows (ids kept; `index add` indexes their images again), a
    damaged thumbnail pack is no longer read, a damaged ANN file is built again, a video with
    damaged files is marked not done (`index add --video` makes them again). Damaged files are moved
    to ``CASE/damaged/``, not deleted. Returns the report and what was done."""
    from xreid.index.gallery import read_manifest
    from xreid.index.integrity import check_files

    case = Path(case)
    manifest = read_manifest(case)
    if manifest.get("shards"):
        report, done = CheckReport(), []
        for name in manifest["shards"]:
            part, did = check_index(case / name, repair)
            report.add_shard(name, part)
            done += [f"{name}: {line}" for line in did]
        return report, done
    report = _check_case(case, manifest)
    if not repair or report.clean:
        return report, []
    done: list[str] = []
    with IndexWriter._locked(case, lambda: read_manifest(case)) as writer:
        report = _check_case(case, writer.manifest)  # as it is now that we hold the lock
        if report.segments or report.packs or report.ann or report.lookalikes or report.vectors:
            _repair_files(case, writer, report, done)
        if report.footage:
            _repair_footage(case, report.footage, done)
    return report, done


def _check_case(case: Path, manifest: dict) -> CheckReport:
    from xreid.index.integrity import check_files
    from xreid.index.sightings import check_footage

    report = check_files(case, manifest)
    report.footage, verified, unchecked = check_footage(case)
    report.verified += verified
    report.unchecked += unchecked
    return report


def _repair_files(case: Path, writer: IndexWriter, report: CheckReport, done: list[str]) -> None:
    """Drop the damaged segments, thumbnail packs, ANN, look-alikes and vector files ``report`` names; find
    the look-alikes again when their file or a segment was dropped (dropped rows are no one's)."""
    from xreid.index.gallery import ANN_MIN_ROWS

    segments = []
    for seg in writer.manifest["segments"]:
        seg = dict(seg)
        name = seg.get("file")
        if name in report.segments:
            first, n = seg["first_id"], seg["rows"]
            seg = {"file": None, "packs": [None] * len(seg["packs"]), "rows": n, "first_id": first,
                   "dropped": f"{name}: {report.segments[name]}"}
            done.append(f"dropped {name} ({report.segments[name]}): rows {first}..{first + n - 1} are no longer "
                        f"served; index their images again with `xreid index add`")
        elif name:
            bad = [p for p in seg["packs"] if p in report.packs]
            if bad:
                seg["packs"] = [None if p in report.packs else p for p in seg["packs"]]
                done += [f"dropped thumbnail pack {p} ({report.packs[p]}): its rows' thumbnails are drawn from "
                         f"the images" for p in bad]
        segments.append(seg)
    manifest = {**writer.manifest, "segments": segments}
    floor = (writer.manifest.get("ann") or {}).get("scan_floor")  # the rebuilt ANN keeps it
    if report.ann:
        manifest["ann"] = None
        done.append(f"dropped the ANN file {report.ann}")
    if report.lookalikes or report.segments:
        manifest["lookalikes"] = None
    if report.vectors and writer.manifest.get("vectors"):
        manifest["vectors"] = None
        done.append(f"dropped the vector file {report.vectors}")
    damaged = [n for n in list(report.segments) + list(report.packs)] + (
        [writer.manifest["ann"]["file"]] if report.ann else []) + (
        [writer.manifest["lookalikes"]["file"]] if report.lookalikes else []) + (
        [writer.manifest["vectors"]["file"]] if report.vectors and writer.manifest.get("vectors") else [])
    writer._publish(manifest)
    keep = case / "damaged"
    for name in damaged:  # kept for inspection, out of the index's way
        src = case / name if name.startswith(("ann-", "near-", "vec-")) else case / "segments" / name
        if src.exists():
            keep.mkdir(exist_ok=True)
            src.replace(keep / name)
    ann = None
    if report.ann and writer.count >= ANN_MIN_ROWS:
        ann = writer.update_ann(rebuild=True, scan_floor=floor)
        done.append("built the ANN file again")
    if manifest.get("lookalikes") is None and writer.manifest.get("segments"):
        writer.update_lookalikes(ann)
        done.append("found each row's look-alikes again"
                    + (f" ({report.lookalikes})" if report.lookalikes else ""))
    if report.vectors:  # last: the largest write, and the index works without it
        writer.update_vector_file(min_bytes=0)  # the index had one (or should): whatever its size now
        if writer.manifest.get("vectors"):
            done.append("wrote the vector file again")


def _repair_footage(case: Path, damaged: dict[str, str], done: list[str]) -> None:
    """Move the damaged footage files (and the chunks after a damaged chunk) to ``CASE/damaged/``,
    record what is left in each video's ``files.json`` and mark the video not done."""
    import json
    from pathlib import PurePosixPath

    from xreid.index.sightings import FILES, FOOTAGE, footage_checks
    from xreid.io import write_json

    by_video: dict[str, list[str]] = {}
    for rel in damaged:
        by_video.setdefault(PurePosixPath(rel).parts[1], []).append(rel)
    for video, rels in sorted(by_video.items()):
        folder = case / FOOTAGE / video
        chunks = sorted(PurePosixPath(r).name for r in rels if PurePosixPath(r).name.startswith("chunk-"))
        if chunks:  # the chunks after a damaged one cannot be replayed without it
            rels += [p.relative_to(case).as_posix() for p in sorted(folder.glob("chunk-*.npz"))
                     if p.name > chunks[0] and p.relative_to(case).as_posix() not in rels]
        for rel in rels:
            src = case / rel
            if src.exists():
                (case / "damaged" / rel).parent.mkdir(parents=True, exist_ok=True)
                src.replace(case / "damaged" / rel)
        try:
            record = json.loads((folder / "video.json").read_text())
        except (OSError, ValueError):
            record = {}
        if folder.is_dir():
            write_json(folder / FILES, footage_checks(case, video))
            write_json(folder / "video.json", {**record, "done": False, "damaged": sorted(rels)})
        path = record.get("path") or "THE_VIDEO"
        done.append(f"moved {len(rels)} file(s) of video {video} to {case / 'damaged'} ({', '.join(sorted(rels))}); "
                    f"`xreid index add {case} --video {path}` makes them again from its committed chunks"
                    + (" (frames from the damaged chunk on are detected again)" if chunks else "")
                    + "; its rows stay in the index")


def export_index(case: Path, out: Path) -> int:
    """Write the index's embeddings in ``xreid embed``'s ``.npz`` format; returns how many."""
    return export_features(case, out)


def open_case(case: str | Path, image_root: str | Path | None = None, ray: str | None = None) -> GalleryIndex:
    """The index at ``case``; with ``ray`` (a Ray cluster's address, 'auto' or 'local'), a sharded
    case with each shard held by a Ray actor (``xreid.index.ray_sharded``)."""
    if ray is None:
        return GalleryIndex.open(case, image_root=image_root)
    from xreid.index.base import backend

    return backend("ray-sharded").open(case, image_root=image_root, address=ray)


def search_filter(index: GalleryIndex, text: str | None, camera: list[str] | None = None, after: str | None = None,
                  before: str | None = None) -> Filter:
    """The command line's conditions as one filter: ``text``'s attributes and fields (checked against
    the index's names), plus cameras and a time window."""
    spec = parse_filter(text, index.attribute_names, index.field_names, source="index")
    return parse_filter({"attributes": spec.attributes, "fields": spec.fields, "camera": camera or None,
                         "after": after, "before": before})


def search_index(embedder: Embedder, case: Path | GalleryIndex, query: Path, where: Filter | str | dict | None = None,
                 top_k: int = 10, exact: bool = False) -> SearchResult:
    """Embed the query image with ``embedder`` (which must be the index's model set-up) as ``xreid
    explain`` and the server do (``xreid.workflows.explain.embed_query``) and search the index;
    ``where``: a ``Filter``, or the command line's text or a JSON object (``parse_filter``)."""
    from xreid.workflows.explain import embed_query, read_query

    index = case if isinstance(case, GalleryIndex) else GalleryIndex.open(case)
    check_binding(index.case, index.identity, embedder.identity(),
                  remedy="Search with the model options the index was built with.")
    where = parse_filter(where, index.attribute_names, index.field_names, source="index")
    return index.search(embed_query(embedder, read_query(Path(query))), top_k, where=where, exact=exact)
