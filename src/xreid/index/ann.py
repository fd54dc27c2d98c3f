"""The approximate nearest-neighbour part of a gallery index: faiss IVF with 4-bit PQ fast-scan codes.

Why this structure (measured in ``benchmarks/bench_index.py``, results in
``benchmarks/results/index.txt``): the codes are 64 bytes per 256-d vector (D/2 sub-quantizers of 4
bits) of the vector after a fixed random rotation (``ROTATE``, up to ``ROTATE_MAX_DIM`` dims),
scanned with SIMD lookup tables, so even a scan of every list of a 1,000,000-vector index takes a
few milliseconds on one core; filters act inside the scan through an ``IDSelectorBitmap`` (rows the
filter rejects are never scored), and the candidates (``max(200, 20 k)``) are re-ranked with the
exact float32 vectors, so the distances returned are exact ``xreid.distance`` distances.

``nprobe`` (how many of the ``nlist`` lists a query scans) is tuned when the index is built: the
smallest power of two whose recall@10 against exact search, on gallery vectors used as queries
(each without itself), reaches ``TUNE_RECALL``. Well-structured embeddings (people seen several
times) need few lists; unstructured ones (random vectors) end at a full scan, which still meets the
latency target. A filtered search scans ``nprobe / selectivity`` lists (at most all), since a filter
that keeps 10 % of the rows leaves a tenth of the candidates in each list.

That tuning answers for a query that looks like the gallery's own rows, and with many views of
the same people it settles on one or two lists: each row's near-copies share its list. A query
of someone the gallery holds few views of has its match in another list, so the tuned width lost
7-14 mAP points at 100,000-300,000 distractors (docs/RESULTS.md, Distractors). A search
therefore scans at least a fixed fraction of the lists, the **scan floor** (``scan_nprobe``;
``SCAN_FLOOR`` unless a build says otherwise, recorded in the index's manifest): ``nprobe`` is
``max(tuned, ceil(floor * nlist))``. Gallery-to-gallery searches (the look-alikes a build finds
for every row) are what the tuning measured and keep the tuned width (``tuned_nprobe``). With
the default floor, 1, a query scans every list (9-10 ms per 1,000,000 x 256-d rows): the 4-bit
codes and the exact re-rank do the work, the lists prune only the look-alike searches.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from xreid.io import atomic_write

log = logging.getLogger(__name__)

TUNE_RECALL = 0.98
TUNE_QUERIES = 256
#: the smallest fraction of the lists a search scans, chosen on PETA-ReID-val (docs/RESULTS.md,
#: Distractors): every list; half of them still lost 2.2 mAP points at 100,000 distractors
SCAN_FLOOR = 1.0


def scan_nprobe(tuned: int, nlist: int, floor: float) -> int:
    """Lists a search scans: the tuned ``nprobe``, raised to ``ceil(floor * nlist)``, at most ``nlist``
    (``floor`` in [0, 1])."""
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"scan floor must be a fraction of the lists in [0, 1] (got {floor})")
    return int(min(nlist, max(int(tuned), math.ceil(floor * nlist - 1e-9), 1)))


def candidates_for(k: int) -> int:
    """How many approximate candidates are re-ranked exactly for a top-``k`` search."""
    return max(200, 20 * k)


def _faiss():
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it picked: not news
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("the gallery index needs faiss (pip install faiss-cpu)") from exc
    return faiss


def one_thread_per_scan() -> None:
    """Run faiss's work in the calling thread on that thread alone: its OpenMP thread count (and so
    the OpenBLAS faiss drives) set to one for this thread. The initializer of the threads that search
    shards side by side (``xreid.index.sharded``): each scan is already one thread's work, and pools
    of OpenMP / BLAS threads woken from every shard thread spin on the same cores (measured together
    with ``xreid.distance``'s own loop for small products: ``benchmarks/bench_code_size.py``,
    docs/RESULTS.md, Sharded index and Ray). OpenMP's thread count is a per-thread setting: it applies
    to this thread only."""
    _faiss().omp_set_num_threads(1)


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: the power of two nearest sqrt(n) / 4, within [16, 1024]
    (256 for 1M). Fewer, longer lists than the usual sqrt(n): on random vectors and on data with
    the neighbour statistics of real re-id embeddings the tuning ends at a scan of every list,
    which is faster over 256 lists than over 1024 (benchmarks/bench_index.py)."""
    return int(min(1024, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n) / 4))))))


