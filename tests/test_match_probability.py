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


# --- every refusal, boundary and recorded field (what the mutation score found untested) ---------------------

def test_logistic_loss_by_hand():
    from xreid.explain.match_probability import _logistic_loss

    x = np.array([[1.0, 2.0, 1.0], [-1.0, 0.0, 1.0]])  # two features and the intercept column
    y = np.array([1.0, 0.0])
    w = np.array([0.5, -1.0, 2.0])
    # t = (0.5 - 2 + 2, -0.5 + 2) = (0.5, 1.5): nll = (log(1 + e^0.5) - 0.5 + log(1 + e^1.5)) / 2;
    # penalty on the two feature weights only: 0.5 x 0.1 x (0.25 + 1)
    expected = (math.log1p(math.exp(0.5)) - 0.5 + math.log1p(math.exp(1.5))) / 2 + 0.5 * 0.1 * 1.25
    assert _logistic_loss(x, y, w, 0.1) == pytest.approx(expected, rel=1e-12)


def test_fit_logistic_penalises_the_weights_but_not_the_intercept():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = rng.random(200) < 0.8
    w = fit_logistic(x, y, l2=1e4)  # a huge pull: the weights vanish, the intercept keeps the base rate
    assert np.abs(w[:2]).max() < 1e-3 and w[2] == pytest.approx(math.log(y.mean() / (1 - y.mean())), abs=1e-3)
    # the default pull (1e-6) is tiny: the fit is the plain maximum-likelihood one
    x1 = np.array([-1, -1, -1, -1, 1, 1, 1, 1], float)[:, None]
    y1 = np.array([0, 0, 0, 1, 0, 1, 1, 1], bool)
    assert np.allclose(fit_logistic(x1, y1), [math.log(3), 0.0], atol=1e-4)


@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_fit_logistic_is_the_optimum_in_a_few_newton_steps(l2):
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2)) * [1.0, 3.0]
    y = rng.random(300) < 1 / (1 + np.exp(-(x @ [1.5, -0.5] + 0.3)))
    xb = np.concatenate([x, np.ones((300, 1))], axis=1)

    def objective(w):
        t = xb @ w
        return np.mean(np.logaddexp(0.0, t) - y * t) + 0.5 * l2 * np.sum(w[:2] ** 2)

    ref = minimize(objective, np.zeros(3), method="BFGS", options={"gtol": 1e-12}).x
    np.testing.assert_allclose(fit_logistic(x, y, l2=l2, steps=6), ref, atol=1e-6)


def test_fit_logistic_refusals_name_the_shapes():
    with pytest.raises(ValueError, match=r"^logistic fit: features \(8,\) must be M x F and labels \(8,\) length M$"):
        fit_logistic(np.zeros(8), np.zeros(8, bool))
    with pytest.raises(ValueError, match=r"^logistic fit: features \(8, 1\) must be M x F and labels \(7,\) length M$"):
        fit_logistic(np.zeros((8, 1)), np.zeros(7, bool))
    with pytest.raises(ValueError, match="^logistic fit: no examples$"):
        fit_logistic(np.zeros((0, 2)), np.zeros(0))


def test_match_features_boundaries_and_messages():
    # exactly at the tolerance (1e-4) a negative distance and a step back are float error, not refused
    assert match_features([-1e-4, 0.1])[0].tolist() == [0.0, 0.0, 0.1]
    assert match_features([1e-4, 0.0])[:, 0].tolist() == [1e-4, 0.0]
    assert match_features(np.array([0.25, 0.5], np.float32)).dtype == np.float64
    assert match_features([0.3]).tolist() == [[0.3, 0.3, 0.3]]
    for bad, msg in (([], "match probability: no search results (distances) given"),
                     ([0.2, np.nan], "match probability: distances must be finite numbers (got NaN or infinity)"),
                     ([-0.5, 0.1], "match probability: negative distance -0.5 (cosine distances lie in [0, 2])"),
                     ([0.4, 0.2], "match probability: distances must be one search's results, nearest first")):
        with pytest.raises(ValueError) as err:
            match_features(bad)
        assert str(err.value) == msg
    # the context: the k-th distance read
    assert match_features([0.1, 0.2, 0.3, 0.4], context=2)[:, 2].tolist() == [0.2] * 4


