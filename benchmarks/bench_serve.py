"""The search service under load (``xreid serve``): end-to-end latency of one analyst, then 16
concurrent clients for 60 s, against a 100,000-image index.

    python benchmarks/bench_serve.py [--rows 100000] [--clients 16] [--seconds 60] [--out STEM]

The index (kept in ``runs/bench_serve/`` between runs; built the first time, ~5 min): the 19,000 PETA
crops indexed for real by ``xreid index build --model default`` (embeddings, calibrated attribute
probabilities, thumbnails, camera from the file names), then topped up to ``--rows`` with rows derived
from real ones: a real embedding plus Gaussian noise (norm 0.35 of the embedding's), its attributes
recomputed by the head, the same thumbnail, a synthetic camera 1-8 and a time over 30 days. The
index is large enough to get its ANN structure (faiss IVF-PQ, built at 50,000 rows).

The server is the real command (``python -m xreid.cli serve``) in its own process, on the loopback.
One operation = what the page does for a dropped image: ``POST /api/uploads`` (the image bytes: the
server sniffs, decodes, stores and embeds it) then ``POST /api/search`` (k = 20, with the filter of
the operation; results explained in attributes and given a same-person probability). Query images:
the PETA-ReID test queries (JPEG / BMP / PNG as stored), in a random order. Filters drawn per
operation: none, camera, an attribute, camera + attribute + time (a quarter each).

Reported: single client (100 operations one after the other): p50 / p90 / p99 of the operation
and of each request; then ``--clients`` threads (each with its own keep-alive connection) issuing
operations for ``--seconds``: operations done, per-second throughput, p50 / p99, errors (any
non-2xx answer or connection failure), and the server's resident memory (VmRSS) before and after.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from common import REPO, Report, parse, parser, relative

CACHE = REPO / "runs" / "bench_serve"
FILTERS = [{}, {"camera": ["2"]}, {"attributes": {"carryingBackpack": True}},
           {"camera": ["1", "3", "5"], "attributes": {"personalMale": False}, "after": "1970-01-10T00:00:00Z"}]


def build_case(root: Path, case: Path, rows: int, report: Report) -> Path:
    """The real PETA index, topped up with derived rows (see the module docstring); resumable."""
    from xreid.explain.attribute_head import AttributeHead
    from xreid.binding import MODEL_FIELDS, differences
    from xreid.index.gallery import read_manifest
    from xreid.models.loading import BUNDLED_HEAD, load_embedder
    from xreid.workflows.index import build_index

    embedder, head = load_embedder("default"), AttributeHead.load(BUNDLED_HEAD)
    if (case / "manifest.json").is_file() and differences(read_manifest(case)["identity"],
                                                          embedder.identity(), MODEL_FIELDS):
        report.progress(f"{relative(case)} was built by another bundled model: building it again")
        shutil.rmtree(case)  # this benchmark's own case, rebuilt whole
    if not (case / "manifest.json").is_file() or read_manifest(case)["state"] != "ready":
        report.progress(f"indexing the PETA crops into {relative(case)} (resumable)")
        build_index(embedder, head, root, case, images=root / "peta" / "PETA dataset", head_name="bundled")
    top_up(case, embedder, head, rows, report)
    return case


def top_up(case: Path, embedder, head, rows: int, report: Report) -> None:
    """Add rows derived from the real ones (see the module docstring) until ``case`` holds ``rows``."""
    from xreid.index.gallery import GalleryIndex, IndexWriter, Rows
    from xreid.binding import head_binding

    index = GalleryIndex.open(case, ann=False)
    real = int(np.sum([not str(k).startswith("synthetic/") for k in index.keys]))
    if len(index) < rows:
        report.progress(f"adding {rows - len(index):,} derived rows")
        rng = np.random.default_rng(len(index))
        with IndexWriter.append(case, embedder.identity(), head.names, head_binding(head, "bundled")) as writer:
            base = index.vectors[:real]
            thumbs = [index.thumbnail(i) for i in range(real)]
            start = len(index)
            while start < rows:
                n = min(5000, rows - start)
                src = rng.integers(0, real, n)
                noise = rng.normal(size=(n, base.shape[1])).astype(np.float32)
                noise *= 0.35 / np.linalg.norm(noise, axis=1, keepdims=True)
                vectors = base[src] + noise
                times = 86400 * 30 * rng.random(n)
                fields = [{"camera": f"synthetic/{c}"} for c in rng.integers(1, 9, n)]
                writer.commit(Rows([f"synthetic/{start + j:06d}" for j in range(n)], vectors, head.calibrated(vectors),
                                   fields, times, [thumbs[s] for s in src]))
                start += n
            writer.finish()


def query_images(root: Path) -> list[bytes]:
    """The PETA-ReID test query images (as stored: JPEG / BMP / PNG), in a fixed random order."""
    from xreid.data.protocol import load_protocol

    proto = load_protocol("peta-reid", root)
    images = [(proto.image_root / r.path).read_bytes() for t in proto.test_sets for r in t.query]
    random.Random(0).shuffle(images)
    return images


def start_server(case: Path, workdir: Path, root: Path, src: Path | None = None
                 ) -> tuple[subprocess.Popen, int, dict]:
    """The real ``xreid serve`` on a free loopback port (its log in ``workdir``.log), once it answers
    ``/api/info``: (process, port, info); ``src``: run the library from that source tree instead
    (another commit's ``src``, for a before / after comparison)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = workdir.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:  # a file, not a pipe: a long run's log never blocks the server
        server = subprocess.Popen([sys.executable, "-m", "xreid.cli", "serve", str(case), "--port", str(port),
                                   "--workdir", str(workdir), "--data-root", str(root)],
                                  stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, **({"PYTHONPATH": str(src)} if src else {})})
    deadline = time.time() + 300
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/api/info")
            resp = conn.getresponse()
            if resp.status == 200:
                return server, port, json.loads(resp.read())
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            raise SystemExit(f"the server did not start: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)


class Client:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes, content_type: str) -> tuple[int, bytes, float]:
        t0 = time.perf_counter()
        self.conn.request(method, path, body=body, headers={"content-type": content_type})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data, time.perf_counter() - t0

    def operation(self, image: bytes, filters: dict) -> tuple[bool, float, float, float]:
        """Upload + search; (ok, total, upload seconds, search seconds)."""
        s1, data, t1 = self.request("POST", "/api/uploads?name=query", image, "application/octet-stream")
        if s1 != 201:
            return False, t1, t1, 0.0
        uid = json.loads(data)["id"]
        body = json.dumps({"uploads": [uid], "k": 20, "filters": filters}).encode()
        s2, data, t2 = self.request("POST", "/api/search", body, "application/json")
        return s2 == 200 and len(json.loads(data)["results"]) > 0, t1 + t2, t1, t2


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--single", type=int, default=100, help="operations of the single-client run")
    args = parse(ap)
    report = Report(args.out)
    case = build_case(args.data_root, CACHE / f"case_{args.rows}", args.rows, report)
    images = query_images(args.data_root)
    server, port, info = start_server(case, CACHE / "serve_session", args.data_root)
    try:
        client = Client(port)
        client.operation(images[0], {})  # warm-up: first-call costs out of the figures
        rss_start = rss_mb(server.pid)
        single = [client.operation(images[i % len(images)], FILTERS[i % 4]) for i in range(args.single)]
        report.print(f"index: {info['count']:,} images ({relative(case)}), model {info['model']}, "
                     f"calibrated: {info['calibration'] is not None}; server pid RSS after start-up and one search: "
                     f"{rss_start:.0f} MB")
        report.print(f"\nsingle client, {args.single} operations (upload + search, k = 20), milliseconds:")
        rows = [[name, f"{pct(v, 50):.1f}", f"{pct(v, 90):.1f}", f"{pct(v, 99):.1f}"] for name, v in (
            ("upload + search (end to end)", [o[1] for o in single]), ("upload (sniff, decode, store, embed)",
                                                                      [o[2] for o in single]),
            ("search (ANN + filters + attributes + probability)", [o[3] for o in single]))]
        report.table(["", "p50", "p90", "p99"], rows)
        single_errors = sum(not o[0] for o in single)

        ops: list[tuple[bool, float, float, float]] = []
        failures: list[str] = []
        lock = threading.Lock()
        stop = time.perf_counter() + args.seconds

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            c = Client(port)
            while time.perf_counter() < stop:
                try:
                    o = c.operation(images[rng.randrange(len(images))], FILTERS[rng.randrange(4)])
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    with lock:
                        failures.append(repr(exc))
                    c = Client(port)
                    continue
                with lock:
                    ops.append(o)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rss_end = rss_mb(server.pid)
        errors = sum(not o[0] for o in ops) + len(failures)
        report.print(f"\n{args.clients} concurrent clients for {args.seconds:.0f} s ({wall:.1f} s wall):")
        report.table(["operations", "per second", "p50 ms", "p99 ms", "search p50 ms", "search p99 ms", "errors",
                      "RSS before MB", "RSS after MB"],
                     [[len(ops), f"{len(ops) / wall:.1f}", f"{pct([o[1] for o in ops], 50):.0f}",
                       f"{pct([o[1] for o in ops], 99):.0f}", f"{pct([o[3] for o in ops], 50):.0f}",
                       f"{pct([o[3] for o in ops], 99):.0f}", errors, f"{rss_start:.0f}", f"{rss_end:.0f}"]])
        if failures:
            report.print("failures: " + "; ".join(sorted(set(failures))[:5]))
        report.print(f"\nmachine: {os.cpu_count()} cores, shared with whatever else ran (see docs/RESULTS.md).")
        figures = {"rows": info["count"], "model": info["model"], "clients": args.clients, "seconds": args.seconds,
                   "single": {"operations": args.single, "errors": single_errors,
                              "end_to_end_ms": {q: pct([o[1] for o in single], q) for q in (50, 90, 99)},
                              "upload_ms": {q: pct([o[2] for o in single], q) for q in (50, 90, 99)},
                              "search_ms": {q: pct([o[3] for o in single], q) for q in (50, 90, 99)}},
                   "load": {"operations": len(ops), "wall_s": wall, "per_second": len(ops) / wall,
                            "end_to_end_ms": {q: pct([o[1] for o in ops], q) for q in (50, 99)},
                            "search_ms": {q: pct([o[3] for o in ops], q) for q in (50, 99)},
                            "errors": errors, "rss_before_mb": rss_start, "rss_after_mb": rss_end}}
        report.save(json.loads(json.dumps(figures)))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