#: dimensions each 4-bit sub-quantizer codes. Two (64 bytes per 256-d row) keep recall@10 at 1.000
#: on 10,000,000 synthetic rows; four halve the codes and the scan (there 31.6 -> 22.3 ms p50) but
#: recall@10 fell to 0.950, the bottom of its target (``bench_sharded.py --dims-per-code 4``,
#: docs/RESULTS.md), so two stay
DIMS_PER_CODE = 2


#: a random rotation of every vector before its codes (faiss ``RR``; fixed seed, so a build stays
#: deterministic). Embeddings spread their variance unevenly over the dimensions (the synthetic
#: identities' spectrum by design, real re-id embeddings as measured), and each 4-bit sub-quantizer
#: codes a few consecutive dimensions with 16 centroids whatever their variance: the few
#: high-variance dimensions are coded coarsely and their error dominates. A rotation spreads the
#: variance evenly over the sub-quantizers (docs/RESULTS.md, Sharded index and Ray: rotated codes).
ROTATE = True
#: the widest vectors rotated: a query reads the D x D matrix (4 MB at 1,024-d, 38 MB at 3,072-d,
#: where it made one query over 60,000 rows 3.5 -> 5.1 ms and was not shown to help; measured in
#: ``benchmarks/bench_code_size.py``, docs/RESULTS.md)
ROTATE_MAX_DIM = 1024


def pq_spec(dim: int, nlist: int, per: int | None = None, rotate: bool | None = None) -> str:
    """The faiss factory string: a random rotation (by default where ``ROTATE`` and ``dim`` is at most
    ``ROTATE_MAX_DIM``), IVF, then 4-bit fast-scan PQ with ``per`` (``DIMS_PER_CODE``) dims per
    sub-quantizer, or the largest divisor of ``dim`` below it."""
    per = math.gcd(dim, per or DIMS_PER_CODE)
    if rotate is None:
        rotate = ROTATE and dim <= ROTATE_MAX_DIM
    rotation = f"RR{dim}," if rotate else ""
    return f"{rotation}IVF{nlist},PQ{dim // per}x4fs"


#: faiss's fast-scan kernel for a single query (``IndexIVFFastScan.implem``): 10 scans the query's
#: lists one after another into one heap, 1.7-1.9x (1,000,000 rows) and 2.0-2.1x (2,500,000 rows) faster for
#: one query than the kernel faiss picks itself (0), which stays for batches, where it is 2.6-2.8x faster
#: than 10 (``benchmarks/bench_scan_kernel.py``, docs/RESULTS.md, Sharded index and Ray)
SINGLE_QUERY_KERNEL = 10

#: rows scored at once by an exact top-k over many rows (``TopK``)
TOPK_BLOCK = 262_144


class TopK:
    """The ``k`` highest scores of each of ``n`` queries (and their row ids) over blocks of rows
    scored one after another: an exact search that never holds every score at once."""

    def __init__(self, n: int, k: int):
        self.k = k
        self.ids = np.full((n, k), -1, np.int64)
        self.scores = np.full((n, k), -np.inf, np.float32)

    def add(self, scores: np.ndarray, first: int) -> None:
        """Scores (n x m) of rows ``first`` .. ``first + m - 1``."""
        m = scores.shape[1]
        if m > self.k:
            pick = np.argpartition(-scores, self.k - 1, axis=1)[:, :self.k]
        else:
            pick = np.broadcast_to(np.arange(m), (len(scores), m))
        s = np.concatenate([self.scores, np.take_along_axis(scores, pick, 1).astype(np.float32)], 1)
        i = np.concatenate([self.ids, pick + first], 1)
        top = np.argpartition(-s, self.k - 1, axis=1)[:, :self.k]
        self.scores, self.ids = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)


