"""The calibrated same-person probability of search results (``xreid.explain.match_probability``,
``xreid index calibrate``, ``load_match_calibration``)."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from xreid.cli import app
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.calibration import fit_platt
from xreid.explain.match_probability import (
    MatchCalibration,
    calibration_episodes,
    expected_calibration_error,
    fit_logistic,
    fit_match_calibration,
    match_features,
    reliability_diagram,
    search_pairs,
)
from xreid.index.features import IdentityMismatch
from xreid.models.fingerprint import fingerprint
from xreid.models.loading import BUNDLED_MODEL
from xreid.workflows import match_calibration as workflow
from xreid.workflows.match_calibration import BUNDLED_MATCH_CALIBRATION, load_match_calibration

runner = CliRunner()
IDENTITY = {"model": "m", "fingerprint": "abc", "backend": "onnx", "preprocess": {"height": 8}, "flip": False,
            "precision": None}


def _calibration(**kw) -> MatchCalibration:
    return MatchCalibration(kw.pop("weights", [-10.0, 2.0, 3.0, 1.0]), kw.pop("identity", IDENTITY), **kw)


# --- calibration error ----------------------------------------------------------------------------------

def test_expected_calibration_error_by_hand():
    p = np.array([0.1, 0.1, 0.9, 0.9, 0.5])
    y = np.array([0, 1, 1, 1, 0])
    # 15 bins: 0.1 -> bin 1 (|0.1 - 0.5| x 2), 0.9 -> bin 13 (|0.9 - 1| x 2), 0.5 -> bin 7 (|0.5 - 0| x 1)
    assert math.isclose(expected_calibration_error(p, y), (0.8 + 0.2 + 0.5) / 5)
    rows = reliability_diagram(p, y)
    assert [(r["count"], r["match_rate"]) for r in rows] == [(2, 0.5), (1, 0.0), (2, 1.0)]
    assert math.isclose(rows[0]["low"], 1 / 15) and math.isclose(rows[2]["high"], 14 / 15)
    assert reliability_diagram([1.0], [1])[0]["low"] == 14 / 15  # 1.0 falls in the last bin
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == 0.0
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        expected_calibration_error([np.nan], [1])


# --- features and probability ------------------------------------------------------------------------

def test_features_read_first_and_tenth_distance():
    d = np.linspace(0.1, 0.6, 12)
    x = match_features(d)
    assert np.allclose(x[:, 0], d) and np.allclose(x[:, 1], 0.1) and np.allclose(x[:, 2], d[9])
    short = match_features([0.2, 0.3, 0.5])
    assert np.allclose(short, [[0.2, 0.2, 0.5], [0.3, 0.2, 0.5], [0.5, 0.2, 0.5]])
    assert np.allclose(match_features([-1e-6, 0.3])[0], [0.0, 0.0, 0.3])  # the same picture, float error
    for bad, msg in (([], "no search results"), ([0.2, np.nan], "finite"), ([-0.5, 0.1], "negative"),
                     ([0.4, 0.2], "nearest first")):
        with pytest.raises(ValueError, match=msg):
            match_features(bad)


def test_probability_by_hand_and_threshold():
    cal = _calibration()
    # context 10 but two results: d_K is the last one (0.4); logits -2 + 0.4 + 1.2 + 1 and -4 + 0.4 + 1.2 + 1
    p = cal.probability([0.2, 0.4])
    assert np.allclose(p, [1 / (1 + math.exp(-0.6)), 1 / (1 + math.exp(1.4))])
    assert cal.flagged([0.2, 0.4]).tolist() == [False, True]
    assert cal.flagged([0.2, 0.4], threshold=0.1).tolist() == [False, False]
    assert cal.probability(np.array([[0.2, 0.4], [0.0, 0.4]])).shape == (2, 2)
    with pytest.raises(ValueError, match="threshold"):
        cal.flagged([0.2], threshold=1.5)


def test_probability_falls_with_distance():
    cal = _calibration(weights=[-30.0, 20.0, 15.0, -3.0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = cal.probability(np.sort(rng.uniform(0, 1.2, 15)))
        assert np.all(np.diff(p) <= 0)
    # one result moved further away, the others kept: its probability falls
    base = np.linspace(0.3, 0.7, 10)
    probs = []
    for d5 in np.linspace(base[3], base[5], 9):
        b = base.copy()
        b[4] = d5
        probs.append(cal.probability(b)[4])
    assert np.all(np.diff(probs) < 0)
    with pytest.raises(ValueError, match="must be negative"):
        _calibration(weights=[0.5, 0.0, 0.0, 0.0])


# --- fitting -------------------------------------------------------------------------------------

def test_fit_logistic_by_hand():
    # x = -1: one match in four (p 0.25); x = +1: three in four (p 0.75) -> w = ln 3, b = 0
    x = np.array([-1, -1, -1, -1, 1, 1, 1, 1], float)
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1], bool)
    w = fit_logistic(x[:, None], y, l2=0.0)
    assert np.allclose(w, [math.log(3), 0.0], atol=1e-6)
    # the same as the attribute calibration's Platt fit without its pull towards (1, 0)
    assert np.allclose(fit_platt(x[:, None], y[:, None], l2=0.0)[0], w, atol=1e-6)
    with pytest.raises(ValueError, match="no examples"):
        fit_logistic(np.zeros((0, 2)), np.zeros(0))


def test_episodes_query_another_camera():
    pids = ["A", "A", "A", "B", "C", "C", "D", "D"]
    cams = ["1", "2", "2", "1", "1", "3", "5", "5"]
    eps = calibration_episodes(pids, cams, gallery_size=10, episodes=5, seed=1)
    assert len(eps) == 5
    for q, g in eps:
        assert sorted(pids[i] for i in g) == ["A", "B", "C", "D"]  # one image of each person
        assert sorted(pids[i] for i in q) == ["A", "C"]  # only people seen by two cameras are queried
        gallery_cam = {pids[i]: cams[i] for i in g}
        assert all(cams[i] != gallery_cam[pids[i]] for i in q)
    small = calibration_episodes(pids, cams, gallery_size=2, episodes=3, seed=0)
    assert all(len(g) == 2 for _, g in small)
    assert [x.tolist() for e in calibration_episodes(pids, cams, 3, 2, 7) for x in e] == \
        [x.tolist() for e in calibration_episodes(pids, cams, 3, 2, 7) for x in e]


def test_search_pairs_rank_and_label():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    d, same = search_pairs(np.array([[1.0, 0.1]]), gallery, ["b"], ["a", "b", "c"], top_k=2)
    assert same.tolist() == [[False, False]]  # a (nearest), then c; b is third
    assert d.shape == (1, 2) and d[0, 0] < d[0, 1]


def _split(n=30, seed=0, dim=16, noise=0.3):
    """Two cameras of ``n`` people (the same vector plus noise) and ``n`` one-camera distractors."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(2 * n, dim))
    feats, pids, cams = [], [], []
    for i in range(n):
        for cam in ("a", "b"):
            feats.append(base[i] + noise * rng.normal(size=dim))
            pids.append(f"p{i}")
            cams.append(cam)
    for i in range(n, 2 * n):
        feats.append(base[i])
        pids.append(f"p{i}")
        cams.append("a")
    return np.array(feats), pids, cams


