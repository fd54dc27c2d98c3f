"""What the search service does for one case, apart from HTTP: uploads, searches with filters,
per-result explanations, marks, reports and the audit log. ``xreid.serve.app`` maps it onto a REST
API; everything here can be used (and is tested) without a server.

Identifiers only: a gallery image is named by its row id in the index, an upload by the first 20
hex digits of its SHA-256. No path is ever taken from a request; gallery images are read from the
data root at the key the index recorded, uploads from the session's own folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from xreid.data.images import ImageError, decode_image, load_image
from xreid.data.transforms import resize_rgb
from xreid.data.vocabulary import words
from xreid.distance import l2_normalise
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.formulas import orthonormal_attribute_basis
from xreid.explain.maps.compute import parse_kinds
from xreid.explain.naming import RELIABLE_AT
from xreid.explain.query_check import check_query
from xreid.explain.ranking import IDENTICAL_BELOW, explain_ranking
from xreid.index.features import MODEL_FIELDS, check_same_model
from xreid.index.gallery import DamagedSegment, Filter, GalleryIndex, read_manifest
from xreid.index.metadata import CAMERA, PID, format_time
from xreid.io import atomic_write
from xreid.models.embedders import Embedder
from xreid.rendering.charts import composition
from xreid.rendering.words import CHIP_AT, query_chips, result_line
from xreid.serve.audit import AuditLog
from xreid.serve.imagecache import ImageCache
from xreid.serve.marks import MarkStoreError, load_marks, save_marks
from xreid.workflows.explain import Explained, Gallery, explain_gallery, render_explained
from xreid.workflows.index import head_fingerprint, thumbnail as make_thumbnail

log = logging.getLogger(__name__)

#: what an upload may be, decided from its content (never from a name or a Content-Type)
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "PPM")
MARKS = ("match", "not_match")
#: matching scores shown per result (the query's most likely attributes)
MAX_SCORES = 8


_EXT = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "GIF": ".gif", "TIFF": ".tif", "PPM": ".ppm"}


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 10 * 2**20
    max_pixels: int = 40_000_000
    max_k: int = 200
    max_query_images: int = 32
    #: decoded upload images kept in memory (bytes); uploads themselves are kept as files and vectors
    decoded_cache_bytes: int = 256 * 2**20
    #: uploads decoded at the same time (each may take 3 x max_pixels bytes while it is embedded)
    concurrent_decodes: int = 2


class Problem(ValueError):
    """A request that cannot be served, with the HTTP status that says why (400, 404, 413, 415)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    id: str
    path: Path
    vector: np.ndarray  # the decoded pixels are not kept here: ``CaseSession.upload_pixels`` (byte-budgeted cache)
    name: str = ""


@dataclass
class Search:
    id: str
    uploads: list[str]
    items: list[int]
    k: int
    filters: dict
    threshold: float
    vector: np.ndarray
    ids: list[int]
    distances: list[float]
    probabilities: list[float | None]
    #: each upload's file name as it was when the search ran (a later upload of the same bytes under
    #: another name does not rename this search's query)
    upload_names: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def case_query(self) -> str:
        """What marks are kept under: the first uploaded image, else the first gallery item; a
        re-search that adds confirmed matches keeps its query's marks."""
        return f"upload:{self.uploads[0]}" if self.uploads else f"item:{self.items[0]}"


