"""The distilled interpreter (docs/METHODS.md#interpreter) on the PETA-ReID test sets, for the
bundled model and Open Model Zoo 0277 as a black box.

    python benchmarks/bench_interpreter.py [--data-root DATA_ROOT] [--work runs/interpreters] [--out STEM]

For each model, the interpreter is fitted on PETA-ReID's training crops with the library's own
fit (``xreid.workflows.interpret.fit``, the settings chosen on PETA-ReID-val; kept in ``--work``
and reused when present, its inputs cached there), then scored over every query x gallery pair of
the three test sets (``xreid.workflows.interpreter_eval``):

1. fidelity: Pearson and Spearman correlation and the relative error |d_hat - d| / d between the
   summed components and the target's distance; the target's mAP when ranking by the summed
   components;
2. re-weighting: mAP when ranking by (1 - w) d + w d_hat (d_hat scaled to d's mean), for w from 0
   (the target alone) to 1; the w chosen on PETA-ReID-val is marked;
3. explanation metrics, AMD's (Ex_Precision_d / _s, Ex_mAP_d / _s over all labelled pairs of two
   identities) and xreid's top-1 precision (the attribute with the largest part, over each query's
   top-10 impostors by the target's ranking), for the interpreter and, with the model's attribute
   layer, the exact linear decomposition and the published attribute error (eq. 3.2), a random
   attribute (scores drawn at random, seed 0) and the frequency baseline (attributes ranked by how
   often they differ between two training identities). Attributes never positive in the training
   crops are left out for every method;
4. speed: explaining a top-10 with the interpreter, maps included (its parts and attention maps,
   the maps drawn as JPEG), per query, median over 20 VIPeR queries, images read from disk.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import M0277, Report, parse, parser, relative

from xreid.data.labels import label_matrix
from xreid.data.protocol import load_protocol
from xreid.evaluation.amd_metrics import difference_rates
from xreid.workflows.interpreter_eval import evaluate_interpretation, test_pairs
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.formulas import attribute_error, exact_decomposition, orthonormal_attribute_basis
from xreid.models.interpreter import Interpreter, bundled_trunk, trunk_identity
from xreid.models.loading import BUNDLED_HEAD, load_embedder
from xreid.training.interpreter import FitConfig, interpret_maps
from xreid.training.interpreter_data import cache_trunk_maps, target_embeddings
from xreid.workflows.interpret import MAPS_PER_RESULT, check_target, fit, interpret_ranking

#: The re-weighting mix chosen on PETA-ReID-val (docs/RESULTS.md#interpreter-amd), per model.
CHOSEN_MIX = {"default": 0.0, "0277": 0.5}
MIXES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def identity_positive_ratio(records, names) -> np.ndarray:
    """Share of training identities that have each attribute (one labelled image per identity)."""
    labels, labelled = label_matrix(records, names)
    first = {}
    for r, row, ok in zip(records, labels, labelled):
        if ok and r.pid is not None:
            first.setdefault(r.pid, row)
    return np.array(list(first.values())).mean(0)


def baselines(head: AttributeHead, feats: np.ndarray, freq: np.ndarray, seed: int = 0) -> dict:
    """Scores (query rows, gallery rows) -> Q x G x A of the comparison methods."""
    basis = orthonormal_attribute_basis(head.weights)
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    return {
        "exact": lambda q, g: exact_decomposition(f[q][:, None, :], f[g][None, :, :], basis)[0],
        "eq32": lambda q, g: attribute_error(f[q][:, None, :], f[g][None, :, :], head.weights),
        "random": lambda q, g: rng.random((len(q), len(g), len(freq))),
        "frequency": lambda q, g: np.broadcast_to(freq, (len(q), len(g), len(freq))),
    }


def explain_speed(interp: Interpreter, proto, queries: int = 20, top_k: int = 10) -> dict:
    """Seconds to explain a top-k with the interpreter, maps drawn, images read from disk."""
    from xreid.data.images import load_image
    from xreid.rendering.maps import draw_maps

    ts = proto.test_sets[0]
    times = []
    for i in range(queries):
        t0 = time.perf_counter()
        q = load_image(proto.image_root / ts.query[i].path)
        recs = ts.gallery[i:i + top_k]
        imgs = [load_image(proto.image_root / r.path) for r in recs]
        ranking, maps = interpret_ranking(interp, q, imgs, [r.path for r in recs], [0.5] * len(recs))
        images = {"query": q, **{r.path: im for r, im in zip(recs, imgs)}}
        draw_maps(maps, images)
        times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "max_s": float(np.max(times)), "queries": queries,
            "maps_per_result": 2 * MAPS_PER_RESULT}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--work", type=Path, default=Path("runs/interpreters"),
                    help="where the interpreters and their cached inputs are kept, per bundled trunk (reused when present)")
    ap.add_argument("--head-0277", type=Path, default=Path("runs/heads/head_0277.npz"),
                    help="0277's attribute layer (bench_attributes.py fits it)")
    ap.add_argument("--models", default="default,0277")
    ap.add_argument("--epochs", type=int, default=None, help="fit epochs (default: the chosen setting; for smoke runs)")
    args = parse(ap)
    report = Report(args.out)
    proto = load_protocol("peta-reid", args.data_root)
    keys, sets = test_pairs(proto)
    trunk = bundled_trunk()
    identity = trunk_identity(trunk)
    args.work = args.work / f"trunk-{identity['fingerprint'][:12]}"  # a new bundled model fits anew
    test_maps = cache_trunk_maps(trunk, identity, proto.image_root, keys, args.work / "test_maps")
    recs = proto.test_images()
    figures = {}
    for name in args.models.split(","):
        spec, head_path = ("default", BUNDLED_HEAD) if name == "default" else (str(M0277), args.head_0277)
        emb = load_embedder(spec)
        path = args.work / f"{name}.pt"
        if not path.is_file():
            report.progress(f"fitting the interpreter of {name} -> {relative(path)}")
            config = FitConfig() if args.epochs is None else replace(FitConfig(), epochs=args.epochs)
            fit(emb, args.data_root, path, "peta-reid", config, model_name=relative(spec))
        interp = Interpreter.load(path)
        check_target(interp, emb, path)
        head = AttributeHead.load(head_path)
        if head.names != interp.names:
            raise ValueError(f"{head_path}: attributes differ from the interpreter's")
        targets = target_embeddings(emb, proto.image_root, keys, args.work / f"{name}_test.npz")
        z, _ = interpret_maps(interp.net, test_maps)
        labels, labelled = label_matrix(recs, interp.names)
        keep = np.array([n not in interp.absent for n in interp.names])
        freq = difference_rates(identity_positive_ratio(proto.train, interp.names))
        res = evaluate_interpretation(z, targets, labels, labelled, sets, keep=keep, mixes=MIXES,
                                      baselines=baselines(head, targets, freq))
        res["speed"] = explain_speed(interp, proto)
        res["interpreter"] = {"file": relative(path), "model": relative(spec), "config": interp.meta.get("config"),
                              "fit_seconds": sum(h["seconds"] for h in interp.meta.get("history", [])),
                              "absent": interp.absent}
        res["chosen_mix_on_val"] = CHOSEN_MIX.get(name)
        figures[name] = res

        f = res["fidelity"]
        report.print(f"\n## {name}: {relative(spec)} (interpreter {relative(path)}, fitted in "
                     f"{res['interpreter']['fit_seconds'] / 60:.0f} min)")
        report.table(["test set", "Pearson", "Spearman", "rel. error (mean / median)", "mAP target",
                      "mAP reconstructed"],
                     [[s, f"{v['fidelity']['pearson']:.3f}", f"{v['fidelity']['spearman']:.3f}",
                       f"{v['fidelity']['relative_error_mean']:.3f} / {v['fidelity']['relative_error_median']:.3f}",
                       f"{v['mAP_target']:.1f}", f"{v['mAP_reconstructed']:.1f}"] for s, v in res["per_set"].items()]
                     + [["all pairs", f"{f['pearson']:.3f}", f"{f['spearman']:.3f}",
                         f"{f['relative_error_mean']:.3f} / {f['relative_error_median']:.3f}",
                         f"{res['mAP_mix_0']:.1f}", f"{res['mAP_mix_1']:.1f}"]])
        report.print("re-weighting, mean mAP over the test sets by (1 - w) d + w d_hat: " + ", ".join(
            f"w={w:g}: {res[f'mAP_mix_{w:g}']:.2f}" + (" (chosen on val)" if w == CHOSEN_MIX.get(name) else "")
            for w in MIXES))
        rows = [[m, *(f"{e[k]:.1f}" for k in ("ex_precision_d", "ex_precision_s", "ex_map_d", "ex_map_s",
                                               "top1_precision"))] for m, e in res["explanation"].items()]
        report.table(["method", "Ex_Precision_d", "Ex_Precision_s", "Ex_mAP_d", "Ex_mAP_s", "top-1 precision"], rows)
        e = res["explanation"]["interpreter"]
        report.print(f"{e['pairs']} labelled pairs of two identities ({e['attributes']} attributes scored), "
                     f"{e['top1_pairs']} top-10 impostor pairs; explain top-10 with the interpreter, maps drawn: "
                     f"median {res['speed']['median_s']:.2f} s, max {res['speed']['max_s']:.2f} s")
    report.save(figures)


if __name__ == "__main__":
    main()