def test_fit_match_calibration_is_calibrated_on_its_own_kind_of_search():
    feats, pids, cams = _split(noise=0.9)
    cal = fit_match_calibration(feats, pids, cams, IDENTITY, gallery_size=40, episodes=40)
    assert cal.weights[0] < 0 and cal.meta["pairs"] > 0 and 0 < cal.meta["rank1"] < 1
    other, o_pids, o_cams = _split(seed=1, noise=0.9)
    p, y = [], []
    for q, g in calibration_episodes(o_pids, o_cams, 40, 40, seed=5):
        d, s = search_pairs(other[q], other[g], np.array(o_pids)[q], np.array(o_pids)[g])
        p.append(cal.probability(d).ravel())
        y.append(s.ravel())
    p, y = np.concatenate(p), np.concatenate(y)
    assert abs(p.mean() - y.mean()) < 0.03
    assert expected_calibration_error(p, y) < 0.06


def test_fit_refuses_splits_without_matches():
    feats, pids, cams = _split(n=5)
    with pytest.raises(ValueError, match="two cameras"):
        fit_match_calibration(feats, pids, ["a"] * len(pids), IDENTITY)
    # every query's nearest image is a distractor: no true match in its top 1
    e = np.eye(8)
    feats = np.concatenate([e[:4], -e[:4], e[:4] + 0.01])
    pids = [f"p{i}" for i in range(4)] * 2 + [f"d{i}" for i in range(4)]
    cams = ["a"] * 4 + ["b"] * 4 + ["a"] * 4
    with pytest.raises(ValueError, match="no true match among the top 1"):
        fit_match_calibration(feats, pids, cams, IDENTITY, context=1, episodes=3)


# --- the record -----------------------------------------------------------------------------------

