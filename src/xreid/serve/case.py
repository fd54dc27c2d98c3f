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

from xreid.binding import HEAD_FIELDS, check_binding, head_binding
from xreid.data.images import ImageError, decode_image, load_image
from xreid.data.vocabulary import words
from xreid.distance import l2_normalise
from xreid.errors import Gone, InvalidInput, NotFound, NotStored, TooLarge, Unavailable, UnsupportedMedia
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.describe import Description, description_of, parse_description, phrase
from xreid.explain.description_score import COMBINE, RERANK_POOL, RULE, UNRELIABLE_WEIGHT, evidence, term_weights
from xreid.explain.formulas import orthonormal_attribute_basis
from xreid.explain.maps.compute import parse_kinds
from xreid.explain.naming import RELIABLE_AT
from xreid.explain.query_check import check_query
from xreid.explain.ranking import IDENTICAL_BELOW, explain_ranking
from xreid.index.base import Hits
from xreid.index.filters import parse_filter
from xreid.index.gallery import DamagedSegment, GalleryIndex, read_manifest
from xreid.index.metadata import PID
from xreid.io import atomic_write
from xreid.models.embedders import Embedder, TorchEmbedder, camera_variant
from xreid.rendering.charts import composition
from xreid.rendering.description import reason_line
from xreid.rendering.words import CHIP_AT, query_chips, result_line
from xreid.serve.audit import AuditLog
from xreid.serve.imagecache import ImageCache
from xreid.serve.marks import MarkStoreError, load_marks, save_marks
from xreid.workflows.describe import joined_filter, rerank_order
from xreid.workflows.explain import Explained, embed_query, explain_hits, render_explained
from xreid.workflows.index import open_case
from xreid.workflows.index import thumbnail as make_thumbnail

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
    #: requests handled at the same time (threads; more wait their turn): each thread keeps memory of
    #: its own, so the server's memory follows this number, not the number of clients
    worker_threads: int = 8


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
    vector: np.ndarray | None  # None: a search by description alone
    hits: Hits  # the results, ranked 1..n as shown
    probabilities: list[float | None]
    #: each upload's file name as it was when the search ran (a later upload of the same bytes under
    #: another name does not rename this search's query)
    upload_names: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    description: str = ""
    camera: str | None = None  # the camera the uploads were embedded as

    @property
    def ids(self) -> list[int]:
        return self.hits.ids.tolist()

    @property
    def distances(self) -> list[float]:
        return [float(d) for d in self.hits.distances]

    @property
    def case_query(self) -> str:
        """What marks are kept under: the first uploaded image, else the first gallery item, else the
        description; a re-search that adds confirmed matches keeps its query's marks."""
        if self.uploads:
            return f"upload:{self.uploads[0]}"
        return f"item:{self.items[0]}" if self.items else f"description:{self.description}"


