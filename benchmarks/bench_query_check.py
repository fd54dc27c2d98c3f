"""How often the query check flags real queries and synthetic bad ones (docs/METHODS.md#query-reliability).

    python benchmarks/bench_query_check.py [--data-root DATA_ROOT] [--model default] [--out benchmarks/results/query_check]

Real queries: every query of the PETA-ReID test sets (541) and of PETA-ReID-val (210, where the
limits were chosen). Synthetic bad queries, made from each test query: a solid colour, uniform
noise, a heavy blur (Gaussian, radius 8 px at the model's input size), an occlusion (a grey band over
rows 20-85 %), and a crop of the background (the outer sixths of the crop, stretched to its size).
Two figures per set: the share flagged by the image checks alone, and the share the report calls
unreliable (image checks, or no reliable attribute the model is sure of), for the given model and
its attribute head.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from common import Report, parse, parser
from xreid.data.images import load_image
from xreid.data.protocol import load_protocol
from xreid.data.transforms import resize_rgb
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.naming import RELIABLE_AT
from xreid.explain.query_check import check_query
from xreid.explain.ranking import SURE_AT, reliability_verdict
from xreid.models.loading import BUNDLED_HEAD, load_embedder


def synthetic(images: list[np.ndarray], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """The five kinds of bad query, one per real query image (all at the model's input size)."""
    rng = np.random.default_rng(seed)

    def occluded(a: np.ndarray) -> np.ndarray:
        b = a.copy()
        b[int(0.2 * len(a)):int(0.85 * len(a))] = 128
        return b

    def background(a: np.ndarray) -> np.ndarray:
        w = a.shape[1]
        strip = np.concatenate([a[:, :w // 6], a[:, -(w // 6):]], axis=1)
        return np.asarray(Image.fromarray(strip).resize((w, a.shape[0]), Image.BILINEAR))

    return {
        "solid colour": [np.full_like(a, rng.integers(0, 256, 3)) for a in images],
        "noise": [rng.integers(0, 256, a.shape, dtype=np.uint8) for a in images],
        "heavy blur": [np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(8))) for a in images],
        "occluded": [occluded(a) for a in images],
        "background crop": [background(a) for a in images],
    }


def flag_rates(images: list[np.ndarray], embedder, head: AttributeHead) -> tuple[float, float]:
    """(% flagged by the image checks, % the report calls unreliable) over ``images``."""
    checks = [check_query(a) for a in images]
    probs = head.calibrated(embedder.embed_arrays(np.stack(images)))
    usable = head.reliable(RELIABLE_AT)
    sure = (usable & ((probs >= SURE_AT) | (probs <= 1 - SURE_AT))).sum(1)
    unreliable = [not reliability_verdict(c, int(n))[0] for c, n in zip(checks, sure)]
    return 100 * float(np.mean([not c.usable for c in checks])), 100 * float(np.mean(unreliable))


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", default="default")
    ap.add_argument("--head", default=str(BUNDLED_HEAD))
    args = parse(ap)
    report = Report(args.out)
    embedder, head = load_embedder(args.model), AttributeHead.load(args.head)
    size = embedder.preprocess.size
    sets = {}
    for name in ("peta-reid-val", "peta-reid"):
        proto = load_protocol(name, args.data_root)
        sets[f"{proto.name} queries (real)"] = [resize_rgb(load_image(proto.image_root / r.path), size)
                                                for ts in proto.test_sets for r in ts.query]
    real_test = sets[f"{proto.name} queries (real)"]
    sets.update({f"{kind} (from the test queries)": imgs for kind, imgs in synthetic(real_test).items()})
    rows, figures = [], {}
    for name, images in sets.items():
        image_only, verdict = flag_rates(images, embedder, head)
        rows.append([name, len(images), f"{image_only:.1f}", f"{verdict:.1f}"])
        figures[name] = {"images": len(images), "flagged_by_image_checks_pct": image_only,
                         "called_unreliable_pct": verdict}
    report.print(f"model {embedder.name}, head {args.head.split('/')[-1]}")
    report.table(["queries", "n", "flagged by image checks (%)", "called unreliable in the report (%)"], rows)
    report.save(figures)


if __name__ == "__main__":
    main()
