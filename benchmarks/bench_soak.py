"""A soak of the search service (``xreid serve``): N clients of mixed uploads, searches, explanations
and marks for a duration against a case of R rows; does memory stay flat, does anything fail, is
every search audited?

    python benchmarks/bench_soak.py [--rows 100000] [--real 19000] [--clients 16] [--seconds 1200]
                                    [--warmup 120] [--out STEM]

The case (kept in ``runs/bench_soak/case_R_REAL`` between runs): the first ``--real`` PETA-ReID
training crops indexed for real by the bundled model (``xreid index build --list``), topped up to
``--rows`` with rows derived from them as ``bench_serve.py`` derives them (a real embedding plus
noise, its attributes recomputed, the same thumbnail, a synthetic camera and time).

The server is the real command (``python -m xreid.cli serve``) in its own process on the loopback.
Each client, in a loop: upload a query image (a PETA-ReID test query; one upload in ten is a large
PNG of 2,000 x 3,000 pixels with a unique pixel, so the decoded-image cache is filled and churned),
search with it (k = 20, one of four filters), then with probabilities 0.5 / 0.05 open the
explanation of a result of a real image (JSON without maps / HTML with the pair maps), with 0.3 mark
a result, with 0.05 search again among the real images (a camera filter) and download that search's
JSON report (a report explains every result, and derived rows have no image). Every answer that is not 2xx is an error.

Warm-up: first ``--fill`` large PNGs are uploaded one after the other (filling the server's
decoded-image cache, the largest bounded store) and every kind of request is made once (the first
explanation with maps loads the PyTorch model, once), then the clients run; the memory baseline is taken
``--warmup`` seconds into their load. Reported: operations and requests by kind, errors, the
server's resident memory (VmRSS, sampled every 2 s) after the fill, after ``--warmup`` and at the
end (and its peak), and whether every search the
clients were answered is in the audit log (the server's ``audit.jsonl``).
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import random
import shutil
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from bench_serve import FILTERS, pct, query_images, rss_mb, start_server, top_up
from common import REPO, Report, parse, parser, relative

CACHE = REPO / "runs" / "bench_soak"


def build_case(root: Path, rows: int, real: int, report: Report) -> Path:
    """``real`` PETA-ReID training crops indexed by the bundled model, topped up to ``rows``."""
    from xreid.data.protocol import load_protocol
    from xreid.explain.attribute_head import AttributeHead
    from xreid.binding import MODEL_FIELDS, differences
    from xreid.index.gallery import read_manifest
    from xreid.models.loading import BUNDLED_HEAD, load_embedder
    from xreid.workflows.index import build_index

    case = CACHE / f"case_{rows}_{real}"
    embedder, head = load_embedder("default"), AttributeHead.load(BUNDLED_HEAD)
    if (case / "manifest.json").is_file() and differences(read_manifest(case)["identity"],
                                                                   embedder.identity(), MODEL_FIELDS):
        shutil.rmtree(case)  # this benchmark's own case, rebuilt whole for another bundled model
    if not (case / "manifest.json").is_file() or read_manifest(case)["state"] != "ready":
        proto = load_protocol("peta-reid", root)
        prefix = proto.image_root.relative_to(root).as_posix()
        listing = CACHE / f"list_{real}.csv"
        listing.parent.mkdir(parents=True, exist_ok=True)
        with listing.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path"])
            for r in proto.train[:real]:
                w.writerow([f"{prefix}/{r.path}"])
        report.progress(f"indexing {real:,} PETA crops into {relative(case)} (resumable)")
        build_index(embedder, head, root, case, list_file=listing, head_name="bundled")
    top_up(case, embedder, head, rows, report)
    return case


def big_png(seed: int, size=(2000, 3000)) -> bytes:
    """A large, cheap-to-send PNG (smooth gradient; one pixel differs per seed, so every one is a new upload)."""
    from PIL import Image

    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    arr[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    arr[seed % h, (seed // h) % w] = (seed % 251, 7, 9)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


#: seconds a client waits for an answer (16 clients on 2 shared cores queue behind one another, and
#: maps are drawn one at a time); a longer wait is an error
TIMEOUT = 900


class Client:
    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
                ) -> tuple[int, bytes]:
        headers = {"content-type": content_type} if body is not None else {}
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # the server closed a keep-alive connection that sat idle past its timeout (5 s) while this
                # client made its next image: open a new one and send again once, as HTTP clients do
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--real", type=int, default=19_000, help="real PETA crops in the case (the rest derived)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=1200.0)
    ap.add_argument("--warmup", type=float, default=120.0, help="seconds of load before the memory baseline is taken")
    ap.add_argument("--server-src", type=Path, default=None,
                    help="run the server from this source tree (e.g. `git archive COMMIT src` unpacked: a before / "
                         "after comparison of the library; the benchmark itself is this one)")
    ap.add_argument("--lazy-warmup", action="store_true",
                    help="skip the one request of every kind before the clock starts (the warm-up before it was added)")
    ap.add_argument("--trace", action="store_true",
                    help="read the server's RSS before and after every request and report the change by request "
                         "kind (which requests grow memory; with several clients, overlapping requests share a change)")
    ap.add_argument("--fill", type=int, default=20, help="large PNGs uploaded before the clock starts (20 x 18 MB "
                                                          "decoded fill the server's 256 MiB decoded-image cache)")
    args = parse(ap)
    report = Report(args.out)
    case = build_case(args.data_root, args.rows, args.real, report)
    images = query_images(args.data_root)
    workdir = CACHE / f"session_{os.getpid()}"
    shutil.rmtree(workdir, ignore_errors=True)
    server, port, info = start_server(case, workdir, args.data_root, args.server_src)
    counts: Counter = Counter()
    latency: dict[str, list[float]] = defaultdict(list)
    trace: list[tuple[float, str, float]] = []  # (seconds into the load, kind, RSS change in MB)
    errors: Counter = Counter()
    searched: list[str] = []
    lock = threading.Lock()
    samples: list[tuple[float, float]] = []
    try:
        real_cameras = [c["value"] for c in info["cameras"] if not c["value"].startswith("synthetic/")]
        rss_start = rss_mb(server.pid)
        filler = Client(port)  # warm-up by work: the bounded caches filled before any figure is taken
        for i in range(args.fill):
            status, data = filler.request("POST", "/api/uploads?name=fill.png", big_png(10**9 + i),
                                          "application/octet-stream")
            if status != 201:
                raise SystemExit(f"warm-up upload failed: {status} {data[:200]!r}")
        # and every kind of request once: the first explanation with maps loads the PyTorch model for
        # Grad-CAM (once), which would otherwise land inside the measured window
        if not args.lazy_warmup:
            uid = json.loads(filler.request("POST", "/api/uploads?name=q", images[0], "application/octet-stream")[1])["id"]
            query = json.dumps({"uploads": [uid], "k": 5, "filters": {"camera": real_cameras}}).encode()
            sid, first = (lambda r: (r["search"], r["results"][0]["id"]))(json.loads(filler.request("POST", "/api/search",
                                                                                                  query)[1]))
            searched.append(sid)
            for path in (f"/api/searches/{sid}/items/{first}/explanation.json",
                         f"/api/searches/{sid}/items/{first}/explanation.html?maps=pair", f"/api/searches/{sid}/report.json"):
                status, data = filler.request("GET", path)
                if status != 200:
                    raise SystemExit(f"warm-up request {path} failed: {status} {data[:200]!r}")
        rss_filled = rss_mb(server.pid)
        t0 = time.perf_counter()
        stop = t0 + args.seconds

        def note(kind: str, status: int, data: bytes, seconds: float = float("nan"), grew: float | None = None
                 ) -> bool:
            with lock:
                counts[kind] += 1
                latency[kind].append(seconds)
                if grew is not None:
                    trace.append((time.perf_counter() - t0, kind, grew))
                if not 200 <= status < 300:
                    errors[f"{kind} {status}: {data[:160]!r}"] += 1
                    return False
            return True

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            c = Client(port)

            def ask(kind: str, method: str, path: str, body: bytes | None = None,
                    content_type: str = "application/json") -> tuple[bool, bytes]:
                """One request, timed; with --trace the server's RSS change while it ran is kept."""
                before = rss_mb(server.pid) if args.trace else None
                start = time.perf_counter()
                status, data = c.request(method, path, body, content_type)
                seconds = time.perf_counter() - start
                grew = rss_mb(server.pid) - before if args.trace else None
                return note(kind, status, data, seconds, grew), data

            n = 0
            while time.perf_counter() < stop:
                n += 1
                try:
                    big = rng.random() < 0.1
                    body, name = (big_png(seed * 1_000_003 + n), "big.png") if big else (
                        images[rng.randrange(len(images))], "query")
                    ok, data = ask("upload (large PNG)" if big else "upload", "POST", f"/api/uploads?name={name}",
                                   body, "application/octet-stream")
                    if not ok:
                        continue
                    uid = json.loads(data)["id"]
                    query = json.dumps({"uploads": [uid], "k": 20, "filters": FILTERS[rng.randrange(4)]}).encode()
                    ok, data = ask("search", "POST", "/api/search", query)
                    if not ok:
                        continue
                    res = json.loads(data)
                    with lock:
                        searched.append(res["search"])
                    sid, results = res["search"], res["results"]
                    real = [r for r in results if not str(r["key"]).startswith("synthetic/")]
                    if real and rng.random() < 0.5:
                        ask("explanation", "GET", f"/api/searches/{sid}/items/{real[0]['id']}/explanation.json")
                    if real and rng.random() < 0.05:
                        ask("explanation with maps", "GET",
                            f"/api/searches/{sid}/items/{real[0]['id']}/explanation.html?maps=pair")
                    if results and rng.random() < 0.3:
                        mark = json.dumps({"search": sid, "item": results[rng.randrange(len(results))]["id"],
                                           "mark": rng.choice(["match", "not_match", None])}).encode()
                        ask("mark", "POST", "/api/marks", mark)
                    if rng.random() < 0.05:  # a report explains every result: searched among real images only
                        query = json.dumps({"uploads": [uid], "k": 5, "filters": {"camera": real_cameras}}).encode()
                        ok, data = ask("search", "POST", "/api/search", query)
                        if ok:
                            sid = json.loads(data)["search"]
                            with lock:
                                searched.append(sid)
                            ask("report", "GET", f"/api/searches/{sid}/report.json")
                except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                    with lock:
                        errors[f"client: {exc!r}"[:200]] += 1
                    c = Client(port)

        def sampler() -> None:
            while time.perf_counter() < stop + 1:
                samples.append((time.perf_counter() - t0, rss_mb(server.pid)))
                time.sleep(2.0)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        watcher = threading.Thread(target=sampler, daemon=True)
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rss_end = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(60)
    audit = [json.loads(line) for line in (workdir / "audit.jsonl").read_text().splitlines() if line.strip()]
    audited = {r["search"] for r in audit if r.get("event") == "search"}
    missing = [s for s in searched if s not in audited]
    after_warmup = [m for t, m in samples if t >= args.warmup] or [rss_end]
    rss_warm = after_warmup[0]
    growth = 100.0 * (rss_end - rss_warm) / rss_warm
    report.print(f"case: {info['count']:,} rows ({args.real:,} real PETA crops, the rest derived; "
                 f"{relative(case)}), model {info['model']}")
    report.print(f"{args.clients} clients for {args.seconds:.0f} s ({wall:.0f} s wall), warm-up {args.warmup:.0f} s; "
                 f"machine: {os.cpu_count()} cores, shared with whatever else ran\n")
    report.table(["requests", *sorted(counts)], [["done", *[counts[k] for k in sorted(counts)]]])
    kinds = sorted(latency)
    report.print("")
    report.table(["latency ms", *kinds], [[q, *[f"{pct(latency[k], q):.0f}" for k in kinds]] for q in (50, 99)])
    if args.trace:
        report.print("\nserver RSS change while requests ran (--trace), MB: all / after warm-up")
        report.table(["RSS change", *kinds], [
            ["all", *[f"{sum(g for _, k2, g in trace if k2 == k):+.0f}" for k in kinds]],
            ["after warm-up", *[f"{sum(g for t, k2, g in trace if k2 == k and t >= args.warmup):+.0f}" for k in kinds]],
            ["per request, KB", *[f"{1024 * np.mean([g for _, k2, g in trace if k2 == k]):+.0f}" for k in kinds]]])
    report.print(f"\nerrors: {sum(errors.values())}" + ("" if not errors else ": " + "; ".join(
        f"{n} x {e}" for e, n in errors.most_common(5))))
    report.print(f"searches answered: {len(searched)}, in the audit log: {len(searched) - len(missing)} "
                 f"(missing {len(missing)})")
    report.print(f"server RSS: {rss_start:.0f} MB at start, {rss_filled:.0f} MB after {args.fill} large uploads, "
                 f"{rss_warm:.0f} MB after {args.warmup:.0f} s of load, {rss_end:.0f} MB at the "
                 f"end ({growth:+.1f} % after warm-up; target within 10 %), peak {max(m for _, m in samples):.0f} MB")
    report.save({"rows": info["count"], "real": args.real, "clients": args.clients, "seconds": args.seconds,
                 "warmup": args.warmup, "wall_s": wall, "requests": dict(counts),
                 "latency_ms": {k: {"p50": pct(latency[k], 50), "p99": pct(latency[k], 99)} for k in kinds},
                 "rss_change_by_kind_mb": {k: {"all": sum(g for _, k2, g in trace if k2 == k),
                                               "after_warmup": sum(g for t, k2, g in trace if k2 == k and t >= args.warmup)}
                                           for k in kinds} if args.trace else None, "errors": sum(errors.values()),
                 "error_kinds": dict(errors.most_common(10)), "searches": len(searched), "unaudited": len(missing),
                 "fill": args.fill,
                 "rss_mb": {"start": rss_start, "after_fill": rss_filled, "after_warmup": rss_warm, "end": rss_end,
                            "peak": max(m for _, m in samples), "growth_pct": growth},
                 "rss_samples": [[round(t, 1), round(m, 1)] for t, m in samples]})
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.with_suffix(".log").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
