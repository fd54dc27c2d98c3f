"""Faithfulness and cost of the visual maps: a deletion test on PETA-ReID true-match pairs.

    python benchmarks/bench_maps.py [--data-root DATA_ROOT] [--pairs 60] [--model M --head H] [--only attribute]
                                    [--protocol peta-reid-val] [--maps NAME,...|all] [--joint NAME,...]
                                    [--start N] [--out STEM]
    python benchmarks/bench_maps.py --merge A.json B.json ... [--out STEM] [--record --model M --protocol P]

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

``--protocol peta-reid-val`` draws the pairs from PETA-ReID-val's validation sets (to choose a map
variant there; PETA-ReID test reports it). ``--maps`` picks map variants by name (``MAPS`` below;
``all``: every one): occlusion with another fill (``occ-mean``, ``occ-noise``: the training cut-out,
``occ-blur``) or of one branch's similarity (``occ-grey-global``), Grad-CAM or gradient x activation of
the pair similarity as one target (``gc-sim``, ``gxa-sim``, ``-global`` for the global branch), the
branch map (``gc-branches``). Every map is scored on the whole pair similarity (the existing test) and
on each branch's similarity (``targets.branches``; an AANet: global, parts, regions, AAM), so a
branch map is also read on its own vector. ``--joint`` maps with a query-side map also get the test
with the query and the gallery image deleted together. The same 3 random orders per image serve as
the baseline of every map (a paired comparison), and each distinct image is embedded once.
``--start`` skips the first pairs of the drawn order (shards run side by side), ``--merge`` pools
the per-pair ratios of several runs' JSON. ``--record`` writes the model's map-quality record
(``xreid.models.map_quality``: the report's map types, pair / occlusion / attention, with their mean
ratios), which decides the report's default maps (``xreid.explain.maps.quality``); make it on
PETA-ReID-val pairs, where choices are made.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import M0277, Report, parse, parser, relative

from xreid.data.images import load_image
from xreid.data.protocol import load_protocol
from xreid.data.transforms import resize_rgb, to_tensor_batch
from xreid.distance import cosine_similarity, l2_normalise
from xreid.io import write_json
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.maps.attention import implicit_attention
from xreid.explain.maps.attribute import attribute_maps, has_native_maps, native_attribute_maps
from xreid.explain.maps.branch import branch_pair_map, target_maps
from xreid.explain.maps.occlusion import FILLS, occlusion_pair
from xreid.explain.maps.pair import pair_maps, summed_pair_maps
from xreid.explain.maps.targets import PairSimilarity, branches
from xreid.models.fingerprint import fingerprint
from xreid.models.loading import BUNDLED_HEAD, load_embedder, model_head_path, resolve_model_path
from xreid.models.map_quality import MapQuality, map_quality_path

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


class CachedEmbedder:
    """The benchmark's adapter: each distinct image is embedded once per pair (occlusion of several
    targets and deletion curves scored under several targets reuse the same images)."""

    def __init__(self, embedder):
        self.embedder, self.preprocess, self.cache = embedder, embedder.preprocess, {}

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        keys = [hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).digest() for im in batch]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            for i, f in zip(todo, self.embedder.embed_arrays(np.stack([batch[i] for i in todo]))):
                self.cache[keys[i]] = f
        return np.stack([self.cache[k] for k in keys])


class Deletion:
    """The deletion test of one pair under several scores (name -> embeddings -> scores), with one set
    of 3 random orders per image shared by every map."""

    def __init__(self, emb: CachedEmbedder, gi: np.ndarray, qi: np.ndarray, scorers: dict, rng):
        self.emb, self.gi, self.qi, self.scorers = emb, gi, qi, scorers
        n = GRID[0] * GRID[1]
        self.orders = [(rng.permutation(n), rng.permutation(n)) for _ in range(3)]
        self.fq = emb.embed_arrays(qi[None])[0]
        self.random = self._mean([self._curves(self.gi, o) for o, _ in self.orders])
        self._random_joint = None

    @staticmethod
    def _mean(aucs: list[dict]) -> dict:
        return {k: float(np.mean([a[k] for a in aucs])) for k in aucs[0]}

    def _curves(self, image: np.ndarray, order: np.ndarray) -> dict:
        feats = self.emb.embed_arrays(deletion_images(image, order))
        return {k: auc(fn(feats, self.fq)) for k, fn in self.scorers.items()}

    def ratios(self, saliency: np.ndarray) -> dict:
        """AUC(map order) / AUC(random) of the gallery image's deletion, per score."""
        got = self._curves(self.gi, np.argsort(cell_scores(saliency))[::-1])
        return {k: got[k] / self.random[k] if self.random[k] > 1e-9 else float("nan") for k in got}

    def _joint_auc(self, q_order: np.ndarray, g_order: np.ndarray) -> float:
        fq = self.emb.embed_arrays(deletion_images(self.qi, q_order))
        fg = self.emb.embed_arrays(deletion_images(self.gi, g_order))
        return auc(cosine_similarity(fg, fq).diagonal())

    def joint_ratio(self, q_saliency: np.ndarray, g_saliency: np.ndarray) -> float:
        """The query and the gallery image deleted together, each by its own map; whole similarity."""
        if self._random_joint is None:
            self._random_joint = float(np.mean([self._joint_auc(oq, og) for og, oq in self.orders]))
        got = self._joint_auc(np.argsort(cell_scores(q_saliency))[::-1], np.argsort(cell_scores(g_saliency))[::-1])
        return got / self._random_joint if self._random_joint > 1e-9 else float("nan")