def test_save_load_round_trip_and_refusals(tmp_path):
    cal = _calibration(threshold=0.3, meta={"protocol": "peta-reid-val"})
    path = tmp_path / "cal.json"
    cal.save(path)
    back = MatchCalibration.load(path)
    assert np.array_equal(back.weights, cal.weights) and back.threshold == 0.3 and back.identity == IDENTITY
    assert back.meta == {"protocol": "peta-reid-val"} and back.to_dict() == cal.to_dict()
    assert json.loads(path.read_text())["format"] == "xreid-match-calibration"
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "xreid-gallery-index"}))
    with pytest.raises(ValueError, match="manifest.json: not an xreid match calibration .*xreid-gallery-index"):
        MatchCalibration.load(tmp_path / "manifest.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="bad.json: not a JSON match calibration"):
        MatchCalibration.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="not found"):
        MatchCalibration.load(tmp_path / "none.json")
    with pytest.raises(ValueError, match="finite"):
        _calibration(weights=[np.nan, 0, 0, 0])
    with pytest.raises(ValueError):  # NaN is never written
        _calibration(meta={"x": float("nan")}).save(tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists()


def test_another_model_is_refused_naming_both():
    cal = _calibration()
    cal.check_model({**IDENTITY, "backend": "openvino"})  # the backend moves vectors within float tolerance only
    with pytest.raises(IdentityMismatch, match="fingerprint differ") as err:
        cal.check_model({**IDENTITY, "fingerprint": "xyz"}, where="CASE/match_calibration.json")
    assert '"abc"' in str(err.value) and '"xyz"' in str(err.value)


def test_load_match_calibration_prefers_the_case_then_the_bundled_one(tmp_path, monkeypatch):
    bundled = tmp_path / "bundled.json"
    _calibration(identity={**IDENTITY, "fingerprint": "bundled"}).save(bundled)
    monkeypatch.setattr(workflow, "BUNDLED_MATCH_CALIBRATION", bundled)
    case = tmp_path / "case"
    case.mkdir()
    assert load_match_calibration(case, IDENTITY) is None
    got = load_match_calibration(case, {**IDENTITY, "fingerprint": "bundled", "backend": "torch"})
    assert got is not None and got.identity["fingerprint"] == "bundled"
    _calibration(threshold=0.2).save(case / "match_calibration.json")
    assert load_match_calibration(case, IDENTITY).threshold == 0.2
    with pytest.raises(IdentityMismatch, match="match_calibration.json"):
        load_match_calibration(case, {**IDENTITY, "fingerprint": "bundled"})


def test_shipped_calibration_is_for_the_bundled_model():
    cal = MatchCalibration.load(BUNDLED_MATCH_CALIBRATION)
    assert cal.identity["fingerprint"] == fingerprint(BUNDLED_MODEL) and cal.identity["flip"] is False
    assert cal.meta["protocol"] == "PETA-ReID-val" and cal.context == 10 and cal.threshold == 0.5
    p = cal.probability(np.linspace(0.2, 0.8, 10))
    assert np.all(np.diff(p) <= 0) and 0 < p[-1] < p[0] < 1


# --- the command ------------------------------------------------------------------------------------

def test_cli_calibrates_an_index(mini_peta, tiny_model, tmp_path):
    head = tmp_path / "head.npz"
    AttributeHead(["personalMale"], np.random.default_rng(0).normal(size=(1280, 1)), np.full(1, 0.4), {}).save(head)
    model = ["--model", str(tiny_model), "--backend", "torch"]
    case = tmp_path / "case"
    listing = tmp_path / "g.csv"
    listing.write_text("path\n" + "".join(f"peta/PETA dataset/VIPeR/archive/{i:03d}_90_2.jpg\n" for i in range(4, 6)))
    res = runner.invoke(app, ["index", "build", *model, "--head", str(head), "--data-root", str(mini_peta),
                              "--list", str(listing), "--out", str(case)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["index", "calibrate", str(case), *model, "--flip", "--data-root", str(mini_peta),
                              "--protocol", "peta-reid"])
    assert res.exit_code == 2 and "flip differ" in res.output
    res = runner.invoke(app, ["index", "calibrate", str(case), *model, "--data-root", str(mini_peta),
                              "--protocol", "peta-reid", "--threshold", "0.4"])
    assert res.exit_code == 0, res.output
    assert "match_calibration.json" in res.output and "threshold 0.4" in res.output
    cal = MatchCalibration.load(case / "match_calibration.json")
    assert cal.meta["protocol"] == "mini" and cal.meta["images"] == 8 and cal.threshold == 0.4
    assert cal.meta["pairs"] == 20 * 4 * 4  # 20 episodes, 4 two-camera people, galleries of 4
    assert not (case / "match_calibration.train.npz").exists()
    from xreid.index.gallery import GalleryIndex

    assert load_match_calibration(case, GalleryIndex.open(case).identity).threshold == 0.4
    res = runner.invoke(app, ["index", "calibrate", str(tmp_path / "nowhere"), *model, "--data-root", str(mini_peta)])
    assert res.exit_code == 2 and "index not found" in res.output