def test_reliability_diagram_refusals_and_bins():
    for p, y, msg in (([0.5, 0.5], [1], "2 probabilities but 1 outcomes"),
                      ([1.5], [1], "probabilities must lie in [0, 1]"), ([-0.1], [1], "probabilities must lie in [0, 1]")):
        with pytest.raises(ValueError) as err:
            reliability_diagram(p, y)
        assert str(err.value) == msg
    with pytest.raises(ValueError) as err:
        expected_calibration_error([], [])
    assert str(err.value) == "expected calibration error: no predictions"
    assert expected_calibration_error([0.3], [1]) == pytest.approx(0.7)  # one prediction is enough
    # two bins: [0, .5) holds 0.1 and 0.4 (mean .25, rate .5); [.5, 1] holds 0.6 (rate 0) -> (2 x .25 + .6) / 3
    assert expected_calibration_error([0.1, 0.4, 0.6], [1, 0, 0], bins=2) == pytest.approx((2 * 0.25 + 0.6) / 3)


def test_episodes_defaults_three_cameras_and_refusal():
    pids = [f"p{i}" for i in range(302) for _ in range(2)]
    cams = ["1", "2"] * 302
    eps = calibration_episodes(pids, cams)
    assert len(eps) == 20 and {len(g) for _, g in eps} == {300}  # defaults: 20 episodes of 300 identities
    assert [x.tolist() for x in eps[0]] == [x.tolist() for x in calibration_episodes(pids, cams, seed=0)[0]]
    # a person seen by three cameras is queried from one camera and shown from another
    three = calibration_episodes(["A", "A", "A", "B"], ["1", "2", "3", "1"], episodes=10, seed=2)
    for q, g in three:
        assert len(q) == 1 and len(g) == 2 and q[0] != g[0]
    # nobody seen twice: no queries, but an index array all the same
    (q, g), = calibration_episodes(["A", "B"], ["1", "1"], episodes=1)
    assert q.dtype == np.int64 and g.dtype == np.int64 and len(q) == 0
    with pytest.raises(ValueError) as err:
        calibration_episodes(["A", "B"], ["1"])
    assert str(err.value) == "2 person ids but 1 cameras"


def test_search_pairs_labels_are_booleans():
    d, same = search_pairs(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), ["a"], ["a", "b"])
    assert same.dtype == bool and same.tolist() == [[True, False]] and d.shape == (1, 2)


def test_calibration_record_refusals_and_boundaries():
    def refusal(**kw):
        with pytest.raises(ValueError) as err:
            _calibration(**kw)
        return str(err.value)

    assert refusal(weights=[1.0, 2.0]) == ("match calibration: weights must be 4 finite numbers (distance, "
                                           "first_distance, context_distance, intercept), got [1.0, 2.0]")
    assert refusal(weights=[0.0, 1.0, 1.0, 1.0]) == ("match calibration: the distance weight 0 must be negative "
                                                     "(the probability must fall as the distance grows)")
    assert "distance weight 0.25 must be negative" in refusal(weights=[0.25, -7.0, 1.0, 1.0])
    assert refusal(threshold=1.5) == "match calibration: threshold 1.5 is not a probability in [0, 1]"
    assert refusal(context=0) == "match calibration: context 0 must be at least 1"
    assert refusal(identity=["m"]) == "match calibration: the model identity must be a mapping"
    for t in (0.0, 1.0):  # the threshold's bounds are allowed
        assert _calibration(threshold=t).threshold == t
    assert _calibration(context=1).context == 1
    cal = _calibration(weights=[[-1, 0, 0, 1]])  # any shape holding four numbers; integers read as floats
    assert cal.weights.dtype == np.float64 and cal.weights.tolist() == [-1.0, 0.0, 0.0, 1.0]


