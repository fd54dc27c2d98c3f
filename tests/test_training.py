import math
import textwrap

import numpy as np
import pytest
import torch

from conftest import assert_same_weights
from xreid.data.dataset import IdentitySampler
from xreid.data.transforms import BatchAugment, cutout_noise, curriculum_fraction
from xreid.models.backbones import mobilenetv2
from xreid.models.loading import load_embedder
from xreid.training.config import load_config
from xreid.training.averaging import accumulate_average, recompute_batchnorm
from xreid.training.trainer import learning_rate, train


def _config(tmp_path, name="mini", epochs=2, extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        output_dir: {tmp_path / 'runs'}
        model: {{backbone: mobilenetv2, input_size: [64, 32], freeze_stages: 3}}
        train: {{epochs: {epochs}, id_warm_epochs: 1, p: 2, k: 2, warmup_epochs: 1, checkpoint_minutes: 0.0}}
        {extra}
    """))
    return load_config(path)


def test_config_rejects_unknown_keys(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: {backbone: mobilenetv2, colour: red}\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_config(tmp_path / "bad.yaml")


def test_imagenet_weights_load():
    net = mobilenetv2(pretrained=True)
    assert net.features[0][1].running_var.abs().sum() > 0  # BN statistics came from the file


def test_sampler_is_p_by_k_and_deterministic():
    labels = np.repeat(np.arange(5), [1, 2, 3, 4, 5])
    s = IdentitySampler(labels, p=3, k=2, seed=1)
    batches = list(s.epoch(0))
    assert batches == list(IdentitySampler(labels, p=3, k=2, seed=1).epoch(0))
    for b in batches:
        ids = labels[b]
        assert len(b) == 6 and len(set(ids)) == 3 and all((ids == i).sum() == 2 for i in set(ids))


def test_cutout_curriculum():
    assert curriculum_fraction(0, 10, 0.05, 0.3) == pytest.approx(0.05)
    assert curriculum_fraction(9, 10, 0.05, 0.3) == pytest.approx(0.3)
    x = torch.zeros(16, 3, 20, 10)
    out = cutout_noise(x, 0.25, prob=1.0, generator=torch.Generator().manual_seed(0))
    changed = (out != 0).flatten(1).float().mean(1)
    assert (changed > 0).all() and (changed <= 0.25 + 1e-6).all()


def test_colour_jitter_changes_intensity_not_geometry():
    torch.manual_seed(0)
    x = torch.full((32, 3, 20, 10), 0.5)
    x[:, 0, :10] = 0.8  # a red upper half: geometry would move it, jitter only rescales values
    plain = BatchAugment((20, 10), pad=0, flip=False, color=0.0)
    assert torch.equal(plain(x, 0.0), x)
    out = BatchAugment((20, 10), pad=0, flip=False, color=0.4)(x, 0.0)
    assert out.min() >= 0 and out.max() <= 1
    shift = out.flatten(1).mean(1) - x.flatten(1).mean(1)
    assert shift.abs().max() > 0.02  # some images got brighter or darker
    # rows within each half stay uniform: no pixel moved
    assert torch.allclose(out[:, :, :10], out[:, :, :1].expand(-1, -1, 10, -1), atol=1e-5)
    assert torch.allclose(out[:, :, 10:], out[:, :, 10:11].expand(-1, -1, 10, -1), atol=1e-5)


def test_learning_rate_schedule(tmp_path):
    cfg = _config(tmp_path, epochs=10)
    assert learning_rate(cfg, 0.0) == pytest.approx(0.1 * cfg.train.lr)
    assert learning_rate(cfg, 1.0) == pytest.approx(cfg.train.lr)
    assert learning_rate(cfg, 10.0) == pytest.approx(0.01 * cfg.train.lr)


def test_learning_rate_mid_warmup_and_mid_cosine(tmp_path):
    cfg = _config(tmp_path, epochs=10)  # warmup 1 epoch, then cosine over the 9 others
    lr = cfg.train.lr
    assert learning_rate(cfg, 0.5) == pytest.approx((0.1 + 0.9 * 0.5) * lr)  # linear warmup: 0.55 lr
    # half-way through the cosine (epoch 1 + 4.5): cos(pi / 2) = 0 -> 0.01 + 0.99 / 2 = 0.505 lr
    assert learning_rate(cfg, 5.5) == pytest.approx(0.505 * lr)
    # a quarter of the way (epoch 1 + 2.25): cos(pi / 4) = sqrt(2) / 2 -> 0.01 + 0.99 (1 + 0.7071) / 2
    assert learning_rate(cfg, 3.25) == pytest.approx((0.01 + 0.99 * (1 + math.sqrt(0.5)) / 2) * lr)
    # three quarters: 0.01 + 0.99 (1 - 0.7071) / 2 (a linear decay would give 0.2575 lr here)
    assert learning_rate(cfg, 7.75) == pytest.approx((0.01 + 0.99 * (1 - math.sqrt(0.5)) / 2) * lr)


def test_train_interrupt_and_resume_matches_uninterrupted(mini_peta, tmp_path):
    torch.set_num_threads(1)
    straight = train(_config(tmp_path, "straight"), mini_peta, progress=False)
    cfg = _config(tmp_path, "resumed")
    ckpt = train(cfg, mini_peta, progress=False, max_batches=3)  # stops mid-run (epoch 2, batch 1)
    assert ckpt.name == "last.pt" and torch.load(ckpt, weights_only=True)["epoch"] == 1
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, mini_peta, progress=False)
    resumed = train(cfg, mini_peta, resume=True, progress=False)
    assert_same_weights(straight, resumed)
    emb = load_embedder(resumed)
    assert emb.preprocess.size == (64, 32)
    assert emb.embed_arrays(np.zeros((2, 64, 32, 3), np.uint8)).shape == (2, 1280)


def test_style_mixing_trains_and_resumes_exactly(mini_peta, tmp_path, monkeypatch):
    """train.style_mix mixes in the training passes (counted), never in the batch-norm re-estimation
    or the saved model, and a resumed run mixes exactly as an uninterrupted one."""
    import xreid.training.style_mix as style_mix

    calls = []
    real = style_mix.mix_styles
    monkeypatch.setattr(style_mix, "mix_styles", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.set_num_threads(1)
    straight_cfg = _config(tmp_path, "mix_straight")
    straight_cfg.train.style_mix, straight_cfg.train.swa_epochs = 1.0, 1
    straight = train(straight_cfg, mini_peta, progress=False)
    assert len(calls) > 0
    cfg = _config(tmp_path, "mix_resumed")
    cfg.train.style_mix, cfg.train.swa_epochs = 1.0, 1
    train(cfg, mini_peta, progress=False, max_batches=3)
    resumed = train(cfg, mini_peta, resume=True, progress=False)
    assert_same_weights(straight, resumed)
    n = len(calls)
    load_embedder(resumed).embed_arrays(np.zeros((2, 64, 32, 3), np.uint8))
    assert len(calls) == n  # the saved model never mixes


def test_feature_distillation_trains_towards_cached_teacher(mini_peta, tmp_path):
    """The teacher's features come from the run's cache (8 train images, 16-d); the student's
    embedding must have the teacher's size, and the mimic loss is logged per epoch; ``id_weight``
    scales (here: switches off) the cross-entropy term."""
    torch.set_num_threads(1)
    cfg = _config(tmp_path, "mimic", epochs=2)
    cfg.train.distill.teacher, cfg.train.distill.feature_weight = "not-loaded-when-cached.xml", 1.0
    cfg.run_dir.mkdir(parents=True)
    np.save(cfg.run_dir / "teacher_features.npy", np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32))
    with pytest.raises(ValueError, match="embedding_dim to 16"):
        train(cfg, mini_peta, progress=False)
    cfg.model.embedding_dim, cfg.train.id_weight = 16, 0.0
    model = train(cfg, mini_peta, progress=False)
    history = torch.load(model, weights_only=True)["meta"]["history"]
    assert [("mimic" in h) for h in history] == [True, True]
    assert [h["id"] for h in history] == [0.0, 0.0] and all(h["mimic"] > 0 for h in history)
    assert load_embedder(model).embed_arrays(np.zeros((1, 64, 32, 3), np.uint8)).shape == (1, 16)


def test_teacher_embeddings_resume_after_interruption(tmp_path, monkeypatch):
    """An interrupted teacher stage keeps the batches saved in its partial file; the rerun embeds
    only the rest and gives exactly the uninterrupted result."""
    from types import SimpleNamespace

    import xreid.models.loading as loading
    from xreid.training.trainer import teacher_embeddings

    calls = []

    class Teacher:
        preprocess = SimpleNamespace(size=(8, 4))

        def embed_arrays(self, imgs, fail_after=None):
            calls.append(len(imgs))
            if fail_after is not None and len(calls) > fail_after:
                raise KeyboardInterrupt
            return np.stack([im.astype(np.float32).reshape(-1)[:6] + np.arange(6) for im in imgs])

    cfg = _config(tmp_path, "teacher")
    cfg.train.distill.teacher, cfg.train.distill.feature_weight = "fake.xml", 1.0
    images = np.random.default_rng(0).integers(0, 255, size=(64 * 5 + 7, 8, 4, 3), dtype=np.uint8)
    monkeypatch.setattr(loading, "load_embedder", lambda spec, precision=None: Teacher())
    whole = teacher_embeddings(cfg, images, tmp_path / "whole.npy", save_every=2)
    assert whole.shape == (len(images), 6) and len(calls) == 2 * 6

    class Interrupted(Teacher):
        def embed_arrays(self, imgs):
            return super().embed_arrays(imgs, fail_after=2 * 3)  # dies in the 4th batch

    calls.clear()
    monkeypatch.setattr(loading, "load_embedder", lambda spec, precision=None: Interrupted())
    with pytest.raises(KeyboardInterrupt):
        teacher_embeddings(cfg, images, tmp_path / "cut.npy", save_every=2)
    assert len(np.load(tmp_path / "cut.partial.npy")) == 2 * 64 and not (tmp_path / "cut.npy").exists()
    calls.clear()
    monkeypatch.setattr(loading, "load_embedder", lambda spec, precision=None: Teacher())
    resumed = teacher_embeddings(cfg, images, tmp_path / "cut.npy", save_every=2)
    assert len(calls) == 2 * 4  # batches 3-6 only
    np.testing.assert_array_equal(resumed, whole)
    assert not (tmp_path / "cut.partial.npy").exists()


def test_committed_config_is_the_bundled_models_recipe():
    """`xreid train --config configs/peta_mobilenetv2_aanet_default.yaml` must reproduce the bundled model:
    its training config (stored in the model file) equals the committed one, apart from the run name, and
    the file ranks with the projection its compact section fits."""
    from dataclasses import asdict
    from pathlib import Path

    from xreid.training.config import config_from_dict

    root = Path(__file__).resolve().parents[1]
    committed = asdict(load_config(root / "configs" / "peta_mobilenetv2_aanet_default.yaml"))
    bundled = torch.load(root / "src" / "xreid" / "weights" / "default.pt", weights_only=True)
    used = asdict(config_from_dict(bundled["meta"]["config"], "default.pt meta"))  # defaults fill new keys
    for cfg in (committed, used):
        cfg.pop("name")
    assert used == committed
    fitted, extra = bundled["meta"]["projection"], bundled["spec"]["extra"]
    assert (fitted["dims"], fitted["descriptor"], fitted["branch_weight"], fitted["fit_crops"]) == (
        committed["compact"]["dim"], committed["compact"]["descriptor"], committed["compact"]["branch_weight"],
        committed["compact"]["fit_crops"])
    assert (extra["projection"], extra["descriptor"]) == (fitted["dims"], fitted["descriptor"])


def test_weight_average_is_the_mean_of_snapshots():
    net = torch.nn.Linear(2, 1)
    snapshots = [1.0, 2.0, 6.0]
    average = None
    for count, value in enumerate(snapshots):
        with torch.no_grad():
            net.weight.fill_(value)
        average = accumulate_average(average, net, count)
    torch.testing.assert_close(average["weight"], torch.full((1, 2), 3.0))


def test_batchnorm_recompute_is_exact_and_spares_frozen_layers():
    frozen, trained = torch.nn.BatchNorm1d(1), torch.nn.BatchNorm1d(1)
    frozen.running_mean.fill_(7.0)

    class Net(torch.nn.Sequential):
        def train(self, mode=True):  # like a backbone with frozen stages
            super().train(mode)
            self[0].eval()
            return self

    net = Net(frozen, trained)
    batches = [torch.tensor([[1.0], [3.0]]), torch.tensor([[5.0], [7.0]])]
    # the frozen layer normalises with its own statistics: (x - 7) / sqrt(1 + eps)
    assert recompute_batchnorm(net, batches) == 4
    assert frozen.running_mean.item() == 7.0
    # batches of equal size weigh the same: mean of x - 7 over 1, 3, 5, 7
    assert trained.running_mean.item() == pytest.approx(4.0 - 7.0, abs=1e-4)
    assert not net.training


def test_swa_epochs_run_at_constant_rate_and_resume_exactly(mini_peta, tmp_path):
    torch.set_num_threads(1)
    cfg = _config(tmp_path, "swa_straight", epochs=2)
    cfg.train.swa_epochs, cfg.train.swa_lr = 2, 0.5
    assert learning_rate(cfg, 2.0) == learning_rate(cfg, 3.5) == pytest.approx(0.5 * cfg.train.lr)
    straight = train(cfg, mini_peta, progress=False)
    meta = torch.load(straight, weights_only=True)["meta"]
    assert meta["averaged_epochs"] == 2 and len(meta["history"]) == 4
    resumed_cfg = _config(tmp_path, "swa_resumed", epochs=2)
    resumed_cfg.train.swa_epochs, resumed_cfg.train.swa_lr = 2, 0.5
    per_epoch = len(list(IdentitySampler(np.repeat(np.arange(4), 2), 2, 2).epoch(0)))
    ckpt = train(resumed_cfg, mini_peta, progress=False, max_batches=3 * per_epoch + 1)
    state = torch.load(ckpt, weights_only=True)  # stopped inside the second averaging epoch
    assert (state["epoch"], state["batch"], state["averaged"]) == (3, 1, 1)
    resumed = train(resumed_cfg, mini_peta, resume=True, progress=False)
    assert_same_weights(straight, resumed)


def test_exclude_subsets_leaves_the_named_cameras_out():
    from xreid.data.protocol import without_subsets
    from xreid.data.records import ImageRecord

    recs = [ImageRecord(path=p, pid=p.split("/")[0]) for p in ("VIPeR/a.bmp", "3DPeS/b.bmp", "PRID/c.png")]
    assert [r.path for r in without_subsets(recs, ["VIPeR", "PRID"])] == ["3DPeS/b.bmp"]
    with pytest.raises(ValueError, match="GRID.*3DPeS, PRID, VIPeR"):
        without_subsets(recs, ["GRID"])
