"""On-the-fly teacher targets for the augmented view, attribute-only crops in the mimic loss of a
run without an attribute loss, blur / scale augmentation."""

import textwrap

import numpy as np
import pytest
import torch

from conftest import assert_same_weights, tiny_aanet_config
from xreid.data.dataset import to_tensor
from xreid.models.embedders import OMZ_PREPROCESS, Preprocess
from xreid.training.config import load_config
from xreid.training.teacher import augmented_targets, sample_indices, teacher_inputs
from xreid.training.trainer import train


def _config(tmp_path, name="gen", epochs=1, extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        output_dir: {tmp_path / 'runs'}
        model: {{backbone: mobilenetv2, input_size: [64, 32], freeze_stages: 3, embedding_dim: 6}}
        train: {{epochs: {epochs}, id_warm_epochs: 1, p: 2, k: 2, warmup_epochs: 1, checkpoint_minutes: 0.0}}
        {extra}
    """))
    return load_config(path)


def test_teacher_inputs_by_hand():
    """A 1 x 2 RGB image in [0, 1] at the teacher's size: BGR, x 255, N x 3 x H x W."""
    img = torch.tensor([[[[0.0, 1.0]], [[0.5, 0.25]], [[1.0, 0.0]]]])  # 1 x 3 x 1 x 2 (R, G, B planes)
    pre = Preprocess(height=1, width=2, channel_order="bgr", scale=1.0)
    x = teacher_inputs(img, pre)
    assert x.shape == (1, 3, 1, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [255.0, 127.5, 0.0])  # B, G, R of the left pixel
    np.testing.assert_allclose(x[0, :, 0, 1], [0.0, 63.75, 255.0])


def test_teacher_inputs_match_the_teachers_own_preprocessing():
    """A uint8 crop at the teacher's size gives exactly the input ``embed_arrays`` would build; a
    smaller student crop is resized up to 256 x 128."""
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (1, 256, 128, 3), dtype=np.uint8)
    np.testing.assert_allclose(teacher_inputs(to_tensor(crop), OMZ_PREPROCESS), OMZ_PREPROCESS.apply(crop), atol=1e-3)
    small = to_tensor(rng.integers(0, 256, (2, 224, 112, 3), dtype=np.uint8))
    assert teacher_inputs(small, OMZ_PREPROCESS).shape == (2, 3, 256, 128)


class FakeTeacher:
    """A deterministic 'teacher': mean colour of each channel and their pairwise differences (6-d)."""

    preprocess = Preprocess(height=16, width=8, channel_order="bgr", scale=1.0)
    name, backend, precision, fingerprint = "fake", "numpy", None, None
    calls: list = []

    def embed_inputs(self, x):
        FakeTeacher.calls.append(len(x))
        m = x.mean((2, 3))
        return np.concatenate([m, m[:, [0]] - m[:, [1]], m[:, [1]] - m[:, [2]], m[:, [0]] - m[:, [2]]], 1) + 1.0

    def embed_arrays(self, imgs):
        return self.embed_inputs(self.preprocess.apply(np.stack([np.asarray(i) for i in imgs])))


def test_augmented_targets_are_centred_and_normalised_by_hand():
    img = torch.zeros(1, 3, 16, 8)
    img[:, 0] = 1.0  # pure red: BGR means (0, 0, 255)
    raw = np.array([[0.0, 0.0, 255.0, 0.0, -255.0, -255.0]]) + 1.0
    raw /= np.linalg.norm(raw)
    mean = np.full((1, 6), 0.1)
    want = (raw - mean) / np.linalg.norm(raw - mean)
    got = augmented_targets(FakeTeacher(), img, mean)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_a_concatenated_teacher_embeds_the_batch_with_each_part_by_hand():
    from xreid.models.concat import ConcatEmbedder

    class Wide(FakeTeacher):
        preprocess = Preprocess(height=32, width=16, channel_order="bgr", scale=1.0)

    img = torch.zeros(1, 3, 16, 8)
    img[:, 0] = 1.0  # pure red at both sizes: each part's raw vector is (0, 0, 255, 0, -255, -255) + 1
    part = np.array([[1.0, 1.0, 256.0, 1.0, -254.0, -254.0]])
    part /= np.linalg.norm(part)
    raw = np.concatenate([part, part], 1) / np.sqrt(2.0)  # two unit parts joined, then normalised
    mean = np.zeros((1, 12))
    got = augmented_targets(ConcatEmbedder([FakeTeacher(), Wide()]), img, mean)
    np.testing.assert_allclose(got.numpy(), raw, rtol=1e-5)


