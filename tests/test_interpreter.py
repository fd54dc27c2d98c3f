"""The distilled interpreter: its formulas and AMD's metrics by hand, its losses, an exactly resumed
fit, the file format and the target check, and `xreid interpret fit` / `xreid explain --interpreter`
end to end on a tiny data set."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xreid.cli import app
from xreid.evaluation.amd_metrics import difference_rates, explanation_metrics
from xreid.explain.interpretation import component_distances, contributions, fidelity, pair_fit
from xreid.training.interpreter import (FitConfig, FitData, attribute_prior_loss, batch_components,
                                        distillation_loss, fit_interpreter, nearest_neighbours)

runner = CliRunner()


# --- formulas, by hand ----------------------------------------------------------------------------

def test_component_distances_by_hand():
    z_q = np.array([[1.0, 0.0], [0.0, 0.0]])  # A = 2 attributes, k = 2
    z_g = np.array([[[0.0, 0.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 0.0]]])
    assert np.allclose(component_distances(z_q, z_g), [[1.0, 4.0], [0.0, 0.0]])
    many = component_distances(np.stack([z_q, z_g[0]]), z_g)  # Q x G x A through the Gram form
    assert np.allclose(many[0], [[1.0, 4.0], [0.0, 0.0]]) and np.allclose(many[1], [[0.0, 0.0], [1.0, 4.0]])


def test_contributions_and_a_pair_at_distance_zero():
    c = contributions(np.array([[1.0, 3.0], [0.0, 0.0]]))
    assert np.allclose(c, [[0.25, 0.75], [0.0, 0.0]]) and np.isfinite(c).all()
    assert pair_fit(0.5, 0.4)["relative_error"] == pytest.approx(0.25)
    assert pair_fit(0.0, 0.0) == {"target": 0.0, "reconstructed": 0.0, "difference": 0.0, "relative_error": None}


def test_fidelity_by_hand():
    f = fidelity(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert f["spearman"] == pytest.approx(1.0)
    assert f["pearson"] == pytest.approx(np.corrcoef([1, 2, 3], [1, 2, 4])[0, 1])
    assert f["relative_error_mean"] == pytest.approx(0.25 / 3)
    tied = fidelity(np.array([1.0, 1.0, 2.0]), np.array([3.0, 2.0, 1.0]))
    assert tied["spearman"] == pytest.approx(-np.sqrt(3) / 2)  # ranks (0.5, 0.5, 2) against (2, 1, 0)
    with pytest.raises(ValueError, match="equally long"):
        fidelity(np.ones(3), np.ones(2))


def test_amd_metrics_by_hand():
    contrib = np.array([[0.4, 0.3, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1]])
    differs = np.array([[True, False, True, False], [False] * 4])
    m = explanation_metrics(contrib, differs)
    assert m["ex_precision_d"] == pytest.approx(50.0)  # top-2 {0, 1}, differing {0, 2}; only pair 1 counts
    # pair 1: bottom-2 {3, 2} vs matching {1, 3} = 1/2; pair 2 (all match): 3 of 4 shares <= 2/4
    assert m["ex_precision_s"] == pytest.approx(62.5)
    assert m["ex_map_d"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert m["ex_map_s"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1.0) / 2)
    assert m["pairs_with_differences"] == 1
    kept = explanation_metrics(contrib, differs, keep=np.array([True, False, True, True]))
    # attribute 1 left out: contributions (.4, .2, .1), differing {0, 2} = the top 2
    assert kept["attributes"] == 3 and kept["ex_precision_d"] == pytest.approx(100.0)
    assert np.allclose(difference_rates([0.5, 0.1, 0.0]), [0.5, 0.18, 0.0])


# --- losses ---------------------------------------------------------------------------------------

def test_losses_by_hand():
    parts = torch.tensor([[0.2, 0.3], [0.1, 0.1]])
    assert float(distillation_loss(parts, torch.tensor([0.5, 0.4]))) == pytest.approx(0.02 / 0.205)  # mean d^2 0.205
    prior = attribute_prior_loss(torch.tensor([[1.0, 1.0, 2.0], [5.0, 1.0, 1.0]]),
                                 torch.tensor([[False, False, True], [False, False, False]]))
    assert float(prior) == pytest.approx(-math.log(0.5), rel=1e-5)  # the pair without a difference is left out
    z = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 3.0]]])
    assert torch.allclose(batch_components(z)[..., 0], torch.tensor([[0.0, 1.0, 10.0], [1.0, 0.0, 9.0],
                                                                     [10.0, 9.0, 0.0]]))


def test_nearest_neighbours_are_by_cosine_and_never_self():
    angles = np.array([0.0, 0.1, 1.5, 3.0])
    f = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1], [5], [2], [1]])  # lengths do not matter
    assert nearest_neighbours(f, 1)[:, 0].tolist() == [1, 0, 1, 2]


# --- the fit --------------------------------------------------------------------------------------

def _data(n=24, a=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, a)) < 0.5
    labels[:, 2] = False  # never positive: an absent attribute
    return FitData(rng.normal(size=(n, 320, 7, 4)).astype(np.float16), rng.normal(size=(n, 16)).astype(np.float32),
                   labels, np.ones(n, bool), [f"p{i // 2}" for i in range(n)])


def test_an_interrupted_fit_resumes_exactly(tmp_path, monkeypatch):
    import xreid.training.interpreter as module

    config = FitConfig(epochs=3, batch_size=8, dim=4, width=16)
    whole, history = fit_interpreter(_data(), config, checkpoint=tmp_path / "a.pt", progress=False)
    assert len(history) == 3 and all(np.isfinite(h["loss"]) for h in history)
    real_save, calls = module.save_torch, []

    def save_then_stop(obj, path):
        real_save(obj, path)
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as if Ctrl-C came right after the first epoch's checkpoint

    monkeypatch.setattr(module, "save_torch", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        fit_interpreter(_data(), config, checkpoint=tmp_path / "b.pt", progress=False)
    resumed, history_b = fit_interpreter(_data(), config, checkpoint=tmp_path / "b.pt", progress=False)
    assert len(history_b) == 3
    for (name, p), q in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="other settings"):
        fit_interpreter(_data(), FitConfig(epochs=4, batch_size=8, dim=4, width=16), checkpoint=tmp_path / "b.pt",
                        progress=False)


# --- end to end -----------------------------------------------------------------------------------

@pytest.fixture()
def other_model(tmp_path):
    from xreid.models.checkpoint import save_model_file
    from xreid.models.networks import build_model
    from xreid.models.reid_net import ModelSpec

    torch.manual_seed(1)
    model = build_model(ModelSpec(input_size=(64, 32)), pretrained=False).eval()
    save_model_file(model, model.spec, tmp_path / "other.pt", meta={})
    return tmp_path / "other.pt"


@pytest.fixture()
def head_1280(tmp_path):
    from xreid.explain.attribute_head import AttributeHead

    path = tmp_path / "head.npz"
    AttributeHead(["personalMale", "hairLong"], np.random.default_rng(0).normal(size=(1280, 2)),
                  np.array([0.5, 0.5]), {}).save(path)
    return path


def test_fit_and_explain_with_an_interpreter(mini_peta, tiny_model, other_model, head_1280, tmp_path):
    interp = tmp_path / "interp.pt"
    fit = ["interpret", "fit", "--model", str(tiny_model), "--data-root", str(mini_peta), "--out", str(interp),
           "--epochs", "2"]
    res = runner.invoke(app, fit)
    assert res.exit_code == 0, res.output
    assert interp.is_file() and (tmp_path / "interp.pt.cache" / "checkpoint.pt").is_file()
    assert "never positive in training" in res.output  # PETA's 57 attributes, most absent from 4 people
    again = runner.invoke(app, fit)  # the cache and the finished checkpoint are reused
    assert again.exit_code == 0, again.output

    report, data = tmp_path / "r.html", tmp_path / "r.json"
    res = runner.invoke(app, ["explain", "--model", str(tiny_model), "--head", str(head_1280), "--protocol",
                              "peta-reid", "--data-root", str(mini_peta), "--interpreter", str(interp), "--maps",
                              "none", "--out", str(report), "--json", str(data)])
    assert res.exit_code == 0, res.output
    out = json.loads(data.read_text())["interpreter"]
    assert len(out["pairs"]) == 2 and len(out["absent"]) > 0
    for pair in out["pairs"]:
        assert len(pair["parts"]) == len(out["attribute_names"]) == 57
        assert all(np.isfinite(pair["parts"])) and min(pair["parts"]) >= 0
        assert pair["fit"]["reconstructed"] == pytest.approx(sum(pair["parts"]), rel=1e-6)
        assert not set(pair["largest"]) & set(out["absent"])
    page = report.read_text()
    assert "Distilled interpreter" in page and "query | result" in page

    res = runner.invoke(app, ["explain", "--model", str(other_model), "--head", str(head_1280), "--protocol",
                              "peta-reid", "--data-root", str(mini_peta), "--interpreter", str(interp),
                              "--out", str(report)])
    assert res.exit_code != 0
    assert "tiny" in res.output and "other" in res.output and "interpret fit" in res.output


def test_a_pair_at_distance_zero_and_a_file_that_is_no_interpreter(mini_peta, tiny_model, tmp_path):
    from xreid.models.interpreter import Interpreter
    from xreid.workflows.interpret import interpret_ranking

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="bad.pt: not an xreid interpreter"):
        Interpreter.load(bad)
    res = runner.invoke(app, ["interpret", "fit", "--model", str(tiny_model), "--data-root", str(mini_peta),
                              "--out", str(tmp_path / "i.pt"), "--epochs", "1"])
    assert res.exit_code == 0, res.output
    interp = Interpreter.load(tmp_path / "i.pt")
    image = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    ranking, maps = interpret_ranking(interp, image, [image], ["same.jpg"], [0.0])
    pair = ranking.pairs[0]
    assert pair.fit["relative_error"] is None and max(pair.parts) < 1e-6
    assert np.isfinite(pair.shares).all() and len(maps) == 6  # 3 attributes x (query, result)

    interp.meta["trunk"]["fingerprint"] = "0" * 16  # as if fitted on an earlier xreid's bundled model
    interp.save(tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt: this interpreter was fitted on the trunk of another bundled model"):
        Interpreter.load(tmp_path / "old.pt")