def _clean_name(name: str | None) -> str:
    """A client's file name, for display and the audit log only (never used to open anything)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable())[:120]


class CaseSession:
    """A gallery index opened for searching, with the model that embeds queries, its attribute head,
    the calibration of distance to "same person" probability (None when the case has none) and the
    session folder (uploads, audit log). The index is re-read when another process commits to it
    (``xreid index add``), checked at most once a second."""

    def __init__(self, case: str | Path, embedder: Embedder, head: AttributeHead, data_root: Path,
                 workdir: str | Path | None = None, calibration=None, limits: Limits = Limits(),
                 threshold: float | None = None, ray: str | None = None, map_quality: dict | None = None):
        self.case, self.ray = Path(case), ray
        manifest = read_manifest(self.case)
        check_binding(self.case, manifest.get("identity"), embedder.identity(),
                      remedy="Serve the index with the model options it was built with.")
        check_binding(self.case, manifest.get("attributes"), head_binding(head), fields=HEAD_FIELDS, strict=False,
                      what="indexed with another attribute head", verb="built with head",
                      remedy="Serve it with the --head it was built with.")
        self.embedder, self.head, self.data_root, self.limits = embedder, head, Path(data_root), limits
        self.calibration = calibration
        self.map_quality = map_quality  # map type -> its recorded figures (``xreid.models.map_quality``), or None
        self.threshold = float(threshold if threshold is not None else getattr(calibration, "threshold", 0.5))
        self.workdir = Path(workdir) if workdir is not None else self.case / "serve"
        try:
            (self.workdir / "queries").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{self.workdir}: cannot create the session folder ({exc.strerror}); "
                             f"give a writable --workdir") from None
        self.audit = AuditLog(self.workdir / "audit.jsonl")
        self._index = open_case(self.case, self.data_root, self.ray)
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

    @classmethod
    def open(cls, case: str | Path, embedder: Embedder, head: AttributeHead, data_root: Path,
             workdir: str | Path | None = None, threshold: float | None = None,
             limits: Limits = Limits(), ray: str | None = None, model: str | None = None) -> "CaseSession":
        """A session on ``case`` with its same-person calibration: the case's own, else the one shipped
        for the bundled model, else none (results are then shown without a probability); and the
        map-quality record of ``model`` (the --model given), which decides the default maps."""
        from xreid.models.map_quality import load_map_quality
        from xreid.workflows.match_calibration import load_match_calibration

        quality = load_map_quality(model) if model is not None else None
        return cls(case, embedder, head, data_root, workdir=workdir, threshold=threshold, limits=limits, ray=ray,
                   calibration=load_match_calibration(Path(case), embedder.identity()),
                   map_quality=quality.maps if quality else None)

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
                    fresh = open_case(self.case, self.data_root, self.ray)
                    with self._lock:
                        self._index, self._seen = fresh, stamp
                    log.info("%s: re-read, %d rows", self.case, len(fresh))
            except (OSError, ValueError) as exc:  # a damaged or vanished index: keep serving what we have
                log.warning("%s: could not re-read (%s); serving the state read before", self.case, exc)
        return self._index

    # -- what the page needs to draw its facets --

    def info(self) -> dict:
        index = self.index
        facets = index.facets()
        return {
            "case": self.case.name, "count": len(index), "model": index.identity.get("model"),
            "attributes": [{"name": n, "text": words(n).present, "group": words(n).group,
                            "reliable": bool(self.reliable[a]), "count": facets["attributes"][n],
                            "phrase": _phrase(n, True, index.attribute_names),
                            "absent_phrase": _phrase(n, False, index.attribute_names)}
                           for a, n in enumerate(index.attribute_names)],
            "cameras": facets["cameras"], "query_cameras": list(self.embedder.camera_names()),
            "time": facets["time"], "fields": facets["fields"],
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
            raise TooLarge(f"{name or 'upload'}: {len(data):,} bytes, at most {self.limits.max_upload_bytes:,}")
        uid = hashlib.sha256(data).hexdigest()[:20]
        with self._decoding:  # at most `concurrent_decodes` full-size images in memory at once
            try:
                image, fmt = decode_image(data, name or "upload", self.limits.max_pixels, ACCEPTED_FORMATS)
            except ImageError as exc:
                kind = TooLarge if "too many pixels" in exc.problem or "too large" in exc.problem else (
                    UnsupportedMedia if "not an image" in exc.problem or "not accepted" in exc.problem else InvalidInput)
                raise kind(str(exc)) from None
            path = self.workdir / "queries" / f"{uid}{_EXT[fmt]}"
            if not path.exists():
                try:
                    atomic_write(path, lambda fh: fh.write(data))
                except OSError as exc:
                    raise NotStored(f"upload {uid}: cannot be stored in the session folder ({exc.strerror})") \
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

    def _embed(self, image: np.ndarray, camera: str | None = None) -> np.ndarray:
        return embed_query(self.embedder.for_camera(camera), image)

    def _query_camera(self, camera: str | None) -> str | None:
        """``camera`` checked against the cameras the model embeds in their own way ('' = none)."""
        try:
            camera_variant(self.embedder, camera)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return camera or None

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
            raise NotFound(f"no upload {uid!r}")
        found = sorted((self.workdir / "queries").glob(f"{uid}.*"))
        if not found:
            raise NotFound(f"no upload {uid!r} (upload the image again)")
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

    def _read_description(self, text: str) -> Description:
        if len(text) > 2000:
            raise InvalidInput(f"a description of {len(text):,} characters; at most 2,000")
        d = parse_description(text, self.index.attribute_names)
        if not d.terms:
            raise InvalidInput(f"nothing in the description {text!r} names an attribute of this case"
                               + ("; " + "; ".join(d.problems) if d.problems else ""))
        return d

    def _weights(self, d: Description) -> tuple[np.ndarray, np.ndarray]:
        """The terms' weights and reliable flags (the head's reliability of their attributes)."""
        pos = [self.head.names.index(t.name) for t in d.terms]
        rel = None if self.head.reliability is None else self.head.reliability[pos]
        return term_weights(rel, len(pos), UNRELIABLE_WEIGHT), self.reliable[pos]

    def _evidence(self, d: Description, ids: list[int], index: GalleryIndex) -> list[list]:
        weights, reliable = self._weights(d)
        pos = [index.attribute_names.index(t.name) for t in d.terms]
        probs = index.probabilities(ids)[:, pos] if ids else np.zeros((0, len(pos)))
        return [evidence(p, [t.name for t in d.terms], [t.wanted for t in d.terms], [t.text for t in d.terms],
                         weights, reliable) for p in probs]

    def _search_description(self, text: str, k: int, filters: dict | None) -> dict:
        """Rank the case by how well each image fits a description (no query image)."""
        from xreid.index.describe import search_description

        index = self.index
        d = self._read_description(text)
        try:
            where = parse_filter(filters, index.attribute_names, index.field_names)
            res = search_description(index, d.terms, k, where, self.head.reliability, RULE, UNRELIABLE_WEIGHT)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(str(exc)) from None
        ids = [int(i) for i in res.ids]
        hits = Hits(res.ids, index.keys_of(ids), 1.0 - res.scores, method="description", candidates=res.candidates,
                    size=len(index))
        search = Search(hashlib.sha256(f"{time.time_ns()}:{text}".encode()).hexdigest()[:16], [], [], k,
                        dict(filters or {}), self.threshold, None, hits, [None] * len(ids), description=text)
        with self._lock:
            self._searches[search.id] = search
            while len(self._searches) > 2048:
                self._searches.popitem(last=False)
        marks = self.marks.get(search.case_query, {})
        results = []
        for rank, (i, score, ev) in enumerate(zip(ids, res.scores, res.evidence), start=1):
            row = index.row(i, attributes=False)
            results.append({"id": i, "rank": rank, "key": public_key(row.pop("path")), "score": round(float(score), 4),
                            **row,
                            "thumbnail": f"/api/items/{i}/thumbnail", "evidence": [e.to_dict() for e in ev],
                            "reason": reason_line(ev), "mark": marks.get(i)})
        self.audit.write("search", search=search.id, query={"description": text}, k=k, filters=search.filters,
                         method="description", candidates=res.candidates,
                         results=[{"id": r["id"], "key": r["key"], "score": r["score"]} for r in results])
        return {"search": search.id, "kind": "description", "description": {**d.to_dict(), "problems": d.problems},
                "query": {"uploads": [], "items": [], "chips": [], "description": text}, "rule": res.rule,
                "lookalikes": res.lookalikes, "method": "description", "candidates": res.candidates, "threshold": self.threshold,
                "calibrated": self.calibration is not None, "results": results}

    def search(self, uploads: list[str] | None = None, items: list[int] | None = None, k: int = 20,
               filters: dict | None = None, threshold: float | None = None, description: str | None = None,
               camera: str | None = None) -> dict:
        """Search with the mean of the (normalised) embeddings of the uploaded images and gallery
        items given (items used as the query are left out of the results), or by a description
        alone, or both: the description then re-ranks (or filters) the image search. ``camera``: the
        uploads' camera, when the model embeds that camera's crops in their own way."""
        uploads, items = list(uploads or []), [int(i) for i in (items or [])]
        text = (description or "").strip()
        try:  # a filter the audit log cannot hold (NaN, infinity) is refused before any search runs
            json.dumps(filters or {}, allow_nan=False)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"filters: {exc}") from None
        if not 1 <= k <= self.limits.max_k:
            raise InvalidInput(f"k must be in 1..{self.limits.max_k} (got {k})")
        if not uploads and not items:
            if text:
                return self._search_description(text, k, filters)
            raise InvalidInput("give at least one uploaded image or gallery item, or a description, as the query")
        if len(uploads) + len(items) > self.limits.max_query_images:
            raise InvalidInput(f"at most {self.limits.max_query_images} query images")
        threshold = self.threshold if threshold is None else float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise InvalidInput(f"threshold must be a probability in [0, 1] (got {threshold})")
        index = self.index
        for i in items:
            self.check_item(i, index)
        try:  # everything checked before the search runs: a search that runs is one the audit log can hold
            where = parse_filter(filters, index.attribute_names, index.field_names)
            index.mask(where)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(f"filters: {exc}" if not str(exc).startswith("filter") else str(exc)) from None
        d = self._read_description(text) if text else None
        camera = self._query_camera(camera) if uploads else None  # the camera of the uploads: none, none to say
        ups = [self.get_upload(u) for u in uploads]
        vectors = [up.vector if camera is None else self._embed(self.upload_pixels(up), camera) for up in ups]
        vectors += list(index.vectors_of(items))
        query = l2_normalise(np.mean(l2_normalise(np.stack(vectors).astype(np.float64)), axis=0)).astype(np.float32)
        # the probability of a result reads the search's first `context` distances: fetch them even for a smaller k
        context = getattr(self.calibration, "context", 0)
        pool = max(k, context) + len(items)
        if d is not None and COMBINE == "rerank":
            pool = max(pool, RERANK_POOL + len(items))
        elif d is not None:  # the description's reliable terms join the filter
            where = joined_filter(d, self._weights(d)[0], where)
        try:  # the filter is applied (and its unknown names or bad times found) inside the search
            found = index.search(query, pool, where=where)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(str(exc)) from None
        in_query = set(items)
        keep = [j for j, i in enumerate(found.ids.tolist()) if i not in in_query]
        probs = self._probabilities([float(found.distances[j]) for j in keep])
        if d is not None and COMBINE == "rerank" and keep:
            order = rerank_order(index, d, self._weights(d)[0], found.ids[keep], found.distances[keep])
            keep, probs = [keep[o] for o in order], [probs[o] for o in order]
        probs = probs[:k]
        hits = found.take(keep[:k]).renumbered()
        search = Search(hashlib.sha256(f"{time.time_ns()}:{uploads}:{items}".encode()).hexdigest()[:16], uploads,
                        items, k, dict(filters or {}), threshold, query, hits, probs, description=text,
                        upload_names={up.id: up.name for up in ups}, camera=camera)
        with self._lock:
            self._searches[search.id] = search
            while len(self._searches) > 2048:
                self._searches.popitem(last=False)
        results = self._describe(search, index)
        if d is not None:
            for r, ev in zip(results, self._evidence(d, search.ids, index)):
                r.update(evidence=[e.to_dict() for e in ev], reason=reason_line(ev))
        self.audit.write("search", search=search.id,
                         query={"uploads": uploads, "items": items, **({"description": text} if text else {}),
                                **({"camera": camera} if camera else {})}, k=k,
                         filters=search.filters, threshold=threshold, method=found.method, candidates=found.candidates,
                         results=[{"id": r["id"], "key": r["key"], "distance": r["distance"],
                                   "probability": r["probability"], "flagged": r["flagged"]} for r in results])
        query_probs = self.head.calibrated(query[None])[0]
        return {"search": search.id, "kind": "image",
                "query": {"uploads": uploads, "items": items, "camera": camera, "chips": self._chips(query_probs),
                          "description": description_of(self.head.names, query_probs, self.reliable.tolist())},
                "description": None if d is None else {**d.to_dict(), "problems": d.problems},
                "joined": None if d is None else COMBINE,
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
        rows = [index.metadata(i) for i in s.ids]
        e = explain_ranking(s.vector, s.hits, index, self.head, include_vectors=False, model=self.embedder.name,
                            basis=self.basis, pids=[row.get(PID) for row in rows])
        names = e.attribute_names
        marks = self.marks.get(s.case_query, {})
        # matching scores of what the model sees in the query (the query's chips), not of every absence
        seen = {n for n, p in zip(names, e.query_calibrated) if p >= CHIP_AT}
        out = []
        for i, d, p, r, row in zip(s.ids, s.distances, s.probabilities, e.results, rows):
            out.append({
                "id": i, "rank": r.rank, "key": public_key(row.pop("path")), "distance": round(d, 6),
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
            raise NotFound(f"no search {sid!r} (searches are kept while the server runs; search again)")
        return s

    # -- marks --

    def mark(self, sid: str, item: int, mark: str | None) -> dict:
        s = self.get_search(sid)
        if mark not in MARKS and mark is not None:
            raise InvalidInput(f"mark must be one of {', '.join(MARKS)} or null (got {mark!r})")
        if item not in s.ids:
            raise InvalidInput(f"item {item} is not a result of search {sid}")
        key = self.index.key(item)
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
                raise NotStored(f"the mark was not saved: the case's marks file (marks.json in the session "
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
        i, index = s.items[0], self.index
        return self._gallery_image(i), index.image_path(i), index.key(i), index.metadata(i).get(PID)

    def _gallery_image(self, i: int) -> np.ndarray:
        index = self.index
        key = index.key(i)
        try:
            return index.image(i)
        except ImageError as exc:
            log.warning("gallery image %d: %s", i, exc)  # the server's path for the operator, not the client
            raise NotFound(f"gallery image {i} ({public_key(key)}) cannot be read under the server's data root: "
                               f"{exc.problem}") from None

    def explain(self, sid: str, items: list[int] | None = None, maps: str | None = "default") -> Explained:
        """The full explanation (``xreid explain``'s) of ``items`` of search ``sid`` (default: all its
        results), with ``maps`` computed now: named types, 'none' (or None), or 'default' (the default
        kinds for an xreid model less those its map-quality record measured near chance, with a note
        saying why; none for a black box)."""
        s = self.get_search(sid)
        if s.vector is None:
            raise InvalidInput(f"search {sid} is a search by description: an explanation compares a result with a "
                               f"query image ('search by this image' from a result gives one)")
        items = s.ids if items is None else items
        for i in items:
            if i not in s.ids:
                raise NotFound(f"item {i} is not a result of search {sid}")
        if not items:
            raise InvalidInput(f"search {sid} has no results to explain")
        index = self.index
        notes = []
        try:
            if maps == "default":
                kinds, notes = self.default_maps()
            else:
                kinds = parse_kinds(maps) if maps and maps != "none" else []
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        original, qpath, qkey, qpid = self._query_image(s)
        for i in items:  # a clear 404 before any work when an image is missing
            if not index.image_path(i).is_file():
                raise NotFound(f"gallery image {i} ({public_key(index.key(i))}) not found under the "
                                   f"server's data root")
        hits = s.hits.take([s.ids.index(i) for i in items])  # ranks as the search gave them
        if len(s.uploads) + len(s.items) > 1:
            notes.append(f"The query is the mean of {len(s.uploads) + len(s.items)} images (the uploaded query and "
                         f"confirmed matches); the maps are drawn on the first.")
        with self._maps_lock if kinds else nullcontext():
            out = explain_hits(self.embedder, self.head, index, hits, s.vector, original, qpath, qkey, query_id=qpid,
                               notes=notes, kinds=kinds, model_name=self.embedder.name,
                               query_row=None if s.uploads else s.items[0])
        self.audit.write("explain", search=sid, items=list(items), maps=kinds)
        return out

    def default_maps(self) -> tuple[list[str], list[str]]:
        """The map types drawn when none is named, and why any default one is left out
        (``xreid.explain.maps.quality``): none for a model without gradients."""
        from xreid.explain.maps.compute import DEFAULT_KINDS
        from xreid.explain.maps.quality import default_map_choice

        if not isinstance(self.embedder, TorchEmbedder):
            return [], []
        return default_map_choice(DEFAULT_KINDS, self.map_quality)

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
        data = {"search": {"id": s.id, "created": s.created, "query": {"uploads": s.uploads, "items": s.items, "camera": s.camera},
                           "k": s.k, "filters": s.filters, "threshold": s.threshold,
                           "calibration": None if self.calibration is None else self.calibration.to_dict()},
                "results": [{"id": i, "key": public_key(self.index.key(i)), "distance": d, "probability": p,
                             "flagged": None if p is None else p < s.threshold, "mark": marks.get(i)}
                            for i, d, p in zip(s.ids, s.distances, s.probabilities)],
                "marks": [{"id": i, "key": self._mark_keys.get(s.case_query, {}).get(i, ""), "mark": m}
                          for i, m in sorted(marks.items())],
                "explanation": ex.to_dict()}
        tl = self._report_timeline(s, marks)
        if tl is not None:
            data["timeline"], page = tl, _with_timeline(page, tl)
        self.audit.write("export", search=sid, maps=maps or "none")
        return page, json.loads(json.dumps(data, allow_nan=False))

    def _report_timeline(self, s: Search, marks: dict) -> dict | None:
        """The timeline of a search's sightings: those marked as the person, else (no mark yet) those
        above the threshold; None when no result is a sighting of footage."""
        from xreid.index.sightings import is_sighting_key, timeline

        ids = [i for i in s.ids if marks.get(i) == "match"] or [
            i for i, p in zip(s.ids, s.probabilities) if p is not None and p >= s.threshold]
        rows = [self.index.row(i, attributes=False) for i in ids]
        rows = [r for r in rows if is_sighting_key(r["path"])]
        return timeline(rows) if rows else None

    # -- images by id --

    def check_item(self, i: int, index: GalleryIndex | None = None) -> GalleryIndex:
        """404 for an id the index does not have, 410 for a row of a damaged or dropped segment."""
        index = index or self.index
        if not 0 <= i < len(index):
            raise NotFound(f"no gallery item {i} (the index has {len(index)})")
        if index.is_dead(i):
            raise Gone(f"gallery item {i} lies in a damaged part of the index and cannot be served "
                               f"(`xreid index check` names it)")
        return index

    def thumbnail(self, i: int) -> bytes:
        index = self.check_item(i)
        try:
            data = index.thumbnail(i)
        except DamagedSegment as exc:  # never a broken JPEG: draw the thumbnail from the image instead
            try:
                return make_thumbnail(index.image_path(i))
            except ImageError:
                raise Unavailable(f"gallery item {i}: its thumbnail pack ({exc.path.name}) is damaged and its "
                                   f"image cannot be read") from None
        if data is None:
            raise NotFound(f"gallery item {i} has no thumbnail")
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
        if hasattr(self._index, "close"):  # a gallery holding resources elsewhere (Ray actors)
            self._index.close()


def public_key(key: str) -> str:
    """A gallery key as a client may see it: the path relative to the data root (what every list and
    folder walk now stores); an absolute one, which an index built by an older xreid may hold, is cut
    to its file name so no server path is ever sent."""
    from xreid.data.lists import safe_key

    return key if safe_key(key) == key else ".../" + key.replace("\\", "/").rsplit("/", 1)[-1]


def _with_timeline(page: str | None, data: dict) -> str | None:
    """The HTML report with the timeline (inline SVG) before its end."""
    if page is None:
        return None
    from xreid.rendering.timeline import timeline_section

    section = str(timeline_section(data))
    return page.replace("</body>", section + "</body>", 1) if "</body>" in page else page + section


def _jpeg(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _phrase(name: str, wanted: bool, names: list[str]) -> str | None:
    """The words a description uses for an attribute (None where there are none)."""
    try:
        return phrase(name, wanted, names)
    except KeyError:
        return None