class AnnIndex:
    """A faiss IVF-PQ fast-scan index over row ids 0..n-1 of a gallery (inner product on unit rows)."""

    def __init__(self, index, nprobe: int, tuned_recall: float | None = None, factor: int = 1,
                 scan_floor: float = SCAN_FLOOR):
        faiss = _faiss()
        #: what a search calls: the IVF index, or the rotation in front of it (``ROTATE``; indexes
        #: written before rotations have none and are searched as they are)
        self.index = index
        self.rotated = isinstance(index, faiss.IndexPreTransform)
        #: the IVF-PQ fast-scan index itself (its lists, codes and scan kernel)
        self.ivf = faiss.downcast_index(faiss.extract_index_ivf(index)) if self.rotated else index
        #: lists a gallery row searching the gallery needs (the tuning's answer)
        self.tuned_nprobe = int(nprobe)
        self.scan_floor = float(scan_floor)
        #: lists a search scans: the tuned width, at least ``scan_floor`` of the lists
        self.nprobe = scan_nprobe(self.tuned_nprobe, self.nlist, self.scan_floor)
        #: candidates re-ranked = factor * candidates_for(k)
        self.factor = int(factor)
        self.tuned_recall = tuned_recall

    @property
    def nlist(self) -> int:
        return int(self.ivf.nlist)

    @property
    def rows(self) -> int:
        return int(self.index.ntotal)

    @property
    def spec(self) -> str:
        return pq_spec(self.index.d, self.nlist, self.index.d // self.ivf.pq.M, self.rotated)

    @classmethod
    def build(cls, vectors: np.ndarray, seed: int = 0, nlist: int | None = None, tune: bool = True,
              scan_floor: float = SCAN_FLOOR, rotate: bool | None = None, per: int | None = None) -> "AnnIndex":
        """Train on a sample of ``vectors`` (unit rows, float32), add them all, tune ``nprobe``; a
        search scans at least ``scan_floor`` of the lists. ``rotate`` and ``per`` (dims per code): the
        codes, by default ``pq_spec``'s."""
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, np.float32)
        n, dim = vectors.shape
        nlist = nlist or default_nlist(n)
        index = faiss.index_factory(dim, pq_spec(dim, nlist, per, rotate), faiss.METRIC_INNER_PRODUCT)
        ann = cls(index, nlist, scan_floor=scan_floor)
        rng = np.random.default_rng(seed)
        sample = vectors if n <= 64 * nlist else vectors[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        ann.ivf.cp.seed = seed  # k-means seed (the rotation's is faiss's own fixed one): same vectors, same index
        index.train(sample)
        index.add(vectors)
        if tune:
            ann.tune(vectors, seed)
        return ann

    def add(self, vectors: np.ndarray) -> None:
        """Append rows (their ids continue from ``rows``)."""
        self.index.add(np.ascontiguousarray(vectors, np.float32))

    def search(self, query: np.ndarray, k: int, nprobe: int | None = None,
               bitmap: np.ndarray | None = None) -> np.ndarray:
        """Candidate row ids (``factor * candidates_for(k)`` at most) for a top-``k`` search of one
        unit ``query``, scanning ``nprobe`` lists; with
        ``bitmap`` (``np.packbits(mask, bitorder='little')``) only rows whose bit is set are scored."""
        faiss = _faiss()
        params = faiss.SearchParametersIVF(nprobe=min(self.nlist, int(nprobe or self.nprobe)))
        if bitmap is not None:
            selector = faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(bitmap))
            params.sel = selector  # ``selector`` and ``bitmap`` stay alive until the search returns
        n = self.factor * candidates_for(k)
        ids = self.scan(np.ascontiguousarray(query, np.float32).reshape(1, -1), n, params)[0]
        return ids[ids >= 0]

    def scan(self, queries: np.ndarray, n: int, params) -> np.ndarray:
        """Q x ``n`` candidate ids (-1 padded) of unit ``queries`` (float32, contiguous) under faiss
        search ``params``, with the fast-scan kernel for one query or for a batch (``SINGLE_QUERY_KERNEL``).
        The kernel is an attribute of the faiss index, set before each search: threads searching one
        index at once all ask for one query each (a server's searches; batches run when a build or add
        finishes, on the writer's own index), and either kernel returns the same candidates but for
        ties, so a race would cost speed, never results."""
        self.ivf.implem = SINGLE_QUERY_KERNEL if len(queries) == 1 else 0
        return self.index.search(queries, n, params=params)[1]

    def tune(self, vectors: np.ndarray, seed: int = 0, target: float = TUNE_RECALL, k: int = 10) -> None:
        """Set ``nprobe`` to the smallest power of two (or all lists) whose recall@k of the re-ranked
        candidates, for up to ``TUNE_QUERIES`` gallery rows as queries (each excluded from its own
        answer), reaches ``target``; if a scan of every list still falls short (unstructured data),
        double the candidates re-ranked (up to 8x) instead. Sets ``tuned_nprobe`` (the search width,
        ``nprobe``, is then raised to the scan floor)."""
        n = len(vectors)
        rng = np.random.default_rng(seed + 1)
        qi = np.sort(rng.choice(n, min(n, TUNE_QUERIES), replace=False))
        queries = np.ascontiguousarray(vectors[qi])
        best = TopK(len(qi), k)
        for a in range(0, n, TOPK_BLOCK):  # in blocks: 256 queries x 10,000,000 rows would be 10 GB at once
            sims = queries @ np.asarray(vectors[a:a + TOPK_BLOCK]).T
            own = (qi >= a) & (qi < a + TOPK_BLOCK)
            sims[np.flatnonzero(own), qi[own] - a] = -np.inf  # each query without itself
            best.add(sims, a)
        truth = best.ids
        nlist, faiss = self.nlist, _faiss()

        def recall(nprobe: int, factor: int) -> float:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            cand = self.scan(queries, factor * candidates_for(k) + 1, params)
            hits = 0
            for row, c in enumerate(cand):
                c = c[(c >= 0) & (c != qi[row])]
                top = c[np.argsort(-(vectors[c] @ queries[row]), kind="stable")[:k]]
                hits += len(np.intersect1d(top, truth[row]))
            return hits / (k * len(qi))

        nprobe, factor = 1, 1
        while (r := recall(nprobe, factor)) < target and nprobe < nlist:
            nprobe = min(nlist, nprobe * 2)
        while r < target and factor < 8:
            factor *= 2
            r = recall(nprobe, factor)
        self.tuned_nprobe, self.factor, self.tuned_recall = nprobe, factor, r
        self.nprobe = scan_nprobe(nprobe, nlist, self.scan_floor)
        log.info("ANN index: nprobe %d of %d lists tuned, %d candidates re-ranked: recall@%d %.3f on %d gallery "
                 "queries; a search scans %d lists (floor %.3g)", nprobe, nlist, factor * candidates_for(k), k, r,
                 len(qi), self.nprobe, self.scan_floor)

    def save(self, path: Path) -> None:
        data = _faiss().serialize_index(self.index)
        atomic_write(path, lambda fh: fh.write(np.asarray(data).tobytes()))

    @classmethod
    def load(cls, path: Path, nprobe: int, tuned_recall: float | None = None, factor: int = 1,
             scan_floor: float = SCAN_FLOOR) -> "AnnIndex":
        """The index saved at ``path`` with its tuned ``nprobe`` and the ``scan_floor`` it searches with."""
        faiss = _faiss()
        try:
            index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        except (RuntimeError, OSError) as exc:
            raise ValueError(f"{path}: not a readable faiss index ({str(exc).splitlines()[-1]})") from None
        return cls(index, nprobe, tuned_recall, factor, scan_floor)

    @classmethod
    def from_manifest(cls, path: Path, info: dict, scan_floor: float | None = None) -> "AnnIndex":
        """The index a manifest's ``ann`` entry describes (``path``: its file): the tuned width, the
        candidates factor and the scan floor it recorded (``SCAN_FLOOR`` for an index written before
        floors were recorded), or ``scan_floor`` when given."""
        floor = info.get("scan_floor", SCAN_FLOOR) if scan_floor is None else scan_floor
        return cls.load(path, info.get("tuned_nprobe", info["nprobe"]), info.get("tuned_recall"),
                        info.get("factor", 1), floor)

    def manifest_entry(self) -> dict:
        """What a manifest records of this index (besides its file and checks)."""
        return {"spec": self.spec, "nlist": self.nlist, "nprobe": self.nprobe, "tuned_nprobe": self.tuned_nprobe,
                "scan_floor": self.scan_floor, "factor": self.factor, "tuned_recall": self.tuned_recall}