def deletion_ratio(score_fn, image: np.ndarray, saliency: np.ndarray, rng) -> float:
    """The test for one score of the image alone (attribute maps), with its own 3 random orders."""
    cells = cell_scores(saliency)
    base = auc(score_fn(deletion_images(image, np.argsort(cells)[::-1])))
    rand = np.mean([auc(score_fn(deletion_images(image, rng.permutation(len(cells))))) for _ in range(3)])
    return base / rand if rand > 1e-9 else float("nan")


def pair_maps_5(ctx) -> tuple:
    """The report's pair map: the sum of the Grad-CAM maps of the pair's 5 top dims, per image."""
    _, q_maps, g_maps = pair_maps(ctx["model"], ctx["tq"], ctx["tg"], k=5)
    return summed_pair_maps(g_maps[0])[0].values, summed_pair_maps(q_maps[0])[0].values


def _occlusion(fill: str, branch: str | None):
    def make(ctx) -> tuple:
        part = None if branch is None else ctx["branches"][branch]
        return occlusion_pair(ctx["emb"], ctx["gi"], ctx["fq"], "g", part=part, fill=fill).values, None
    return make


def _target(method: str, branch: str | None):
    def make(ctx) -> tuple:
        part = slice(None) if branch is None else ctx["branches"][branch]
        g = target_maps(ctx["model"], ctx["tg"], [PairSimilarity(ctx["fq"], part)], method)[0].values
        q = target_maps(ctx["model"], ctx["tq"], [PairSimilarity(ctx["fg"], part)], method)[0].values
        return g, q
    return make


def _branch_sum(method: str):
    def make(ctx) -> tuple:
        g, _ = branch_pair_map(ctx["model"], ctx["tg"], ctx["fq"], method)
        q, _ = branch_pair_map(ctx["model"], ctx["tq"], ctx["fg"], method)
        return g.values, q.values
    return make


def greedy_oracle(ctx) -> tuple:
    """Not a map: a bound on what any map could reach in this test. At each deletion step, the cells
    whose removal (alone, on top of those already removed) lowers the whole similarity most, found by
    trying every remaining cell (about 270 forward passes); returned as a map whose cell order is that."""
    gi, rows, cols = ctx["gi"], GRID[0], GRID[1]
    h, w = gi.shape[:2]
    fill = gi.reshape(-1, 3).mean(0).astype(np.uint8)

    def filled(image: np.ndarray, cell: int) -> np.ndarray:
        out = image.copy()
        r, c = divmod(int(cell), cols)
        out[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols] = fill
        return out

    current, remaining, order = gi.copy(), list(range(rows * cols)), []
    for step in np.array_split(np.arange(rows * cols), STEPS):
        trials = np.stack([filled(current, c) for c in remaining])
        sims = cosine_similarity(ctx["emb"].embed_arrays(trials), ctx["fq"][None])[:, 0]
        for i in np.argsort(sims)[:len(step)]:
            order.append(remaining[i])
        for c in order[-len(step):]:
            current = filled(current, c)
            remaining.remove(c)
    saliency = np.zeros((h, w))
    for rank, cell in enumerate(order):
        r, c = divmod(int(cell), cols)
        saliency[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols] = len(order) - rank
    return saliency, None


