"""Faithfulness and cost of the visual maps: a deletion test on PETA-ReID true-match pairs.

    python benchmarks/bench_maps.py [--data-root DATA_ROOT] [--pairs 60] [--model M --head H] [--only attribute]
                                    [--out STEM]

For each (query, true match) pair and map type, the gallery image is cut into a grid of cells;
cells are mean-filled most-salient first, in steps, and the explained score is recorded after each
step (pair maps, attention, occlusion: the pair's cosine similarity; attribute maps: the
attribute's probability). The area under that curve is compared with removing cells in random
order (mean of 3 orders): ratio = AUC(map) / AUC(random); below 1 means the map finds the regions
that matter faster than chance. Also reports seconds per pair per map type on this CPU. The maps
and the scores are the library's (``xreid.explain.maps``; the pair similarity is
``xreid.distance.cosine_similarity``, as the occlusion map explains it); the bundled model runs in
PyTorch, which Grad-CAM needs. A model with its own attribute maps (AANet) has its attribute maps
scored twice, Grad-CAM of its attribute head and its own class activation maps, each by the head's
probability (what the report shows).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from common import M0277, Report, parse, parser, relative

from xreid.data.images import load_image
from xreid.data.protocol import load_protocol
from xreid.data.transforms import resize_rgb, to_tensor_batch
from xreid.distance import cosine_similarity, l2_normalise
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.maps.attention import implicit_attention
from xreid.explain.maps.attribute import attribute_maps, has_native_maps, native_attribute_maps
from xreid.explain.maps.occlusion import occlusion_pair
from xreid.explain.maps.pair import pair_maps, summed_pair_maps
from xreid.models.loading import BUNDLED_HEAD, load_embedder, model_head_path

GRID = (8, 4)  # cells: rows x cols
STEPS = 16


def cell_scores(saliency: np.ndarray) -> np.ndarray:
    h, w = saliency.shape
    rows, cols = GRID
    return np.array([[saliency[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols].mean()
                      for c in range(cols)] for r in range(rows)]).ravel()


def deletion_images(image: np.ndarray, order: np.ndarray) -> np.ndarray:
    """STEPS + 1 copies of ``image`` with the first 0..all cells of ``order`` mean-filled."""
    h, w = image.shape[:2]
    rows, cols = GRID
    fill = image.reshape(-1, 3).mean(0).astype(np.uint8)
    out, current = [image.copy()], image.copy()
    per_step = np.array_split(order, STEPS)
    for cells in per_step:
        for cell in cells:
            r, c = divmod(int(cell), cols)
            current[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols] = fill
        out.append(current.copy())
    return np.stack(out)


def auc(curve: np.ndarray) -> float:
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def deletion_ratio(score_fn, image: np.ndarray, saliency: np.ndarray, rng) -> float:
    cells = cell_scores(saliency)
    base = auc(score_fn(deletion_images(image, np.argsort(cells)[::-1])))
    rand = np.mean([auc(score_fn(deletion_images(image, rng.permutation(len(cells))))) for _ in range(3)])
    return base / rand if rand > 1e-9 else float("nan")


def pair_and_attention(model, tq, tg, gi: np.ndarray, similarity, rng, record) -> None:
    """Score the report's summed Grad-CAM pair map and the implicit attention map of one pair."""
    t = time.perf_counter()
    _, _, g_maps = pair_maps(model, tq, tg, k=5)
    pair_sal = summed_pair_maps(g_maps[0])[0]  # the report's pair map: the sum over the 5 dims
    record("Grad-CAM pair (5 dims)", deletion_ratio(similarity, gi, pair_sal.values, rng), time.perf_counter() - t)
    t = time.perf_counter()
    att = implicit_attention(model, tg)
    record("implicit attention (50 dims)", deletion_ratio(similarity, gi, att.values, rng), time.perf_counter() - t)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--occlusion-model", type=Path, default=M0277,
                    help="a black-box model explained by occlusion too (default: OMZ 0277; skipped if absent)")
    ap.add_argument("--model", default="default", help="the xreid model whose maps are scored ('default' or a .pt)")
    ap.add_argument("--head", type=Path, default=None,
                    help="its attribute head (default: the bundled head, or the model's own NAME_head.npz)")
    ap.add_argument("--only", choices=("attribute",), default=None,
                    help="score only the attribute maps (no pair maps, attention or occlusion)")
    args = parse(ap)
    report = Report(args.out)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    proto = load_protocol("peta-reid", args.data_root)
    pairs = []
    for ts in proto.test_sets:
        gal = {r.pid: r for r in ts.gallery}
        pairs += [(q, gal[q.pid]) for q in ts.query if q.pid in gal]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))[:args.pairs]]
    head_path = args.head or (BUNDLED_HEAD if args.model == "default" else model_head_path(args.model))
    head = AttributeHead.load(head_path)
    models = {"default": load_embedder(args.model, backend="torch")}
    head.check_model(models["default"], "--head")
    if args.occlusion_model.is_file() and args.only is None:
        models["0277 (black box)"] = load_embedder(args.occlusion_model)
    ratios: dict[str, list[float]] = {}
    costs: dict[str, list[float]] = {}

    def record(name: str, ratio: float, seconds: float) -> None:
        ratios.setdefault(name, []).append(ratio)
        costs.setdefault(name, []).append(seconds)

    for q, g in pairs:
        for label, emb in models.items():
            qi = resize_rgb(load_image(proto.image_root / q.path), emb.preprocess.size)
            gi = resize_rgb(load_image(proto.image_root / g.path), emb.preprocess.size)
            fq = l2_normalise(emb.embed_arrays(qi[None])[0])

            def similarity(batch: np.ndarray, emb=emb, fq=fq) -> np.ndarray:
                return cosine_similarity(emb.embed_arrays(batch), fq[None])[:, 0]

            model = emb.model if label == "default" else None
            tq, tg = to_tensor_batch(qi[None]), to_tensor_batch(gi[None])
            if args.only is None:
                t = time.perf_counter()
                occ = occlusion_pair(emb, gi, fq, "g")
                record(f"occlusion pair [{label}]", deletion_ratio(similarity, gi, occ.values, rng),
                       time.perf_counter() - t)
            if model is None:
                continue
            if args.only is None:
                pair_and_attention(model, tq, tg, gi, similarity, rng, record)
            probs = head.predict(emb.embed_arrays(gi[None]))[0]
            a = int(np.argmax(probs))
            t = time.perf_counter()
            am = attribute_maps(model, head, tg, [head.names[a]], native=False)[0]
            attr_score = lambda batch, a=a, emb=emb: head.predict(emb.embed_arrays(batch))[:, a]  # noqa: E731
            record("attribute map (most probable attribute)", deletion_ratio(attr_score, gi, am.values, rng),
                   time.perf_counter() - t)
            if has_native_maps(model, [head.names[a]]):  # an AANet model's own CAM of that attribute
                t = time.perf_counter()
                nm = native_attribute_maps(model, tg, [head.names[a]])[0]
                record("attribute map, the model's own CAM", deletion_ratio(attr_score, gi, nm.values, rng),
                       time.perf_counter() - t)
    if args.model != "default" or args.head is not None:
        report.print(f"model {relative(args.model)}, head {relative(head_path)}")
    report.print(f"{len(pairs)} true-match pairs from the PETA-ReID test sets; grid {GRID[0]}x{GRID[1]} cells, {STEPS} steps")
    out, rows = {}, []
    for name, vals in ratios.items():
        v = np.array([x for x in vals if np.isfinite(x)])
        out[name] = {"mean_ratio": float(v.mean()), "median_ratio": float(np.median(v)),
                     "share_below_1": float((v < 1).mean()), "seconds_per_pair": float(np.mean(costs[name]))}
        o = out[name]
        rows.append([name, f"{o['mean_ratio']:.3f}", f"{o['median_ratio']:.3f}", f"{100 * o['share_below_1']:.0f} %",
                     f"{o['seconds_per_pair']:.2f}"])
    report.table(["map type", "deletion AUC ratio (map / random), mean", "median", "share of pairs < 1", "s per pair"], rows)
    report.save(out)


if __name__ == "__main__":
    main()
