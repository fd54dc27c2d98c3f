"""The compact projection (docs/METHODS.md#compact-projection): the PCA by hand, the seeded sample of
fit crops, a projected AANet in a model file (exported, for any batch), and `xreid train`'s compact
section end to end, applied to a finished run on resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xreid.training.projection import attribute_first_projection, constant_row, fit_sample, pca_projection


def test_pca_projection_by_hand():
    """Centred points (-2,-2), (2,2), (-1,1), (1,-1): scatter [[10, 6], [6, 10]], eigenvalues 16 along
    (1, 1) / sqrt 2 and 4 along (1, -1) / sqrt 2; each direction's largest coordinate (the first on a
    tie) positive."""
    x = np.array([[0.0, 0.0], [4.0, 4.0], [1.0, 3.0], [3.0, 1.0]])
    w, mean = pca_projection(x, 2)
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(w, [[r, r], [r, -r]], atol=1e-12)
    w1, _ = pca_projection(-x[:, ::-1], 1)  # the sign rule, not the data's orientation, sets the sign
    np.testing.assert_allclose(w1, [[r, r]], atol=1e-12)
    np.testing.assert_allclose(w[:1] @ (np.array([4.0, 4.0]) - mean), [2 * math.sqrt(2)])
    for bad in (0, 3):
        with pytest.raises(ValueError, match="cannot project"):
            pca_projection(x, bad)
    with pytest.raises(ValueError, match="at least 2"):
        pca_projection(x[:1], 1)


def test_attribute_directions_come_first_and_the_rest_is_the_pca_outside_them():
    """3-d points, mean 0; the attribute direction e1. With e1 removed, the points' scatter is 16 along
    (0, 1, 1) / sqrt 2 and 4 along (0, 1, -1) / sqrt 2: W = [e1; (0, 1, 1) / sqrt 2]. Dependent
    directions (e1 twice, at other lengths) give the same W: an orthonormal basis of their span."""
    x = np.array([[5.0, 0.0, 0.0], [-5.0, 2.0, 2.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [0.0, -2.0, -2.0]])
    w, mean = attribute_first_projection(x, 2, np.array([[1.0], [0.0], [0.0]]))
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(mean, [0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(w, [[1, 0, 0], [0, r, r]], atol=1e-12)
    twice, _ = attribute_first_projection(x, 2, np.array([[0.5, -2.0], [0.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(np.abs(twice), [[1, 0, 0], [0, r, r]], atol=1e-12)
    with pytest.raises(ValueError, match="no room"):
        attribute_first_projection(x, 1, np.array([[1.0], [0.0], [0.0]]))
    # the constant dimension: offset x the median norm of the projected rows (norms 3, 4, 5 -> median 4)
    assert constant_row(np.array([[3.0, 0.0], [0.0, 4.0], [3.0, 4.0]]), 0.5) == 2.0


def test_fit_sample_is_seeded_sorted_and_whole_when_small():
    assert fit_sample(4, 10) == [0, 1, 2, 3]
    a = fit_sample(100, 10, seed=3)
    assert a == fit_sample(100, 10, seed=3) and a == sorted(a) and len(set(a)) == 10
    assert a != fit_sample(100, 10, seed=4)


def test_a_projected_aanet_embeds_exports_and_refuses_a_second_projection(tmp_path, mini_peta):
    from xreid.data.protocol import load_protocol
    from xreid.models.aanet import aanet_extra, balanced_descriptor
    from xreid.models.checkpoint import load_model_file, save_model_file
    from xreid.models.embedders import CompiledEmbedder
    from xreid.models.loading import load_embedder
    from xreid.models.networks import build_model
    from xreid.models.reid_net import ModelSpec
    from xreid.training.projection import project_model

    torch.manual_seed(0)
    spec = ModelSpec(input_size=(96, 32), last_stride=1, head="aanet",
                     extra=aanet_extra(["hairLong", "upperBodyRed", "personalMale"], hidden=8, descriptor="global"))
    net = build_model(spec).eval()
    save_model_file(net, net.spec, tmp_path / "g.pt", {"attribute_layer": {"names": []}, "note": "kept"})
    proto = load_protocol("peta-reid", mini_peta)
    fitted = project_model(tmp_path / "g.pt", proto.train, proto.image_root, tmp_path / "p.pt", dims=5,
                           fit_crops=6, progress=False)
    assert fitted["fit_crops"] == 6 and fitted["dims"] == 5 and fitted["descriptor"] == "balanced"
    projected, content = load_model_file(tmp_path / "p.pt")
    assert projected.embedding_dim == 5 and projected.descriptor_branches() == {"all": slice(0, 5)}
    assert content["meta"]["note"] == "kept" and "attribute_layer" not in content["meta"]
    assert content["meta"]["projection"]["seed"] == 0
    # the stored layer is the PCA of the balanced descriptor on the same crops
    from xreid.models.embedders import TorchEmbedder
    from xreid.training.projection import projected_spec

    source, _ = load_model_file(tmp_path / "g.pt")
    full = build_model(projected_spec(source.spec, "balanced", 1.0, 0))
    full.load_state_dict(source.state_dict())
    paths = [proto.image_root / r.path for r in proto.train]
    balanced = TorchEmbedder(full.eval()).embed_paths(paths).features.astype(np.float64)
    got = TorchEmbedder(projected).embed_paths(paths).features
    w, mean = pca_projection(balanced[fit_sample(len(paths), 6)], 5)
    np.testing.assert_allclose(got, (balanced - mean) @ w.T, atol=2e-2)  # fp16 weights in the file
    torch_embedder = load_embedder(tmp_path / "p.pt", backend="torch")
    compiled = load_embedder(tmp_path / "p.pt")
    assert isinstance(compiled, CompiledEmbedder), "the projected AANet did not export; it ran in PyTorch"
    crops = np.random.default_rng(0).integers(0, 255, size=(3, 96, 32, 3), dtype=np.uint8)
    x = torch_embedder.embed_arrays(crops)
    assert x.shape == (3, 5)
    for batch in (crops, crops[:1]):
        np.testing.assert_allclose(compiled.embed_arrays(batch), x[:len(batch)], atol=1e-3, rtol=1e-3)
    # attribute directions first and a constant last dimension
    fitted = project_model(tmp_path / "g.pt", proto.train, proto.image_root, tmp_path / "a.pt", dims=5,
                           fit_crops=6, attribute_records=proto.train, attribute_names=["personalMale", "hairLong"],
                           offset=0.5, progress=False)
    assert fitted["attribute_directions"] in (1, 2) and fitted["offset"] == 0.5  # the labels may tie the two
    layer = load_model_file(tmp_path / "a.pt")[0].projection
    rows = layer.weight.detach().double().numpy()
    np.testing.assert_allclose(rows[:4] @ rows[:4].T, np.eye(4), atol=2e-3)  # orthonormal (fp16 in the file)
    assert not rows[4].any() and float(layer.bias[4]) == pytest.approx(fitted["constant"], rel=1e-3)
    with pytest.raises(ValueError, match="already projected"):
        project_model(tmp_path / "p.pt", proto.train, proto.image_root, tmp_path / "q.pt", dims=3, progress=False)
    with pytest.raises(ValueError, match="projection to 99 dimensions"):
        build_model(ModelSpec(input_size=(96, 32), last_stride=1, head="aanet",
                              extra=aanet_extra(["hairLong"], hidden=8, descriptor="global", projection=99)))


def test_train_projects_after_training_and_again_when_a_finished_run_resumes(tmp_path, mini_peta):
    """A config's compact section: model.pt ranks with the projected descriptor and its head reads that
    embedding; the trained network and its multi-task head stay beside it (model_full*); a finished run
    resumed with another compact section rebuilds the same network and projects it anew; a section the
    run cannot apply is refused before training."""
    from conftest import assert_same_weights, tiny_aanet_config

    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.checkpoint import load_model_file
    from xreid.workflows.train import train_model

    torch.set_num_threads(1)
    config = tiny_aanet_config(tmp_path, "compact", "aanet_descriptor: global", "epochs: 2, swa_epochs: 1",
                               "compact: {dim: 4, fit_crops: 6, attribute_directions: true, offset: 0.3}")
    report = train_model(config, mini_peta)
    run = tmp_path / "runs" / "compact"
    assert report.model == run / "model.pt" and report.projection["dims"] == 4
    assert 1 <= report.projection["attribute_directions"] <= 3 and report.projection["offset"] == 0.3
    net, content = load_model_file(run / "model.pt")
    assert net.embedding_dim == 4 and content["meta"]["config"]["compact"]["dim"] == 4
    assert load_model_file(run / "model_full.pt")[0].embedding_dim == 8  # trained ranking with its global branch
    assert AttributeHead.load(run / "model_head.npz").weights.shape == (4, 3)
    assert AttributeHead.load(run / "model_full_head.npz").weights.shape == (8, 3)
    first = tmp_path / "first_full.pt"
    first.write_bytes((run / "model_full.pt").read_bytes())
    again = train_model(config, mini_peta, resume=True, overrides=["compact.dim=5"])
    assert again.projection["dims"] == 5 and load_model_file(run / "model.pt")[0].embedding_dim == 5
    assert_same_weights(first, run / "model_full.pt")
    with pytest.raises(ValueError, match="compact.dim projects an AANet"):
        train_model(config, mini_peta, overrides=["name=bnneck", "model.head=bnneck", "model.aanet_descriptor=all"])
    with pytest.raises(ValueError, match="compact.offset"):
        train_model(config, mini_peta, overrides=["name=neg", "compact.offset=-1"])
    with pytest.raises(ValueError, match="compact.fit_crops"):
        train_model(config, mini_peta, overrides=["name=few", "compact.fit_crops=2"])