#: name -> (what it is, the score it explains: 'sim' or 'sim:BRANCH', how to make it); BASELINE: the report's
MAPS = {"occ-grey": ("occlusion, mid-grey patch (the report's)", "sim", _occlusion("grey", None)),
        "gc-pair5": ("Grad-CAM pair map, sum over the 5 top dims (the report's default)", "sim", pair_maps_5),
        "attention": ("implicit attention (50 dims)", "sim",
                      lambda ctx: (implicit_attention(ctx["model"], ctx["tg"]).values, None))}
for _fill in FILLS[1:]:
    MAPS[f"occ-{_fill}"] = (f"occlusion, {_fill} fill", "sim", _occlusion(_fill, None))
for _fill in FILLS:
    MAPS[f"occ-{_fill}-global"] = (f"occlusion of the global branch's similarity, {_fill} fill", "sim:global",
                                   _occlusion(_fill, "global"))
for _b in ("parts", "regions", "aam"):
    MAPS[f"occ-grey-{_b}"] = (f"occlusion of the {_b} branch's similarity, mid-grey", f"sim:{_b}", _occlusion("grey", _b))
for _m, _what in (("gc", "Grad-CAM"), ("gxa", "gradient x activation")):
    MAPS[f"{_m}-sim"] = (f"{_what} of the pair similarity", "sim", _target(_m.replace("gc", "gradcam").replace("gxa", "gradxact"), None))
    for _b in ("global", "parts", "regions", "aam") if _m == "gc" else ("global",):
        MAPS[f"{_m}-sim-{_b}"] = (f"{_what} of the {_b} branch's similarity", f"sim:{_b}",
                                  _target("gradcam" if _m == "gc" else "gradxact", _b))
    MAPS[f"{_m}-branches"] = (f"branch map: {_what} per branch, weighted by its term", "sim",
                              _branch_sum("gradcam" if _m == "gc" else "gradxact"))
MAPS["oracle-greedy"] = ("bound: greedy deletion order that sees the score (not a map)", "sim", greedy_oracle)
BASELINE = ("occ-grey", "gc-pair5", "attention")
#: the report's map types (``--maps`` of xreid explain) and the row that scores each
REPORT_KINDS = {"pair": "gc-pair5", "occlusion": "occ-grey", "attention": "attention"}


def summarise(ratios: dict[str, list[float]]) -> dict:
    v = np.array([x for x in ratios if np.isfinite(x)])
    return {"mean_ratio": float(v.mean()), "median_ratio": float(np.median(v)), "share_below_1": float((v < 1).mean()),
            "pairs": int(len(v))}


