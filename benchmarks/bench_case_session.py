"""The search service's work without HTTP (``xreid.serve.case.CaseSession``), in process, on a
synthetic index: a search (k = 20, the filters of ``bench_serve.py`` drawn in turn, a gallery item
as the query) and the explanation of one result (maps none), per call.

    python benchmarks/bench_case_session.py [--rows 20000] [--searches 400] [--work DIR] [--out STEM]

No data set or model needed (random 2,048-d rows, a random 35-attribute head with a calibration,
tiny images, 8 cameras, one time a minute), so the same command can be run with two source trees
on PYTHONPATH to compare them on one machine (``bench_serve.py`` measures the real server). The
index and its images are built once into ``--work`` (default ``runs/bench_case_session/``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from common import REPO, Report, parse, parser

FILTERS = [{}, {"camera": ["2"]}, {"attributes": {"attr3": True}},
           {"camera": ["1", "3", "5"], "attributes": {"attr5": False}, "after": "1970-01-01T02:00:00Z"}]
DIM, ATTRIBUTES = 2048, 35


class _Preprocess:
    size = (256, 128)


class _Embedder:
    """Stands in for the model: a search by gallery item never embeds."""

    name, preprocess = "synthetic", _Preprocess()

    def identity(self) -> dict:
        return {"model": "synthetic", "fingerprint": "0" * 16}


def _head():
    from xreid.explain.attribute_head import AttributeHead

    rng = np.random.default_rng(0)
    return AttributeHead([f"attr{i}" for i in range(ATTRIBUTES)], rng.normal(size=(DIM, ATTRIBUTES)) * 0.05,
                         np.full(ATTRIBUTES, 0.3), {}, calibration=np.c_[np.full(ATTRIBUTES, 1.2),
                                                                          np.full(ATTRIBUTES, 0.1)],
                         reliability=np.full(ATTRIBUTES, 0.8))


def build(work: Path, rows: int, head, embedder) -> Path:
    from PIL import Image

    from xreid.index.gallery import IndexWriter, Rows
    from xreid.workflows.index import head_info

    case = work / f"case_{rows}"
    if (case / "manifest.json").is_file():
        return case
    rng = np.random.default_rng(0)
    (work / "data" / "img").mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8))
    for i in range(rows):
        if not (work / "data" / "img" / f"{i:06d}.jpg").is_file():
            picture.save(work / "data" / "img" / f"{i:06d}.jpg")
    vectors = rng.normal(size=(rows, DIM)).astype(np.float32)
    with IndexWriter.create(case, embedder.identity(), head.names, head_info(head, "synthetic"), DIM) as writer:
        for start in range(0, rows, 5000):
            part = range(start, min(rows, start + 5000))
            writer.commit(Rows([f"img/{i:06d}.jpg" for i in part], vectors[start:part.stop],
                               head.calibrated(vectors[start:part.stop]), [{"camera": str(1 + i % 8)} for i in part],
                               np.array([60.0 * i for i in part])))
        writer.finish()
    return case


def main() -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--searches", type=int, default=400)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_case_session")
    args = parse(ap)
    report = Report(args.out)
    from xreid.serve.case import CaseSession

    head, embedder = _head(), _Embedder()
    case = build(args.work, args.rows, head, embedder)
    session = CaseSession(case, embedder, head, args.work / "data", workdir=args.work / "session")
    items = np.random.default_rng(1).integers(0, args.rows, args.searches)
    session.search(items=[0], k=20)  # first-call costs out of the figures
    searches, explains = [], []
    for j, item in enumerate(items):
        t0 = time.perf_counter()
        found = session.search(items=[int(item)], k=20, filters=FILTERS[j % len(FILTERS)])
        searches.append(time.perf_counter() - t0)
        if j % 4 == 0 and found["results"]:
            t0 = time.perf_counter()
            session.explain(found["search"], [found["results"][0]["id"]], "none")
            explains.append(time.perf_counter() - t0)
    session.close()
    ms = lambda v, q: 1000 * float(np.percentile(v, q))  # noqa: E731
    figures = {"search_p50_ms": ms(searches, 50), "search_p90_ms": ms(searches, 90),
               "explain_one_p50_ms": ms(explains, 50), "explain_one_p90_ms": ms(explains, 90)}
    report.print(f"{args.rows:,} rows, {len(searches)} searches (k = 20), {len(explains)} explanations of one result")
    report.table(["milliseconds", "p50", "p90"],
                 [["search (filter, explanation of each result, probability)", f"{figures['search_p50_ms']:.1f}",
                   f"{figures['search_p90_ms']:.1f}"],
                  ["explanation of one result (maps none)", f"{figures['explain_one_p50_ms']:.1f}",
                   f"{figures['explain_one_p90_ms']:.1f}"]])
    report.save(figures)


if __name__ == "__main__":
    main()