def test_sample_indices_are_evenly_spaced():
    assert sample_indices(3, 5).tolist() == [0, 1, 2]
    assert sample_indices(9, 3).tolist() == [0, 4, 8]


def test_augmented_targets_train_and_resume_exactly(mini_peta, tmp_path, monkeypatch):
    """``train.distill.targets: augmented``: the teacher runs once per batch on exactly the batch the
    student sees (identity + attribute-only crops), the mimic loss is logged, and a resumed run equals
    an uninterrupted one."""
    import xreid.models.loading as loading

    torch.set_num_threads(1)
    monkeypatch.setattr(loading, "load_embedder", lambda spec, precision=None: FakeTeacher())
    cfg = _config(tmp_path, "straight", epochs=2)
    cfg.train.distill.teacher, cfg.train.distill.feature_weight = "fake.xml", 1.0
    cfg.train.distill.targets, cfg.train.distill.attribute_only_batch = "augmented", 4
    cfg.train.color_jitter, cfg.train.blur_prob, cfg.train.scale_jitter = 0.2, 0.5, 0.1
    FakeTeacher.calls.clear()
    straight = train(cfg, mini_peta, progress=False)
    # the clean-crop sample for the centre (8 train images, mirror averaged: 2 calls), then per batch
    # 2 x 2 identity crops + the single attribute-only crop of mini_peta's training share
    assert FakeTeacher.calls[:2] == [8, 8] and set(FakeTeacher.calls[2:]) == {5}
    history = torch.load(straight, weights_only=True)["meta"]["history"]
    assert all(h["mimic"] > 0 for h in history)
    resumed_cfg = _config(tmp_path, "resumed", epochs=2)
    resumed_cfg.train = cfg.train
    train(resumed_cfg, mini_peta, progress=False, max_batches=3)
    resumed = train(resumed_cfg, mini_peta, resume=True, progress=False)
    assert_same_weights(straight, resumed)


def test_attribute_only_crops_join_a_mimic_only_run(mini_peta, tmp_path, monkeypatch):
    """Without an attribute loss, ``distill.attribute_only_batch`` adds attribute-only crops (label -1)
    to each batch for the mimic loss alone; with clean targets their cached embeddings are used."""
    import xreid.training.trainer as trainer

    torch.set_num_threads(1)
    cfg = _config(tmp_path, "ao")
    cfg.train.distill.teacher, cfg.train.distill.feature_weight = "not-loaded-when-cached.xml", 1.0
    cfg.train.distill.attribute_only_batch = 4
    cfg.run_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(cfg.run_dir / "teacher_features.npy", rng.normal(size=(8, 6)).astype(np.float32))
    np.save(cfg.run_dir / "teacher_features_attribute_only.npy", rng.normal(size=(1, 6)).astype(np.float32))
    seen = []
    original = trainer.feature_distillation_loss
    monkeypatch.setattr(trainer, "feature_distillation_loss", lambda s, t: seen.append(len(t)) or original(s, t))
    train(cfg, mini_peta, progress=False)
    assert seen and set(seen) == {5}  # 4 identity crops + 1 attribute-only crop in every batch


def test_bad_target_mode_is_named(mini_peta, tmp_path):
    cfg = _config(tmp_path, "bad")
    cfg.train.distill.targets = "noisy"
    with pytest.raises(ValueError, match="targets must be 'clean' or 'augmented'"):
        train(cfg, mini_peta, progress=False)


def test_blur_and_scale_keep_shape_and_change_pixels():
    from xreid.data.transforms import BatchAugment

    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 16)
    plain = BatchAugment((32, 16), pad=0, flip=False)
    assert torch.equal(plain(x, 0.0), x)
    out = BatchAugment((32, 16), pad=0, flip=False, blur=1.0, scale=0.2)(x, 0.0)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert out.std() < x.std()  # blur smooths the noise