def draw_pairs(protocol: str, data_root, n: int, start: int, rng) -> tuple:
    proto = load_protocol(protocol, data_root)
    pairs = []
    for ts in proto.test_sets:
        gal = {r.pid: r for r in ts.gallery}
        pairs += [(q, gal[q.pid]) for q in ts.query if q.pid in gal]
    return proto, [pairs[i] for i in rng.permutation(len(pairs))[start:start + n]]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--start", type=int, default=0, help="skip the first N pairs of the drawn order")
    ap.add_argument("--protocol", choices=("peta-reid", "peta-reid-val"), default="peta-reid",
                    help="draw the pairs from this protocol's test (or validation) sets")
    ap.add_argument("--occlusion-model", type=Path, default=M0277,
                    help="a black-box model explained by occlusion too (default: OMZ 0277; skipped if absent; 'none')")
    ap.add_argument("--model", default="default", help="the xreid model whose maps are scored ('default' or a .pt)")
    ap.add_argument("--head", type=Path, default=None,
                    help="its attribute head (default: the bundled head, or the model's own NAME_head.npz)")
    ap.add_argument("--only", choices=("attribute",), default=None,
                    help="score only the attribute maps (no pair maps, attention or occlusion)")
    ap.add_argument("--maps", default=",".join(BASELINE),
                    help=f"pair-map variants to score, by name, or 'all' (default: {','.join(BASELINE)}; "
                         f"known: {','.join(MAPS)})")
    ap.add_argument("--joint", default="", help="maps also scored with the query and gallery deleted together")
    ap.add_argument("--no-attributes", action="store_true", help="skip the attribute maps")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, help="pool the per-pair ratios of these runs' JSON")
    ap.add_argument("--record", action="store_true",
                    help="write the model's map-quality record (NAME_map_quality.json beside it: the report's map "
                         "types and their mean ratios, which decide its default maps); with --merge, of the pooled runs")
    args = parse(ap)
    report = Report(args.out)
    if args.merge:
        out = merge(args.merge, report)
        if args.record:
            record_quality(args.model, out, args.protocol)
        return
    names = list(MAPS) if args.maps == "all" else [m.strip() for m in args.maps.split(",") if m.strip()]
    joint = [m.strip() for m in args.joint.split(",") if m.strip()]
    bad = [m for m in names + joint if m not in MAPS]
    if bad:
        ap.error(f"unknown map(s) {', '.join(bad)}; known: {', '.join(MAPS)}")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    proto, pairs = draw_pairs(args.protocol, args.data_root, args.pairs, args.start, rng)
    head_path = args.head or (BUNDLED_HEAD if args.model == "default" else model_head_path(args.model))
    head = AttributeHead.load(head_path)
    torch_emb = load_embedder(args.model, backend="torch")
    head.check_model(torch_emb, "--head")
    fast = load_embedder(args.model)  # forward passes only: the exported copy where there is one
    model = torch_emb.model
    parts = branches(model)
    missing = [m for m in names if MAPS[m][1].startswith("sim:") and MAPS[m][1][4:] not in parts]
    if missing:  # e.g. a projected embedding: its branches are mixed into one
        report.print(f"the model's embedding has no {', '.join(sorted({MAPS[m][1][4:] for m in missing}))} "
                        f"branch: {', '.join(missing)} not scored")
        names = [m for m in names if m not in missing]
    scorers = {"sim": lambda f, fq: cosine_similarity(f, fq[None])[:, 0]}
    if len(parts) > 1:
        scorers.update({f"sim:{b}": (lambda f, fq, p=p: PairSimilarity(fq, p).scores(f)) for b, p in parts.items()})
    control = None
    if str(args.occlusion_model) != "none" and Path(args.occlusion_model).is_file() and args.only is None:
        control = load_embedder(args.occlusion_model)
    per_pair: dict[str, dict[str, list[float]]] = {}
    costs: dict[str, list[float]] = {}

    def record(name: str, ratios: dict, seconds: float) -> None:
        for k, v in ratios.items():
            per_pair.setdefault(name, {}).setdefault(k, []).append(float(v))
        costs.setdefault(name, []).append(seconds)

    tic = time.perf_counter()
    for n, (q, g) in enumerate(pairs, 1):
        qi = resize_rgb(load_image(proto.image_root / q.path), fast.preprocess.size)
        gi = resize_rgb(load_image(proto.image_root / g.path), fast.preprocess.size)
        emb = CachedEmbedder(fast)
        tq, tg = to_tensor_batch(qi[None]), to_tensor_batch(gi[None])
        if args.only is None:
            test = Deletion(emb, gi, qi, scorers, rng)
            ctx = {"model": model, "emb": emb, "gi": gi, "qi": qi, "tq": tq, "tg": tg, "fq": test.fq,
                   "fg": emb.embed_arrays(gi[None])[0], "branches": parts}
            for name in names:
                t = time.perf_counter()
                g_map, q_map = MAPS[name][2](ctx)
                ratios = test.ratios(g_map)
                if name in joint and q_map is not None:
                    ratios["joint"] = test.joint_ratio(q_map, g_map)
                record(name, ratios, time.perf_counter() - t)
            if control is not None:
                cemb = CachedEmbedder(control)
                cq, cg = (resize_rgb(load_image(proto.image_root / r.path), control.preprocess.size) for r in (q, g))
                ctest = Deletion(cemb, cg, cq, {"sim": scorers["sim"]}, rng)
                t = time.perf_counter()
                occ = occlusion_pair(cemb, cg, ctest.fq, "g")
                record("occ-grey [0277 (black box)]", ctest.ratios(occ.values), time.perf_counter() - t)
        if not args.no_attributes:
            probs = head.predict(emb.embed_arrays(gi[None]))[0]
            a = int(np.argmax(probs))
            t = time.perf_counter()
            am = attribute_maps(model, head, tg, [head.names[a]], native=False)[0]
            attr_score = lambda batch, a=a: head.predict(emb.embed_arrays(batch))[:, a]  # noqa: E731
            record("attribute map (most probable attribute)", {"attribute": deletion_ratio(attr_score, gi, am.values, rng)},
                   time.perf_counter() - t)
            if has_native_maps(model, [head.names[a]]):  # an AANet model's own CAM of that attribute
                t = time.perf_counter()
                nm = native_attribute_maps(model, tg, [head.names[a]])[0]
                record("attribute map, the model's own CAM", {"attribute": deletion_ratio(attr_score, gi, nm.values, rng)},
                       time.perf_counter() - t)
        print(f"pair {n}/{len(pairs)} done, {time.perf_counter() - tic:.0f} s", flush=True)
        if args.out:  # what is done so far, for --merge if the run is stopped
            write_json(Path(f"{args.out}.partial.json"), {
                "header": [f"{n} true-match pairs from the {args.protocol} sets (drawn order from {args.start}), "
                           f"a stopped run"], "per_pair": per_pair, "seconds": {k: float(np.mean(v)) for k, v in costs.items()}})
    header = [f"{len(pairs)} true-match pairs from the {args.protocol} "
              f"{'validation' if args.protocol.endswith('val') else 'test'} sets (drawn order from {args.start}); "
              f"grid {GRID[0]}x{GRID[1]} cells, {STEPS} steps"]
    if args.model != "default" or args.head is not None:
        header.insert(0, f"model {relative(args.model)}, head {relative(head_path)}")
    out = table(report, header, per_pair, {k: float(np.mean(v)) for k, v in costs.items()})
    if args.out:
        Path(f"{args.out}.partial.json").unlink(missing_ok=True)
    if args.record:
        record_quality(args.model, out, args.protocol)


