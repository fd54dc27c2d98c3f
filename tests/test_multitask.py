"""Multi-task training: the attribute layer learnt with the network."""

import math
import textwrap
from dataclasses import asdict

import numpy as np
import pytest
import torch

from xreid.explain.attribute_head import AttributeHead
from xreid.models.loading import load_embedder, model_head_path
from xreid.training.config import config_changes, load_config
from xreid.training.losses import attribute_bce, identity_losses
from xreid.training.multitask import AttributeLayer, attribute_names, attribute_only_indices
from xreid.training.trainer import train

NAMES = ["personalMale", "hairLong", "carryingBackpack", "accessoryHat"]  # the hat is never worn in mini_peta


def _config(tmp_path, name="multi", epochs=2, attributes=f"{{weight: 1.0, names: {NAMES}, attribute_only_batch: 2}}",
            extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        output_dir: {tmp_path / 'runs'}
        model: {{backbone: mobilenetv2, input_size: [64, 32], freeze_stages: 3, embedding_dim: 16}}
        train: {{epochs: {epochs}, id_warm_epochs: 1, p: 2, k: 2, warmup_epochs: 1, checkpoint_minutes: 0.0}}
        attributes: {attributes}
        {extra}
    """))
    return load_config(path)


def test_attribute_bce_is_class_balanced_by_hand():
    # logits 0: every element costs ln 2; weights: positive of ratio 0.25 -> 0.5 / 0.25 = 2,
    # negative of ratio 0.5 -> 0.5 / 0.5 = 1, negative of ratio 0.25 -> 0.5 / 0.75 = 2/3
    logits = torch.zeros(2, 2)
    labels = torch.tensor([[1, 0], [0, 0]])
    loss = attribute_bce(logits, labels, np.array([0.25, 0.5]))
    assert loss.item() == pytest.approx(math.log(2) * (2 + 1 + 2 / 3 + 1) / 4)
    # a confident right answer costs almost nothing, a confident wrong one a lot
    sure = torch.tensor([[9.0, -9.0], [-9.0, -9.0]])
    assert attribute_bce(sure, labels, np.array([0.25, 0.5])).item() < 1e-3
    assert attribute_bce(-sure, labels, np.array([0.25, 0.5])).item() > 5


def test_images_without_identity_never_reach_the_identity_losses():
    torch.manual_seed(0)
    feat = torch.randn(6, 4, requires_grad=True)
    logits = torch.randn(6, 3, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, -1, -1])  # two attribute-only crops at the end
    kw = dict(id_weight=0.5, triplet_weight=1.0, label_smoothing=0.1, margin=0.3, ranking=True)
    losses = identity_losses(feat, logits, labels, **kw)
    sum(losses.values()).backward()
    assert set(losses) == {"id", "triplet"}
    assert feat.grad[4:].abs().sum() == 0 and logits.grad[4:].abs().sum() == 0
    assert feat.grad[:4].abs().sum() > 0 and logits.grad[:4].abs().sum() > 0
    # whatever the crops look like (even the nearest "negative" of every anchor), the losses are the same
    moved = feat.detach().clone()
    moved[4:] = moved[0]
    again = identity_losses(moved, logits.detach(), labels, **kw)
    for k in losses:
        assert again[k].item() == pytest.approx(losses[k].item())
    alone = identity_losses(feat.detach()[:4], logits.detach()[:4], labels[:4], **kw)
    assert alone["triplet"].item() == pytest.approx(losses["triplet"].item())
    assert "triplet" not in identity_losses(feat, logits, labels, **{**kw, "ranking": False})


def test_attribute_names_checked_against_the_vocabulary():
    assert len(attribute_names("peta35")) == 35 and len(attribute_names("explanation")) == 57
    with pytest.raises(ValueError, match="notAnAttribute, hairTeal"):
        attribute_names(["personalMale", "notAnAttribute", "hairTeal"])
    with pytest.raises(ValueError, match="unknown attribute set 'peta61'"):
        attribute_names("peta61")
    with pytest.raises(ValueError, match="hairLong listed twice"):
        attribute_names(["hairLong", "hairLong"])


def test_attribute_layer_is_bias_free_on_the_normalised_embedding():
    layer = AttributeLayer(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    out = layer(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.6, 1.6], [0.0, 0.0]]))


def test_attribute_only_draws_are_seeded_and_distinct():
    a = attribute_only_indices(10, 4, 0, 3, 5)
    assert np.array_equal(a, attribute_only_indices(10, 4, 0, 3, 5)) and len(set(a)) == 4
    assert not np.array_equal(a, attribute_only_indices(10, 4, 0, 3, 6))
    assert len(attribute_only_indices(2, 4, 0, 0, 0)) == 2


def test_config_changes_name_the_differing_keys(tmp_path):
    a = asdict(_config(tmp_path))
    b = asdict(_config(tmp_path, name="other", attributes="{weight: 2.0, names: peta35}"))
    b["train"]["checkpoint_minutes"] = 9.0  # harmless
    assert config_changes(a, b) == ["attributes.attribute_only_batch", "attributes.names", "attributes.weight"]
    old = asdict(_config(tmp_path, attributes="{}"))
    del old["attributes"]  # a run started before the key existed
    assert config_changes(old, asdict(_config(tmp_path, attributes="{}"))) == []


def test_multitask_training_ships_its_attribute_layer(mini_peta, tmp_path):
    torch.set_num_threads(1)
    cfg = _config(tmp_path)
    model = train(cfg, mini_peta, progress=False)
    meta = torch.load(model, weights_only=True)["meta"]
    assert all(h["attr"] > 0 for h in meta["history"])
    assert meta["attribute_layer"]["names"] == NAMES
    assert meta["attribute_layer"]["never_positive_in_training"] == ["accessoryHat"]
    head = AttributeHead.load(model_head_path(model))  # the run's head beside its model file
    assert head.names == NAMES and head.weights.shape == (16, 4) and np.isfinite(head.weights).all()
    assert np.isfinite(head.positive_ratio).all() and head.positive_ratio[3] == 0
    np.testing.assert_allclose(head.weights, meta["attribute_layer"]["weights"].double().numpy(), rtol=1e-6)
    assert head.meta["never_positive_in_training"] == ["accessoryHat"]
    assert head.meta["train_images"] == 9  # the 8 identity images and the attribute-only CUHK crop
    embedder = load_embedder(model)
    head.check_model(embedder)  # tied to this model file
    assert head.model_fingerprint == embedder.fingerprint
    probs = head.predict(embedder.embed_arrays(np.zeros((2, 64, 32, 3), np.uint8)))
    assert probs.shape == (2, 4) and np.isfinite(probs).all()
    # the identity classes are the 4 train identities only: the attribute-only crop is not a class
    assert torch.load(cfg.run_dir / "last.pt", weights_only=True)["state_dict"]["classifier.weight"].shape[0] == 4


def test_cli_uses_the_models_own_head(mini_peta, tmp_path):
    from typer.testing import CliRunner

    from xreid.cli import app
    from xreid.workflows.loading import load_head

    torch.set_num_threads(1)
    model = train(_config(tmp_path, epochs=1), mini_peta, progress=False)
    assert load_head(str(model), None).names == NAMES
    runner = CliRunner()
    res = runner.invoke(app, ["attributes", "eval", "--model", str(model), "--data-root", str(mini_peta)])
    assert res.exit_code == 0, res.output
    assert "mA over 3 attributes" in res.output  # the protocol's 3 (the hat is not among them)
    head = AttributeHead.load(model_head_path(model))
    head.meta["never_positive_in_training"] = ["hairLong"]  # as if no training image had long hair
    head.save(model_head_path(model))
    res = runner.invoke(app, ["attributes", "eval", "--model", str(model), "--data-root", str(mini_peta)])
    assert res.exit_code == 0 and "mA over 2 attributes" in res.output, res.output
    res = runner.invoke(app, ["explain", "--model", str(model), "--data-root", str(mini_peta), "--protocol",
                              "peta-reid", "--test-set", "VIPeR", "--query-index", "1",
                              "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output


def test_multitask_resume_is_exact_and_refuses_a_changed_config(mini_peta, tmp_path):
    torch.set_num_threads(1)
    straight_cfg = _config(tmp_path, "straight")
    straight_cfg.train.swa_epochs = 1
    straight = train(straight_cfg, mini_peta, progress=False)
    cfg = _config(tmp_path, "resumed")
    cfg.train.swa_epochs = 1
    ckpt = train(cfg, mini_peta, progress=False, max_batches=3)
    assert "attribute_layer" in torch.load(ckpt, weights_only=True)
    changed = _config(tmp_path, "resumed", attributes="{weight: 0.5, names: peta35}")
    changed.train.swa_epochs = 1
    with pytest.raises(ValueError, match=r"attributes\.names, attributes\.weight"):
        train(changed, mini_peta, resume=True, progress=False)
    resumed = train(cfg, mini_peta, resume=True, progress=False)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], msg=k)
    torch.testing.assert_close(a["meta"]["attribute_layer"]["weights"], b["meta"]["attribute_layer"]["weights"])
    assert b["meta"]["averaged_epochs"] == 1  # the shipped layer is the averaged one, equal either way


def test_cli_train_reports_the_head_and_refuses_a_changed_resume(mini_peta, tmp_path):
    from typer.testing import CliRunner

    from xreid.cli import app

    torch.set_num_threads(1)
    cfg = _config(tmp_path, "cli", epochs=1)
    runner = CliRunner()
    args = ["train", "--config", str(tmp_path / "cli.yaml"), "--data-root", str(mini_peta)]
    res = runner.invoke(app, args + ["--max-batches", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, args + ["--resume"])
    assert res.exit_code == 0, res.output
    assert "attribute head (4 attributes) written to" in res.output
    assert "never positive in training (left out of mA): accessoryHat" in res.output
    text = (tmp_path / "cli.yaml").read_text().replace("attribute_only_batch: 2", "attribute_only_batch: 3")
    (tmp_path / "cli.yaml").write_text(text)
    (cfg.run_dir / "model.pt").unlink()
    res = runner.invoke(app, args + ["--resume"])
    assert res.exit_code == 2 and "attributes.attribute_only_batch" in res.output, res.output


def test_vocabulary_mismatch_is_a_clear_error(mini_peta, tmp_path):
    cfg = _config(tmp_path, attributes="{weight: 1.0, names: [personalMale, personalTall]}")
    with pytest.raises(ValueError, match="personalTall"):
        train(cfg, mini_peta, progress=False)


def test_attribute_only_crops_feed_the_mimic_loss(mini_peta, tmp_path):
    torch.set_num_threads(1)
    cfg = _config(tmp_path, "mimic", epochs=1)
    cfg.train.distill.teacher, cfg.train.distill.feature_weight = "not-loaded-when-cached.xml", 1.0
    cfg.run_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(cfg.run_dir / "teacher_features.npy", rng.normal(size=(8, 16)).astype(np.float32))
    # the one attribute-only crop of mini_peta in training: its teacher embedding is cached beside
    np.save(cfg.run_dir / "teacher_features_attribute_only.npy", rng.normal(size=(1, 16)).astype(np.float32))
    model = train(cfg, mini_peta, progress=False)
    history = torch.load(model, weights_only=True)["meta"]["history"]
    assert history[0]["mimic"] > 0 and history[0]["attr"] > 0