def test_probability_reads_the_records_context_and_flags_below_the_threshold():
    cal = _calibration(weights=[-1.0, 0.0, 2.0, 0.0], context=2)  # logit -d + 2 d_2
    assert cal.probability([0.1, 0.3, 0.9]).tolist() == pytest.approx([1 / (1 + math.exp(-0.5)),
                                                                       1 / (1 + math.exp(-0.3)),
                                                                       1 / (1 + math.exp(0.3))])
    half = _calibration(weights=[-1.0, 0.0, 0.0, 0.5])  # p = sigmoid(0.5 - d): exactly 0.5 at d = 0.5
    assert half.probability([0.5])[0] == 0.5
    assert half.flagged([0.5]).tolist() == [False]  # at the threshold is not below it
    assert half.flagged([0.5], threshold=1.0).tolist() == [True] and half.flagged([0.5], threshold=0.0).tolist() == [False]
    with pytest.raises(ValueError) as err:
        half.flagged([0.5], threshold=-0.1)
    assert str(err.value) == "threshold -0.1 is not a probability in [0, 1]"


def test_record_dict_and_file_format(tmp_path):
    cal = _calibration(meta={"k": 1})
    assert cal.to_dict() == {"format": "xreid-match-calibration", "version": 1,
                             "features": ["distance", "first_distance", "context_distance"],
                             "weights": {"distance": -10.0, "first_distance": 2.0, "context_distance": 3.0,
                                         "intercept": 1.0},
                             "context": 10, "threshold": 0.5, "ece_bins": 15, "identity": IDENTITY, "meta": {"k": 1}}
    cal.save(tmp_path / "c.json")
    assert (tmp_path / "c.json").read_text() == json.dumps(cal.to_dict(), indent=1)  # readable, one key a line
    data = cal.to_dict()
    del data["meta"]
    assert MatchCalibration.from_dict(data).meta == {}


def test_from_dict_refusals_name_the_file_and_the_problem():
    good = _calibration().to_dict()

    def refusal(data, where=None):
        with pytest.raises(ValueError) as err:
            MatchCalibration.from_dict(data) if where is None else MatchCalibration.from_dict(data, where)
        return str(err.value)

    assert refusal([1, 2]) == ("match calibration: not an xreid match calibration (format 'list', "
                               "expected 'xreid-match-calibration')")
    assert refusal({**good, "version": 7}, "c.json") == "c.json: match calibration version 7, this xreid reads 1"
    assert refusal({k: v for k, v in good.items() if k != "threshold"}) == \
        "match calibration: incomplete match calibration (missing 'threshold')"
    assert refusal({**good, "threshold": 2.0}) == \
        "match calibration: match calibration: threshold 2.0 is not a probability in [0, 1]"


def test_check_model_says_how_to_fix_it():
    with pytest.raises(IdentityMismatch) as err:
        _calibration().check_model({**IDENTITY, "fingerprint": "xyz"})
    text = str(err.value)
    assert text.startswith("match calibration")
    assert ("A match calibration holds only for the model it was fitted on: fit one with "
            "`xreid index calibrate CASE` and that model's options.") in text