def record_quality(model: str, out: dict, protocol: str) -> None:
    """Write ``model``'s map-quality record from a run's figures (the report's map types present)."""
    path = resolve_model_path(model)
    maps = {kind: {"deletion_ratio": round(out["maps"][row]["mean_ratio"], 4), "pairs": out["maps"][row]["pairs"],
                   "share_below_1": round(out["maps"][row]["share_below_1"], 3), "protocol": protocol,
                   "command": "python benchmarks/bench_maps.py " + " ".join(sys.argv[1:])}
            for kind, row in REPORT_KINDS.items() if row in out["maps"]}
    target = map_quality_path(path)
    MapQuality(maps, {"model": str(model), "fingerprint": fingerprint(path)},
               notes=out["header"]).save(target)
    print(f"wrote {relative(target)}")


def table(report: Report, header: list[str], per_pair: dict, seconds: dict) -> dict:
    for line in header:
        report.print(line)
    out, rows = {"header": header, "per_pair": per_pair, "seconds": seconds, "maps": {}}, []
    for name, by_score in per_pair.items():
        own = MAPS[name][1] if name in MAPS else ("sim" if "sim" in by_score else "attribute")
        main = by_score.get("sim", by_score.get("attribute"))
        s = summarise(main)
        o = summarise(by_score[own]) if own in by_score else s
        j = summarise(by_score["joint"]) if "joint" in by_score else None
        out["maps"][name] = {"what": MAPS[name][0] if name in MAPS else name, "own_target": own, **s,
                             "own_target_mean_ratio": o["mean_ratio"], "seconds_per_pair": seconds.get(name),
                             "joint_mean_ratio": j["mean_ratio"] if j else None,
                             "per_score_mean": {k: summarise(v)["mean_ratio"] for k, v in by_score.items()}}
        rows.append([name, f"{s['mean_ratio']:.3f}", f"{s['median_ratio']:.3f}", f"{100 * s['share_below_1']:.0f} %",
                     own, f"{o['mean_ratio']:.3f}", f"{j['mean_ratio']:.3f}" if j else "-",
                     f"{seconds[name]:.2f}" if seconds.get(name) is not None else "-"])
    report.table(["map", "deletion AUC ratio (map / random), whole pair similarity (attribute maps: its probability), mean",
                  "median", "pairs < 1",
                  "own target", "ratio on own target, mean", "joint deletion (query + gallery), mean",
                  "s per pair"], rows)
    report.save(out)
    return out


def merge(paths: list[Path], report: Report) -> dict:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    per_pair: dict = {}
    for run in runs:
        for name, by_score in run["per_pair"].items():
            for k, v in by_score.items():
                per_pair.setdefault(name, {}).setdefault(k, []).extend(v)
    seconds = {name: float(np.mean([r["seconds"][name] for r in runs if name in r["seconds"]])) for name in per_pair}
    header = [f"merged: {', '.join(relative(p) for p in paths)}"] + [h for r in runs for h in r["header"]]
    return table(report, header, per_pair, seconds)


if __name__ == "__main__":
    main()