def test_aanet_global_descriptor_is_compact_and_trains(mini_peta, tmp_path):
    """``model.aanet_descriptor: global``: the model ranks with its global branch's V vector (V-d, not
    12 x V), the attribute layer (the model's head) sits on it, the other branches still train, and a
    spec without the key stays the paper's 12 x V descriptor."""
    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.aanet import aanet_extra, ranking_descriptor
    from xreid.models.loading import load_embedder, model_head_path
    from xreid.models.networks import build_model
    from xreid.models.reid_net import ModelSpec

    assert "descriptor" not in aanet_extra(["hairLong"], 8)
    with pytest.raises(ValueError, match="descriptor 'parts'"):
        aanet_extra(["hairLong"], 8, "parts")
    spec = ModelSpec(input_size=(96, 32), last_stride=1, num_classes=3, head="aanet",
                     extra=aanet_extra(["hairLong", "upperBodyRed"], hidden=8, descriptor="global"))
    net = build_model(spec).eval()
    images = torch.rand(2, 3, 96, 32)
    assert net.embedding_dim == 8 and net(images).shape == (2, 8)
    out = net.heads(net.feature_map(images))
    torch.testing.assert_close(net(images), ranking_descriptor(out, "global"))
    torch.testing.assert_close(ranking_descriptor(out, "global"), out["global_bn"])
    assert ranking_descriptor(out).shape == (2, 12 * 8)

    torch.set_num_threads(1)
    path = tiny_aanet_config(tmp_path, "g", "aanet_descriptor: global", "epochs: 1")
    model = train(load_config(path), mini_peta, progress=False)
    meta = torch.load(model, weights_only=True)["meta"]
    assert {"global", "part", "attr_branch", "aam", "attr"} <= set(meta["history"][0])
    assert AttributeHead.load(model_head_path(model)).weights.shape == (8, 3)
    crops = np.random.default_rng(0).integers(0, 255, size=(2, 96, 32, 3), dtype=np.uint8)
    assert load_embedder(model).embed_arrays(crops).shape == (2, 8)


def test_ibn_normalises_half_by_instance_half_by_batch():
    """By hand: with unit weight and zero bias, the first half of the channels has zero mean / unit
    variance per image and channel, the second half per channel over the batch (as BatchNorm2d), and
    only the second half's running statistics move."""
    from torch import nn

    from xreid.models.backbones import IBN

    torch.manual_seed(0)
    x = torch.randn(4, 6, 5, 3) * 3 + torch.arange(4.0).view(4, 1, 1, 1)
    ibn, bn = IBN(6), nn.BatchNorm2d(3)
    y = ibn.train()(x)
    first = y[:, :3]
    torch.testing.assert_close(first.mean((2, 3)), torch.zeros(4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(first.var((2, 3), unbiased=False), torch.ones(4, 3), atol=1e-3, rtol=0)
    torch.testing.assert_close(y[:, 3:], bn.train()(x[:, 3:]))
    torch.testing.assert_close(ibn.running_mean[3:], bn.running_mean)
    assert torch.equal(ibn.running_mean[:3], torch.zeros(3)) and int(ibn.num_batches_tracked) == 1
    ibn.eval()
    torch.testing.assert_close(ibn(x)[:, 3:], bn.eval()(x[:, 3:]))
    torch.testing.assert_close(ibn(x)[:, :3].mean((2, 3)), torch.zeros(4, 3), atol=1e-5, rtol=0)
    # momentum None (the cumulative average weight averaging re-estimates with): every batch weighs the same
    ibn, bn = IBN(6), nn.BatchNorm2d(3)
    ibn.momentum = bn.momentum = None
    ibn.train()(x[:2]), ibn(x[2:]), bn.train()(x[:2, 3:]), bn(x[2:, 3:])
    torch.testing.assert_close(ibn.running_mean[3:], bn.running_mean)
    torch.testing.assert_close(ibn.running_var[3:], bn.running_var)


def test_ibn_backbone_loads_imagenet_weights_and_trains(mini_peta, tmp_path):
    """``model.backbone: mobilenetv2_ibn`` loads the bundled ImageNet weights (same keys), puts IBN in the
    blocks at 1/4-1/16 resolution only, trains and ships a model the CLI's runtime embeds with."""
    from xreid.models.backbones import IBN, mobilenetv2, mobilenetv2_ibn
    from xreid.models.loading import load_embedder

    net, plain = mobilenetv2_ibn(), mobilenetv2()
    ibns = [i for i, block in enumerate(net.features) if any(isinstance(m, IBN) for m in block.modules())]
    assert ibns == list(range(2, 18))
    torch.testing.assert_close(net.state_dict()["features.5.conv.1.weight"], plain.state_dict()["features.5.conv.1.weight"])
    torch.set_num_threads(1)
    cfg = _config(tmp_path, "ibn")
    cfg.model.backbone = "mobilenetv2_ibn"
    model = train(cfg, mini_peta, progress=False)
    crops = np.random.default_rng(0).integers(0, 255, size=(2, 64, 32, 3), dtype=np.uint8)
    a = load_embedder(model).embed_arrays(crops)
    b = load_embedder(model, backend="torch").embed_arrays(crops)
    assert a.shape == (2, 6)
    np.testing.assert_allclose(a, b, atol=2e-3, rtol=2e-3)