def _clustered(n_people=40, cams=2, seed=0, dim=8, noise=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    feats = np.concatenate([centres + noise * rng.normal(size=centres.shape) for _ in range(cams)])
    pids = [f"p{i}" for i in range(n_people)] * cams
    cam = [str(c) for c in range(cams) for _ in range(n_people)]
    return feats, pids, cam


def test_fit_match_calibration_records_how_it_was_fitted():
    from xreid.explain.match_probability import episode_pairs

    feats, pids, cams = _clustered()
    cal = fit_match_calibration(feats, pids, cams, IDENTITY, gallery_size=30, episodes=3, context=4)
    assert cal.context == 4 and cal.threshold == 0.5
    # the same fit by hand: the episodes' top-4 pairs, their features with context 4, the logistic fit
    eps = calibration_episodes(pids, cams, 30, 3, 0)
    pairs = episode_pairs(feats.astype(np.float32), pids, eps, 4)
    x = np.concatenate([match_features(d, 4).reshape(-1, 3) for d, _ in pairs])
    same = np.concatenate([s.ravel() for _, s in pairs])
    np.testing.assert_allclose(cal.weights, fit_logistic(x, same), atol=1e-9)
    rank1 = float(np.concatenate([s[:, 0] for _, s in pairs]).mean())
    assert cal.meta == {"gallery_size": 30, "episodes": 3, "seed": 0, "searches": 90, "pairs": 360,
                        "true_matches": int(same.sum()), "rank1": round(rank1, 4)}
    assert cal.meta["rank1"] != round(float(np.concatenate([s[:, 1] for _, s in pairs]).mean()), 4)
    again = fit_match_calibration(feats, pids, cams, IDENTITY, gallery_size=30, episodes=3, context=4)
    np.testing.assert_array_equal(again.weights, cal.weights)  # seeded: the same episodes every time
    defaults = fit_match_calibration(feats, pids, cams, IDENTITY, meta={"protocol": "x"})
    assert (defaults.meta["gallery_size"], defaults.meta["episodes"], defaults.meta["seed"]) == (300, 20, 0)
    assert defaults.meta["protocol"] == "x" and defaults.meta["searches"] == 20 * 40


def test_fit_match_calibration_refusals():
    feats, pids, cams = _clustered(n_people=6, noise=0.0)
    with pytest.raises(ValueError) as err:  # perfect features and one result per search: every result matches
        fit_match_calibration(feats, pids, cams, IDENTITY, episodes=2, context=1)
    assert str(err.value) == ("training split: every top-1 result is a true match; no impostor to calibrate "
                              "against")
    # features where the true match is always the farthest result: the fit would rise with the distance
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 8))
    far = np.concatenate([base, -base])
    with pytest.raises(ValueError) as err:
        fit_match_calibration(far, pids, cams, IDENTITY, episodes=2, context=6, where="split A")
    from xreid.explain.match_probability import episode_pairs

    pairs = episode_pairs(far.astype(np.float32), pids, calibration_episodes(pids, cams, 300, 2, 0), 6)
    w = fit_logistic(np.concatenate([match_features(d, 6).reshape(-1, 3) for d, _ in pairs]),
                     np.concatenate([s.ravel() for _, s in pairs]))
    assert str(err.value) == (f"split A: the fitted probability does not fall with the distance (weight {w[0]:.3g}); "
                              f"the model's distances carry no usable signal on this split")


def test_the_seed_chooses_the_episodes_and_empty_splits_give_index_arrays():
    feats, pids, cams = _clustered(noise=0.8)
    a = fit_match_calibration(feats, pids, cams, IDENTITY, gallery_size=10, episodes=2, seed=0)
    b = fit_match_calibration(feats, pids, cams, IDENTITY, gallery_size=10, episodes=2, seed=1)
    assert b.meta["seed"] == 1 and not np.array_equal(a.weights, b.weights)
    (q, g), = calibration_episodes([], [], episodes=1)
    assert q.dtype == np.int64 and g.dtype == np.int64 and len(g) == 0


def test_reliability_diagram_averages_in_float64():
    p = np.array([0.1, 0.1001, 0.1002, 0.1003, 0.1004], np.float32)  # one bin
    (row,) = reliability_diagram(p, [1, 0, 0, 0, 0])
    assert row["mean_probability"] == float(p.astype(np.float64).mean()) and row["match_rate"] == 0.2
