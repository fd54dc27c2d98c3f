"""The default map choice: a map type whose recorded deletion ratio is near chance for the model is
left out of the default report with a note saying why; named with --maps it is still drawn."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xreid.binding import IdentityMismatch
from xreid.cli import app
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.maps.quality import MAP_QUALITY_THRESHOLD, default_map_choice
from xreid.models.checkpoint import save_model_file
from xreid.models.fingerprint import fingerprint
from xreid.models.map_quality import MapQuality, load_map_quality, map_quality_path
from xreid.models.networks import build_model
from xreid.models.reid_net import ModelSpec

runner = CliRunner()
NEAR_CHANCE = {"deletion_ratio": 0.972, "pairs": 100, "protocol": "PETA-ReID test", "command": "bench_maps.py"}


def test_the_rule_leaves_out_near_chance_types_and_says_why():
    kept, notes = default_map_choice(["pair", "occlusion"], {"pair": NEAR_CHANCE, "occlusion": {"deletion_ratio": 0.7}})
    assert kept == ["occlusion"] and len(notes) == 1
    assert "pair maps are not drawn by default" in notes[0] and "0.972" in notes[0] and "100 pairs" in notes[0]
    assert "--maps pair" in notes[0]
    assert default_map_choice(["pair"], None) == (["pair"], [])  # no record: today's default
    assert default_map_choice(["pair"], {"occlusion": NEAR_CHANCE}) == (["pair"], [])
    at = {"pair": {"deletion_ratio": MAP_QUALITY_THRESHOLD}}
    assert default_map_choice(["pair"], at)[0] == ["pair"]  # at the threshold: still drawn


@pytest.fixture()
def tiny(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelSpec(input_size=(64, 32)), pretrained=True).eval()
    path = tmp_path / "tiny.pt"
    save_model_file(model, model.spec, path, meta={})
    head = tmp_path / "h.npz"
    AttributeHead(["personalMale", "hairLong"], np.random.default_rng(0).normal(size=(1280, 2)),
                  np.array([0.5, 0.5]), {}).save(head)
    return path, head


def _record(path, ratio=0.972, fp=None):
    MapQuality({"pair": {**NEAR_CHANCE, "deletion_ratio": ratio}},
               {"model": path.name, "fingerprint": fp or fingerprint(path)}).save(map_quality_path(path))


def test_records_are_bound_to_the_weights_and_checked(tiny):
    path, _ = tiny
    assert load_map_quality(str(path)) is None
    _record(path)
    assert load_map_quality(str(path)).maps["pair"]["deletion_ratio"] == 0.972
    _record(path, fp="0123456789abcdef")
    with pytest.raises(IdentityMismatch, match="tiny_map_quality.json"):
        load_map_quality(str(path))
    map_quality_path(path).write_text(json.dumps({"format": "xreid-map-quality", "maps": {"pair": {"deletion_ratio": "x"}}}))
    with pytest.raises(ValueError, match="tiny_map_quality.json.*deletion_ratio"):
        load_map_quality(str(path))


def _explain(path, head, data_root, tmp_path, *extra):
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    res = runner.invoke(app, ["explain", "--model", str(path), "--head", str(head), "--data-root", str(data_root),
                              "--protocol", "peta-reid", "--out", str(out), "--json", str(js), "--top-k", "2",
                              "--map-dims", "2", *extra])
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    return {m["kind"] for m in (data.get("maps") or {}).get("maps", [])}, data["notes"], out.read_text()


def test_a_near_chance_pair_map_is_left_out_of_the_default_report_unless_asked_for(tiny, mini_peta, tmp_path):
    path, head = tiny
    kinds, notes, _ = _explain(path, head, mini_peta, tmp_path)
    assert "pair-sum" in kinds and not any("not drawn by default" in n for n in notes)  # no record: drawn
    _record(path)
    kinds, notes, html = _explain(path, head, mini_peta, tmp_path)
    assert not kinds
    assert any("pair maps are not drawn by default" in n and "0.972" in n for n in notes)
    assert "pair maps are not drawn by default" in html
    kinds, notes, _ = _explain(path, head, mini_peta, tmp_path, "--maps", "pair")
    assert "pair-sum" in kinds and not any("not drawn by default" in n for n in notes)
    _record(path, ratio=0.75)
    kinds, notes, _ = _explain(path, head, mini_peta, tmp_path)
    assert "pair-sum" in kinds and not any("not drawn by default" in n for n in notes)
