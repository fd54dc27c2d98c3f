"""Speed of explaining a top-10 against a large precomputed gallery (target: < 100 ms on 2 CPU cores).

    python benchmarks/bench_explain_speed.py [--gallery-size 10000] [--model default] [--out STEM]

The gallery is random unit vectors of the model's embedding size (the cost does not depend on the
values); the query embedding time is measured separately on a real-size input, in PyTorch.
"""

from __future__ import annotations

import time

import numpy as np
from common import Report, parse, parser

from xreid.distance import l2_normalise
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.formulas import orthonormal_attribute_basis
from xreid.workflows.explain import explain_vectors
from xreid.models.loading import BUNDLED_HEAD, load_embedder


def timed(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - t) / repeats


def main() -> None:
    ap = parser(__doc__, data_root=False)
    ap.add_argument("--gallery-size", type=int, default=10_000)
    ap.add_argument("--model", default="default", help="an xreid model (run in PyTorch)")
    ap.add_argument("--head", default=str(BUNDLED_HEAD))
    ap.add_argument("--repeats", type=int, default=20)
    args = parse(ap)
    report = Report(args.out)
    head = AttributeHead.load(args.head)
    rng = np.random.default_rng(0)
    gallery = l2_normalise(rng.normal(size=(args.gallery_size, head.embedding_dim)).astype(np.float32))
    keys = [f"g{i}.jpg" for i in range(len(gallery))]
    query = gallery[123] + 0.1 * rng.normal(size=head.embedding_dim).astype(np.float32)
    basis = orthonormal_attribute_basis(head.weights)
    probs = head.calibrated(gallery)  # what an attribute filter reads
    rows = {
        "explain top-10, basis cached (per query, as in a session)": timed(
            lambda: explain_vectors(query, gallery, keys, head, top_k=10, basis=basis, include_vectors=False), args.repeats),
        "explain top-10, cold (basis computed)": timed(
            lambda: explain_vectors(query, gallery, keys, head, top_k=10, include_vectors=False), args.repeats),
        "explain top-10 + attribute filter (gallery probabilities cached)": timed(
            lambda: explain_vectors(query, gallery, keys, head, top_k=10, basis=basis, gallery_probabilities=probs,
                                    filter_spec={head.names[0]: True}, include_vectors=False), args.repeats),
        "explain top-10 + attribute filter (gallery probabilities computed)": timed(
            lambda: explain_vectors(query, gallery, keys, head, top_k=10, basis=basis,
                                    filter_spec={head.names[0]: True}, include_vectors=False), args.repeats),
    }
    emb = load_embedder(args.model, backend="torch")
    img = rng.integers(0, 256, (1, *emb.preprocess.size, 3), dtype=np.uint8)
    rows[f"query embedding ({emb.name}, {emb.preprocess.height}x{emb.preprocess.width}, PyTorch)"] = timed(
        lambda: emb.embed_arrays(img), args.repeats)
    report.print(f"gallery: {args.gallery_size} precomputed {head.embedding_dim}-d embeddings, {len(head.names)} attributes")
    report.table(["step", "ms"], [[k, f"{v:.1f}"] for k, v in rows.items()])
    report.save()


if __name__ == "__main__":
    main()
