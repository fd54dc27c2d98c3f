"""Attribute recognition on the PETA-ReID test images (label-based mA, threshold 0.5).

    python benchmarks/bench_attributes.py --data-root DATA_ROOT [--heads-dir benchmarks/heads] [--json OUT]

Rows: the bundled model's head; a head fitted (same recipe: `xreid attributes fit`) on the frozen
embeddings of Open Model Zoo person-reidentification-retail-0277; and the Open Model Zoo
attribute model person-attributes-recognition-crossroad-0230 on its 8 outputs mapped to PETA
names (mA over those 8 only, and the head of the bundled model on the same 8 for comparison).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xreid.data.peta import EXPLANATION_ATTRIBUTES
from xreid.data.protocol import load_protocol
from xreid.explain.attribute_head import AttributeHead, fit_attribute_head, label_matrix
from xreid.explain.attribute_quality import attribute_report, labelled_embeddings, omz_0230_probabilities
from xreid.models.embedders import BUNDLED_HEAD, load_embedder
from xreid.paths import resolve_data_root

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "openvino"
M0277 = SHARED_MODELS / "person-reidentification-retail-0277/FP16/person-reidentification-retail-0277.xml"
M0230 = SHARED_MODELS / "person-attributes-recognition-crossroad-0230/FP32/person-attributes-recognition-crossroad-0230.xml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--heads-dir", type=Path, default=Path("runs/heads"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    proto = load_protocol("peta-reid", resolve_data_root(args.data_root))
    test = [r for r in proto.test_images() if r.attributes is not None]
    rows = {}

    default_head = AttributeHead.load(BUNDLED_HEAD)
    feats, labels, _ = labelled_embeddings(load_embedder("default"), proto.image_root, test, default_head.names, False)
    default_probs = default_head.predict(feats)
    rows["xreid default head (35 attributes)"] = attribute_report(default_probs, labels, default_head.names, proto.attributes)

    head_0277 = args.heads_dir / "head_0277.npz"
    emb_0277 = load_embedder(M0277)
    if not head_0277.is_file():
        cache = args.heads_dir / "train_embeddings_0277.npz"  # embedding 16.6k images is the slow part
        if cache.is_file():
            with np.load(cache) as c:
                f, lab = c["features"], c["labels"]
        else:
            f, lab, _ = labelled_embeddings(emb_0277, proto.image_root, proto.train + proto.attribute_only,
                                            EXPLANATION_ATTRIBUTES, False)
            args.heads_dir.mkdir(parents=True, exist_ok=True)
            np.savez(cache, features=f, labels=lab)
        fit_attribute_head(f, lab, EXPLANATION_ATTRIBUTES, meta={"model": str(M0277)}).save(head_0277)
    h = AttributeHead.load(head_0277)
    f, lab, _ = labelled_embeddings(emb_0277, proto.image_root, test, h.names, False)
    rows["head on OMZ 0277 embeddings (35 attributes)"] = attribute_report(h.predict(f), lab, h.names, proto.attributes)

    probs, names, kept = omz_0230_probabilities(M0230, proto.image_root, test)
    lab8, _ = label_matrix([test[i] for i in kept], names)
    rows["OMZ 0230 attribute model (its 8 attributes)"] = attribute_report(probs, lab8, names)
    rows["xreid default head (the same 8 attributes)"] = attribute_report(default_probs, labels, default_head.names, names)

    print(f"PETA-ReID test images with labels: {len(test)}")
    print("| model | mA (%) | attributes |\n|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['mA']:.1f} | {r['attributes']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
