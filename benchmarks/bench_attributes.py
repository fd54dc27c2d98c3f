"""Attribute recognition on the PETA-ReID test images (label-based mA, threshold 0.5).

    python benchmarks/bench_attributes.py [--data-root DATA_ROOT] [--heads-dir runs/heads] [--out STEM]

Rows: the bundled model's head; a head fitted (same recipe: `xreid attributes fit`, i.e.
``xreid.workflows.attributes.fit_head``) on the frozen embeddings of Open Model Zoo
person-reidentification-retail-0277 and scored as `xreid attributes eval` scores it; and the Open
Model Zoo attribute model person-attributes-recognition-crossroad-0230 on its 8 outputs mapped to
PETA names (mA over those 8 only, and the head of the bundled model on the same 8 for comparison).
The 0277 head is fitted once (embedding 16.6k training images is slow) and kept in --heads-dir;
--refit fits it again (after a change to `xreid attributes fit`; run_all.sh always refits); --cache
DIR keeps (or reads) the 0277 embeddings there, as `xreid attributes fit --cache` does.
"""

from __future__ import annotations

from pathlib import Path

from common import M0230, M0277, Report, omz_0230_probabilities, parse, parser, relative

from xreid.data.labels import label_matrix
from xreid.data.protocol import load_protocol
from xreid.evaluation.attributes import attribute_report, labelled_embeddings
from xreid.explain.attribute_head import AttributeHead
from xreid.models.loading import BUNDLED_HEAD, load_embedder
from xreid.workflows.attributes import evaluate_head, fit_head


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--heads-dir", type=Path, default=Path("runs/heads"),
                    help="where the head fitted on 0277 embeddings is kept (head_0277.npz)")
    ap.add_argument("--refit", action="store_true", help="fit the 0277 head again even if one is kept")
    ap.add_argument("--cache", type=Path, default=None,
                    help="embedding cache folder for the 0277 fit (as `xreid attributes fit --cache`)")
    args = parse(ap)
    report = Report(args.out)
    proto = load_protocol("peta-reid", args.data_root)
    test = [r for r in proto.test_images() if r.attributes is not None]
    rows = {}

    default_head = AttributeHead.load(BUNDLED_HEAD)
    feats, labels, _ = labelled_embeddings(load_embedder("default", backend="torch"), proto.image_root, test,
                                           default_head.names, False)
    default_probs = default_head.predict(feats)
    rows["xreid default head (35 attributes)"] = attribute_report(default_probs, labels, default_head.names, proto.attributes)

    emb_0277 = load_embedder(M0277)
    head_0277 = args.heads_dir / "head_0277.npz"
    if args.refit or not head_0277.is_file():
        report.progress(f"fitting the attribute head on 0277 embeddings -> {relative(head_0277)}")
        fit_head(emb_0277, args.data_root, model_name=relative(M0277), cache=args.cache).save(head_0277)
    rows["head on OMZ 0277 embeddings (35 attributes)"] = evaluate_head(emb_0277, AttributeHead.load(head_0277),
                                                                        args.data_root)

    probs, names, kept = omz_0230_probabilities(M0230, proto.image_root, test)
    lab8, _ = label_matrix([test[i] for i in kept], names)
    rows["OMZ 0230 attribute model (its 8 attributes)"] = attribute_report(probs, lab8, names)
    rows["xreid default head (the same 8 attributes)"] = attribute_report(default_probs, labels, default_head.names, names)

    report.print(f"PETA-ReID test images with labels: {len(test)}")
    report.table(["model", "mA (%)", "attributes"], [[k, f"{r['mA']:.1f}", r["attributes"]] for k, r in rows.items()])
    report.save(rows)


if __name__ == "__main__":
    main()
