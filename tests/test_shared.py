"""Integration tests on the real PETA-ReID benchmark (run where ../shared is present, as in CI)."""

import re

import pytest

from conftest import REPO, needs_file, omz_model
from xreid.data.protocol import load_protocol
from xreid.evaluation.evaluate import evaluate_protocol
from xreid.models.loading import load_embedder

pytestmark = pytest.mark.shared


def readme_row(label: str) -> list[str]:
    for line in (REPO / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"README has no table row {label!r}")


def test_prepared_peta_matches_protocol(shared_data_root):
    proto = load_protocol("peta-reid", shared_data_root)
    assert [(t.name, len(t.query), len(t.gallery)) for t in proto.test_sets] == [
        ("VIPeR", 316, 316), ("PRID", 100, 649), ("GRID", 125, 900)]
    assert len(proto.train) == 11143 and len(proto.attribute_only) == 5451
    assert sum(r.attributes is None for r in proto.train) == 0


def test_default_model_reproduces_readme_figure(shared_data_root):
    result = evaluate_protocol(load_embedder("default"), load_protocol("peta-reid", shared_data_root), progress=False)
    readme_map = float(readme_row("xreid default (PyTorch)")[1].split("/")[0])
    assert abs(result.mean["mAP"] - readme_map) <= 1.0, (result.mean, readme_map)


@needs_file(omz_model("person-reidentification-retail-0277"))
def test_omz_0277_reproduces_reference_figures(shared_data_root):
    # data README: VIPeR 80.1, PRID 82.0, GRID 66.9, mean 76.3 mAP
    result = evaluate_protocol(load_embedder(omz_model("person-reidentification-retail-0277")),
                               load_protocol("peta-reid", shared_data_root), progress=False)
    assert abs(result.mean["mAP"] - 76.3) <= 0.5
    for name, ref in {"VIPeR": 80.1, "PRID": 82.0, "GRID": 66.9}.items():
        assert abs(result.per_set[name]["mAP"] - ref) <= 1.0, (name, result.per_set[name])


def test_default_head_attribute_accuracy_matches_readme(shared_data_root):
    from xreid.explain.attribute_head import AttributeHead
    from xreid.evaluation.attributes import attribute_report, labelled_embeddings
    from xreid.models.loading import BUNDLED_HEAD

    proto = load_protocol("peta-reid", shared_data_root)
    head = AttributeHead.load(BUNDLED_HEAD)
    feats, labels, _ = labelled_embeddings(load_embedder("default"), proto.image_root, proto.test_images(),
                                           head.names, progress=False)
    report = attribute_report(head.predict(feats), labels, head.names, proto.attributes)
    readme_ma = float(re.match(r"[\d.]+", readme_row("xreid default head")[1]).group())
    assert report["attributes"] == 35 and abs(report["mA"] - readme_ma) <= 1.0