def _clean_name(name: str | None) -> str:
    """A client's file name, for display and the audit log only (never used to open anything)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable())[:120]


def parse_filters(spec: dict | None) -> Filter:
    """The JSON filter of a search request -> ``Filter``; ValueError names what is wrong."""
    spec = dict(spec or {})
    unknown = set(spec) - {"attributes", "camera", "after", "before", "fields"}
    if unknown:
        raise ValueError(f"unknown filter key(s): {', '.join(sorted(unknown))} "
                         f"(known: attributes, camera, after, before, fields)")
    attributes = spec.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise ValueError("filter 'attributes' must be an object {name: true | false | probability}")
    for name, want in attributes.items():
        if not isinstance(want, (bool, int, float)) or (not isinstance(want, bool) and not 0 <= want <= 1):
            raise ValueError(f"filter attribute {name!r}: give true, false or a probability in [0, 1]")
    camera = spec.get("camera")
    if camera in ([], ""):
        camera = None
    fields = spec.get("fields") or {}
    if not isinstance(fields, dict):
        raise ValueError("filter 'fields' must be an object {column: value or [values]}")
    return Filter(camera=camera, after=spec.get("after") or None, before=spec.get("before") or None,
                  attributes=attributes, fields={k: v for k, v in fields.items() if v not in ("", [], None)})


class CaseSession:
    """A gallery index opened for searching, with the model that embeds queries, its attribute head,
    the calibration of distance to "same person" probability (None when the case has none) and the
    session folder (uploads, audit log). The index is re-read when another process commits to it
    (``xreid index add``), checked at most once a second."""

    def __init__(self, case: str | Path, embedder: Embedder, head: AttributeHead, data_root: Path,
                 workdir: str | Path | None = None, calibration=None, limits: Limits = Limits(),
                 threshold: float | None = None):
        self.case = Path(case)
        manifest = read_manifest(self.case)
        check_same_model(self.case, manifest.get("identity"), embedder.identity(), fields=MODEL_FIELDS,
                         remedy="Serve the index with the model options it was built with.")
        stored = manifest.get("attributes", {}).get("head_fingerprint")
        if stored and stored != head_fingerprint(head):
            raise ValueError(f"{self.case}: indexed with another attribute head (fingerprint {stored}, this one "
                             f"{head_fingerprint(head)}); serve it with the --head it was built with")
        self.embedder, self.head, self.data_root, self.limits = embedder, head, Path(data_root), limits
        self.calibration = calibration
        self.threshold = float(threshold if threshold is not None else getattr(calibration, "threshold", 0.5))
        self.workdir = Path(workdir) if workdir is not None else self.case / "serve"
        try:
            (self.workdir / "queries").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{self.workdir}: cannot create the session folder ({exc.strerror}); "
                             f"give a writable --workdir") from None
        self.audit = AuditLog(self.workdir / "audit.jsonl")
        self._index = GalleryIndex.open(self.case)
        self._seen = self._manifest_stamp()
        self._checked = time.monotonic()
        self._lock = threading.Lock()  # uploads / searches / marks bookkeeping and index swaps
        self._maps_lock = threading.Lock()  # gradient maps hook into the model: one at a time
        self._uploads: OrderedDict[str, Upload] = OrderedDict()
        self.decoded = ImageCache(limits.decoded_cache_bytes)
        self._decoding = threading.BoundedSemaphore(max(1, limits.concurrent_decodes))
        self._searches: OrderedDict[str, Search] = OrderedDict()
        # marks are part of the case: kept in WORKDIR/marks.json, restored here
        self.marks_path = self.workdir / "marks.json"
        self.marks, self._mark_keys = load_marks(self.marks_path)
        self.reliable = head.reliable(RELIABLE_AT)
        self.basis = orthonormal_attribute_basis(head.weights)  # once, not per search

    # -- the index, kept current --

    def _manifest_stamp(self) -> tuple[int, int]:
        st = (self.case / "manifest.json").stat()
        return st.st_mtime_ns, st.st_size

    @property
    def index(self) -> GalleryIndex:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            try:
                stamp = self._manifest_stamp()
                if stamp != self._seen:
                    fresh = GalleryIndex.open(self.case)
                    with self._lock:
                        self._index, self._seen = fresh, stamp
                    log.info("%s: re-read, %d rows", self.case, len(fresh))
            except (OSError, ValueError) as exc:  # a damaged or vanished index: keep serving what we have
                log.warning("%s: could not re-read (%s); serving the state read before", self.case, exc)
        return self._index

    # -- what the page needs to draw its facets --

    def info(self) -> dict:
        index = self.index
        names = index.attribute_names
        codes = index.attribute_codes
        cameras = sorted(_value_counts(*index.columns[CAMERA], most=1000), key=lambda c: c["value"]) \
            if CAMERA in index.columns else []
        times = index.times[np.isfinite(index.times)]
        return {
            "case": self.case.name, "count": len(index), "model": index.identity.get("model"),
            "attributes": [{"name": n, "text": words(n).present, "group": words(n).group,
                            "reliable": bool(self.reliable[a]), "count": int(np.count_nonzero(codes[a] >= 128))}
                           for a, n in enumerate(names)],
            "cameras": cameras,
            "time": {"first": format_time(float(times.min())) if len(times) else None,
                     "last": format_time(float(times.max())) if len(times) else None,
                     "known": int(len(times))},
            "fields": [{"name": n, "values": _value_counts(*index.columns[n])}
                       for n in index.field_names if n not in (CAMERA, PID)],
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "threshold": self.threshold,
            "damaged": sorted(index.damaged),
            "limits": {"max_upload_bytes": self.limits.max_upload_bytes, "max_pixels": self.limits.max_pixels,
                       "max_k": self.limits.max_k, "formats": list(ACCEPTED_FORMATS)},
        }

    # -- uploads --

    def upload(self, data: bytes, name: str | None = None) -> dict:
        """Check, keep and embed an uploaded query image; its id is its content's hash."""
        name = _clean_name(name)
        if len(data) > self.limits.max_upload_bytes:
            raise Problem(413, f"{name or 'upload'}: {len(data):,} bytes, at most {self.limits.max_upload_bytes:,}")
        uid = hashlib.sha256(data).hexdigest()[:20]
        with self._decoding:  # at most `concurrent_decodes` full-size images in memory at once
            try:
                image, fmt = decode_image(data, name or "upload", self.limits.max_pixels, ACCEPTED_FORMATS)
            except ImageError as exc:
                status = 413 if "too many pixels" in exc.problem or "too large" in exc.problem else (
                    415 if "not an image" in exc.problem or "not accepted" in exc.problem else 400)
                raise Problem(status, str(exc)) from None
            path = self.workdir / "queries" / f"{uid}{_EXT[fmt]}"
            if not path.exists():
                try:
                    atomic_write(path, lambda fh: fh.write(data))
                except OSError as exc:
                    raise Problem(507, f"upload {uid}: cannot be stored in the session folder ({exc.strerror})") \
                        from None
            up = self._remember(Upload(uid, path, self._embed(image), name))
            self.decoded.put(uid, image)
            info = self._upload_info(up, image)
            size = [int(image.shape[1]), int(image.shape[0])]
            del image
        self.audit.write("upload", upload=uid, name=name, bytes=len(data), format=fmt, size=size)
        return info

    def upload_pixels(self, up: Upload) -> np.ndarray:
        """The decoded image of an upload: from the byte-budgeted cache, else read again from its file."""
        def load() -> np.ndarray:
            with self._decoding:
                return load_image(up.path)
        return self.decoded.get(up.id, load)

    def _embed(self, image: np.ndarray) -> np.ndarray:
        return self.embedder.embed_arrays([resize_rgb(image, self.embedder.preprocess.size)])[0]

    def _remember(self, up: Upload) -> Upload:
        with self._lock:
            self._uploads[up.id] = up
            self._uploads.move_to_end(up.id)
            while len(self._uploads) > 256:
                self._uploads.popitem(last=False)
        return up

    def get_upload(self, uid: str) -> Upload:
        with self._lock:
            up = self._uploads.get(uid)
        if up is not None:
            return up
        if not (len(uid) == 20 and all(c in "0123456789abcdef" for c in uid)):
            raise Problem(404, f"no upload {uid!r}")
        found = sorted((self.workdir / "queries").glob(f"{uid}.*"))
        if not found:
            raise Problem(404, f"no upload {uid!r} (upload the image again)")
        with self._decoding:
            image = load_image(found[0])
            up = self._remember(Upload(uid, found[0], self._embed(image)))
        self.decoded.put(uid, image)
        return up

    def _upload_info(self, up: Upload, image: np.ndarray) -> dict:
        probs = self.head.calibrated(up.vector[None])[0]
        check = check_query(image)
        return {"id": up.id, "name": up.name, "image": f"/api/uploads/{up.id}/image",
                "chips": self._chips(probs), "check": {"usable": check.usable, "problems": list(check.problems)}}

    def _chips(self, probs: np.ndarray) -> list[dict]:
        return [{"text": c.text, "group": c.group, "probability": round(c.probability, 3), "reliable": c.reliable,
                 "flagged": c.flagged} for c in query_chips(self.head.names, probs.tolist(), self.reliable.tolist())]

    # -- searching --

    def search(self, uploads: list[str] | None = None, items: list[int] | None = None, k: int = 20,
               filters: dict | None = None, threshold: float | None = None) -> dict:
        """Search with the mean of the (normalised) embeddings of the uploaded images and gallery
        items given; items used as the query are left out of the results."""
        uploads, items = list(uploads or []), [int(i) for i in (items or [])]
        if not uploads and not items:
            raise Problem(400, "give at least one uploaded image or gallery item as the query")
        if len(uploads) + len(items) > self.limits.max_query_images:
            raise Problem(400, f"at most {self.limits.max_query_images} query images")
        if not 1 <= k <= self.limits.max_k:
            raise Problem(400, f"k must be in 1..{self.limits.max_k} (got {k})")
        threshold = self.threshold if threshold is None else float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise Problem(400, f"threshold must be a probability in [0, 1] (got {threshold})")
        index = self.index
        for i in items:
            self.check_item(i, index)
        try:  # everything checked before the search runs: a search that runs is one the audit log can hold
            json.dumps(filters or {}, allow_nan=False)
            where = parse_filters(filters)
            index.mask(where)
        except (ValueError, TypeError, OverflowError) as exc:
            raise Problem(400, f"filters: {exc}" if not str(exc).startswith("filter") else str(exc)) from None
        ups = [self.get_upload(u) for u in uploads]
        vectors = [up.vector for up in ups] + [index.vectors[i] for i in items]
        query = l2_normalise(np.mean(l2_normalise(np.stack(vectors).astype(np.float64)), axis=0)).astype(np.float32)
        # the probability of a result reads the search's first `context` distances: fetch them even for a smaller k
        context = getattr(self.calibration, "context", 0)
        try:  # the filter is applied (and its unknown names or bad times found) inside the search
            found = index.search(query, max(k, context) + len(items), where=where)
        except (ValueError, TypeError, OverflowError) as exc:
            raise Problem(400, str(exc)) from None
        in_query = set(items)
        keep = [j for j, i in enumerate(found.ids.tolist()) if i not in in_query]
        probs = self._probabilities([float(found.distances[j]) for j in keep])[:k]
        keep = keep[:k]
        ids = [int(found.ids[j]) for j in keep]
        dists = [float(found.distances[j]) for j in keep]
        search = Search(hashlib.sha256(f"{time.time_ns()}:{uploads}:{items}".encode()).hexdigest()[:16], uploads,
                        items, k, dict(filters or {}), threshold, query, ids, dists, probs,
                        upload_names={up.id: up.name for up in ups})
        with self._lock:
            self._searches[search.id] = search
            while len(self._searches) > 2048:
                self._searches.popitem(last=False)
        results = self._describe(search, index)
        self.audit.write("search", search=search.id, query={"uploads": uploads, "items": items}, k=k,
                         filters=search.filters, threshold=threshold, method=found.method, candidates=found.candidates,
                         results=[{"id": r["id"], "key": r["key"], "distance": r["distance"],
                                   "probability": r["probability"], "flagged": r["flagged"]} for r in results])
        return {"search": search.id, "query": {"uploads": uploads, "items": items,
                                              "chips": self._chips(self.head.calibrated(query[None])[0])},
                "method": found.method, "candidates": found.candidates, "threshold": threshold,
                "calibrated": self.calibration is not None, "results": results}

    def _probabilities(self, distances: list[float]) -> list[float | None]:
        """Calibrated same-person probabilities of one search's results (nearest first). Copies of the
        query picture (distance ~0) get none and are left out of the list the others are read in."""
        out: list[float | None] = [None] * len(distances)
        real = [j for j, d in enumerate(distances) if d >= IDENTICAL_BELOW]
        if self.calibration is not None and real:
            p = self.calibration.probability(np.asarray([distances[j] for j in real], np.float64))
            for j, v in zip(real, p):
                out[j] = float(v)
        return out

    def _describe(self, s: Search, index: GalleryIndex) -> list[dict]:
        """Per result: metadata, distance, probability, matching scores, composition and the line."""
        if not s.ids:
            return []
        e = explain_ranking(s.vector, index.vectors[s.ids], [str(index.keys[i]) for i in s.ids], self.head,
                            top_k=len(s.ids), include_vectors=False, model=self.embedder.name, basis=self.basis)
        by_key = {r.key: r for r in e.results}
        names = e.attribute_names
        marks = self.marks.get(s.case_query, {})
        # matching scores of what the model sees in the query (the query's chips), not of every absence
        seen = {n for n, p in zip(names, e.query_calibrated) if p >= CHIP_AT}
        out = []
        for rank, (i, d, p) in enumerate(zip(s.ids, s.distances, s.probabilities), start=1):
            row = index.row(i, attributes=False)
            r = by_key[row["path"]]
            out.append({
                "id": i, "rank": rank, "key": public_key(row.pop("path")), "distance": round(d, 6),
                "probability": None if p is None else round(p, 4),
                "flagged": None if p is None else bool(p < s.threshold), "identical": d < IDENTICAL_BELOW,
                **row, "thumbnail": f"/api/items/{i}/thumbnail",
                "line": result_line(r.summary, names, e.query_calibrated, r.calibrated) if r.summary else "",
                "scores": [{"name": n, "text": words(n).present, "score": round(v, 3)}
                           for n, v in r.matching_scores.items() if n in seen][:MAX_SCORES],
                "composition": [{"label": lbl, "share": round(v / max(r.distance, 1e-12), 4), "colour": c}
                                for lbl, v, c in composition(r.exact_parts, r.exact_residual, names)],
                "explained_share": round(r.explained_share, 4), "mark": marks.get(i)})
        return out

    def get_search(self, sid: str) -> Search:
        with self._lock:
            s = self._searches.get(sid)
        if s is None:
            raise Problem(404, f"no search {sid!r} (searches are kept while the server runs; search again)")
        return s

    # -- marks --

    def mark(self, sid: str, item: int, mark: str | None) -> dict:
        s = self.get_search(sid)
        if mark not in MARKS and mark is not None:
            raise Problem(400, f"mark must be one of {', '.join(MARKS)} or null (got {mark!r})")
        if item not in s.ids:
            raise Problem(400, f"item {item} is not a result of search {sid}")
        key = str(self.index.keys[item])
        with self._lock:
            marks = self.marks.setdefault(s.case_query, {})
            before = marks.get(item)
            if mark is None:
                marks.pop(item, None)
            else:
                marks[item] = mark
                self._mark_keys.setdefault(s.case_query, {})[item] = key
            try:
                save_marks(self.marks_path, self.marks, self._mark_keys)
            except MarkStoreError as exc:  # not kept: say so, and keep memory as the file is
                if before is None:
                    marks.pop(item, None)
                else:
                    marks[item] = before
                log.error("%s", exc)  # the path for the operator; the client is told no server path
                raise Problem(507, f"the mark was not saved: the case's marks file (marks.json in the session "
                                   f"folder) cannot be written ({exc.reason})") from None
        self.audit.write("mark", search=sid, item=item, key=key, mark=mark)
        return {"search": sid, "item": item, "mark": mark,
                "confirmed": sorted(i for i, m in marks.items() if m == "match")}

    # -- explanations and reports --

    def _query_image(self, s: Search) -> tuple[np.ndarray, Path, str, str | None]:
        """The image the maps and the report show for the query: the first upload, else the first item."""
        if s.uploads:
            up = self.get_upload(s.uploads[0])
            return self.upload_pixels(up), up.path, f"upload {s.upload_names.get(up.id) or up.id}", None
        i = s.items[0]
        key = str(self.index.keys[i])
        return self._gallery_image(i), self.data_root / key, key, self.index.row(i, attributes=False).get(PID)

    def _gallery_image(self, i: int) -> np.ndarray:
        key = str(self.index.keys[i])
        try:
            return load_image(self.data_root / key)
        except ImageError as exc:
            log.warning("gallery image %d: %s", i, exc)  # the server's path for the operator, not the client
            raise Problem(404, f"gallery image {i} ({public_key(key)}) cannot be read under the server's data root: "
                               f"{exc.problem}") from None

    def explain(self, sid: str, items: list[int] | None = None, maps: str | None = "pair") -> Explained:
        """The full explanation (``xreid explain``'s) of ``items`` of search ``sid`` (default: all its
        results), with ``maps`` computed now."""
        s = self.get_search(sid)
        items = s.ids if items is None else items
        for i in items:
            if i not in s.ids:
                raise Problem(404, f"item {i} is not a result of search {sid}")
        if not items:
            raise Problem(400, f"search {sid} has no results to explain")
        index = self.index
        try:
            kinds = parse_kinds(maps) if maps and maps != "none" else []
        except ValueError as exc:
            raise Problem(400, str(exc)) from None
        original, qpath, qkey, qpid = self._query_image(s)
        rows = [index.row(i, attributes=False) for i in items]
        for row in rows:  # a clear 404 before any work when an image is missing
            if not (self.data_root / row["path"]).is_file():
                raise Problem(404, f"gallery image {row['id']} ({public_key(row['path'])}) not found under the "
                                   f"server's data root")
        gal = Gallery([r["path"] for r in rows], [self.data_root / r["path"] for r in rows], index.vectors[items],
                      [r.get(PID) for r in rows])
        notes = []
        if len(s.uploads) + len(s.items) > 1:
            notes.append(f"The query is the mean of {len(s.uploads) + len(s.items)} images (the uploaded query and "
                         f"confirmed matches); the maps are drawn on the first.")
        with self._maps_lock if kinds else nullcontext():
            out = explain_gallery(self.embedder, self.head, original, qpath, qkey, gal, query_id=qpid, notes=notes,
                                  top_k=len(items), kinds=kinds, query_feature=s.vector, model_name=self.embedder.name)
        rank = {row["path"]: s.ids.index(row["id"]) + 1 for row in rows}
        for r in out.explanation.results:  # ranks as the search gave them, not within the items explained
            r.rank = r.original_rank = rank[r.key]
        out.explanation.gallery_size = len(index)
        self.audit.write("explain", search=sid, items=list(items), maps=kinds)
        return out

    def report(self, sid: str, maps: str | None = None, html: bool = True) -> tuple[str | None, dict]:
        """The self-contained HTML report (None without ``html``) and the JSON of a search's results,
        with marks, probabilities and filters."""
        s = self.get_search(sid)
        ex = self.explain(sid, None, maps)
        marks = self.marks.get(s.case_query, {})
        marked = [f"#{rank} {'same person' if marks[i] == 'match' else 'not the person'}"
                  for rank, i in enumerate(s.ids, start=1) if i in marks]
        keys = self._mark_keys.get(s.case_query, {})
        marked += [f"{keys.get(i) or f'item {i}'} (not in these results) "
                   f"{'same person' if m == 'match' else 'not the person'}"
                   for i, m in sorted(marks.items()) if i not in s.ids]
        notes = ex.notes + (["Marked by the analyst: " + "; ".join(marked) + "."] if marked else [])
        page = render_explained(ex, notes=notes) if html else None
        data = {"search": {"id": s.id, "created": s.created, "query": {"uploads": s.uploads, "items": s.items},
                           "k": s.k, "filters": s.filters, "threshold": s.threshold,
                           "calibration": None if self.calibration is None else self.calibration.to_dict()},
                "results": [{"id": i, "key": public_key(str(self.index.keys[i])), "distance": d, "probability": p,
                             "flagged": None if p is None else p < s.threshold, "mark": marks.get(i)}
                            for i, d, p in zip(s.ids, s.distances, s.probabilities)],
                "marks": [{"id": i, "key": self._mark_keys.get(s.case_query, {}).get(i, ""), "mark": m}
                          for i, m in sorted(marks.items())],
                "explanation": ex.to_dict()}
        self.audit.write("export", search=sid, maps=maps or "none")
        return page, json.loads(json.dumps(data, allow_nan=False))

    # -- images by id --

    def check_item(self, i: int, index: GalleryIndex | None = None) -> GalleryIndex:
        """404 for an id the index does not have, 410 for a row of a damaged or dropped segment."""
        index = index or self.index
        if not 0 <= i < len(index):
            raise Problem(404, f"no gallery item {i} (the index has {len(index)})")
        if index.is_dead(i):
            raise Problem(410, f"gallery item {i} lies in a damaged part of the index and cannot be served "
                               f"(`xreid index check` names it)")
        return index

    def thumbnail(self, i: int) -> bytes:
        index = self.check_item(i)
        try:
            data = index.thumbnail(i)
        except DamagedSegment as exc:  # never a broken JPEG: draw the thumbnail from the image instead
            key = str(index.keys[i])
            try:
                return make_thumbnail(self.data_root / key)
            except ImageError:
                raise Problem(503, f"gallery item {i}: its thumbnail pack ({exc.path.name}) is damaged and its "
                                   f"image cannot be read") from None
        if data is None:
            raise Problem(404, f"gallery item {i} has no thumbnail")
        return data

    def image(self, i: int) -> bytes:
        """Gallery item ``i``'s image as a JPEG (decoded and re-encoded: whatever the file holds, what
        is sent is an image)."""
        self.check_item(i)
        return _jpeg(self._gallery_image(i))

    def upload_image(self, uid: str) -> bytes:
        return _jpeg(self.upload_pixels(self.get_upload(uid)))

    def close(self) -> None:
        self.audit.close()


def public_key(key: str) -> str:
    """A gallery key as a client may see it: the path relative to the data root (what every list and
    folder walk now stores); an absolute one, which an index built by an older xreid may hold, is cut
    to its file name so no server path is ever sent."""
    from xreid.data.lists import safe_key

    return key if safe_key(key) == key else ".../" + key.replace("\\", "/").rsplit("/", 1)[-1]


def _value_counts(vocab: np.ndarray, codes: np.ndarray, most: int = 200) -> list[dict]:
    """The most frequent values of a string column (empty values left out), for a facet."""
    counts = np.bincount(codes, minlength=len(vocab))
    order = np.argsort(-counts, kind="stable")
    return [{"value": str(vocab[i]), "count": int(counts[i])} for i in order[:most] if counts[i] and vocab[i]]


def _jpeg(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=90)
    return buf.getvalue()
