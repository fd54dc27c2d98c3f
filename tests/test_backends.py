"""Backends of xreid models (the cached ONNX Runtime copy, PyTorch, OpenVINO), precision and identity."""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_file, omz_model
from xreid import load_head
from xreid.distance import l2_normalise
from xreid.models import fingerprint as fingerprint_module
from xreid.models import model_cache
from xreid.models.embedders import CompiledEmbedder, TorchEmbedder, sidecar_path
from xreid.models.loading import BUNDLED_MODEL, load_embedder
from xreid.workflows.export import export_model

OMZ_0277 = omz_model("person-reidentification-retail-0277")
needs_0277 = needs_file(OMZ_0277)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty compiled-model cache of this test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("XREID_MODEL_CACHE", str(folder))
    monkeypatch.delenv("XREID_BACKEND", raising=False)
    return folder


def crops(n=4, size=(224, 112), seed=3):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def min_cosine(a, b, images):
    return float((l2_normalise(a.embed_arrays(images)) * l2_normalise(b.embed_arrays(images))).sum(1).min())


def test_default_runs_in_cached_onnx_and_matches_pytorch(cache, monkeypatch):
    fast = load_embedder("default")
    assert isinstance(fast, CompiledEmbedder) and fast.backend == "onnx" and fast.name == "default"
    torch_embedder = load_embedder("default", backend="torch")
    assert type(torch_embedder) is TorchEmbedder and torch_embedder.name == "default"
    assert min_cosine(fast, torch_embedder, crops()) > 0.999
    entry = cache / f"{fast.fingerprint}.onnx"
    side = json.loads(sidecar_path(entry).read_text())
    assert side["verification"]["passed"] and side["source_fingerprint"] == fast.fingerprint
    # a second load reuses the entry: nothing is exported or rewritten
    mtime = entry.stat().st_mtime_ns
    monkeypatch.setitem(model_cache.EXPORTERS, "onnx", lambda *a: pytest.fail("exported again"))
    again = load_embedder("default")
    assert again.backend == "onnx" and entry.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(again.embed_arrays(crops()), fast.embed_arrays(crops()), rtol=1e-6, atol=1e-6)
    # the PyTorch module is there for Grad-CAM, loaded on first use
    assert again._model is None and again.model.spec.input_size == (224, 112)


def test_damaged_cache_entry_is_rebuilt(cache):
    first = load_embedder("default")
    expected = first.embed_arrays(crops())
    entry = cache / f"{first.fingerprint}.onnx"
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: still parses, wrong numbers
    entry.write_bytes(bytes(data))
    rebuilt = load_embedder("default")
    assert rebuilt.backend == "onnx"
    np.testing.assert_allclose(rebuilt.embed_arrays(crops()), expected, rtol=1e-5, atol=1e-5)
    entry.write_bytes(b"garbage")
    assert load_embedder("default").backend == "onnx"
    sidecar_path(entry).write_text("{not json")
    assert load_embedder("default").backend == "onnx"


def test_unwritable_cache_falls_back_to_pytorch(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XREID_MODEL_CACHE", str(blocker / "models"))  # a folder cannot be made under a file
    with caplog.at_level(logging.WARNING):
        embedder = load_embedder("default")
    assert type(embedder) is TorchEmbedder and embedder.identity()["backend"] == "torch"
    dim = load_head("default").weights.shape[0]  # the bundled model's embedding size
    assert "running it in PyTorch" in caplog.text and embedder.embed_arrays(crops(1)).shape == (1, dim)


def test_export_that_disagrees_is_remembered_and_pytorch_runs(cache, caplog):
    fp = load_embedder("default").fingerprint
    side_path = sidecar_path(cache / f"{fp}.onnx")
    side = json.loads(side_path.read_text())
    side["verification"].update(passed=False, min_cosine=0.9)
    side_path.write_text(json.dumps(side))
    with caplog.at_level(logging.WARNING):
        embedder = load_embedder("default")
    assert embedder.backend == "torch" and "disagrees with PyTorch" in caplog.text


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("XREID_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache.model_cache_dir() == tmp_path / "xdg" / "xreid" / "models"
    monkeypatch.setenv("XREID_MODEL_CACHE", str(tmp_path / "mine"))
    assert model_cache.model_cache_dir() == tmp_path / "mine"


def test_fingerprint_is_the_source_hash_computed_once(cache, monkeypatch):
    expected = hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest()[:16]
    reads = []

    def counting_open(name, *args, **kwargs):
        reads.append(Path(name).resolve())
        return open(name, *args, **kwargs)

    fingerprint_module._sha256.cache_clear()
    monkeypatch.setattr(fingerprint_module, "open", counting_open, raising=False)
    for backend in ("torch", "auto", "auto", "openvino"):
        assert load_embedder("default", backend=backend).fingerprint == expected
    assert reads.count(BUNDLED_MODEL.resolve()) == 1  # once per process


def test_identity_of_every_backend(cache, tiny_model, tmp_path):
    onnx_path = export_model(str(tiny_model), "onnx", tmp_path / "tiny.onnx")["path"]
    xml_path = export_model(str(tiny_model), "openvino", tmp_path / "tiny.xml")["path"]
    ids = {name: load_embedder(spec, **kw).identity() for name, spec, kw in [
        ("auto", tiny_model, {}), ("torch", tiny_model, {"backend": "torch"}),
        ("openvino", tiny_model, {"backend": "openvino"}), ("bf16", tiny_model, {"precision": "bf16"}),
        ("onnx-file", onnx_path, {"flip_average": True}), ("xml-file", xml_path, {}),
        ("onnx-file-in-openvino", onnx_path, {"backend": "openvino"})]}
    assert {k: (i["backend"], i["precision"]) for k, i in ids.items()} == {
        "auto": ("onnx", None), "torch": ("torch", None), "openvino": ("openvino", "f32"),
        "bf16": ("openvino", "bf16"), "onnx-file": ("onnx", None), "xml-file": ("openvino", "f32"),
        "onnx-file-in-openvino": ("openvino", "f32")}
    assert ids["auto"]["model"] == "tiny" and ids["auto"]["fingerprint"] == ids["torch"]["fingerprint"]
    assert ids["onnx-file"]["flip"] and ids["onnx-file"]["preprocess"]["height"] == 64
    xml_bytes = (tmp_path / "tiny.xml").read_bytes() + (tmp_path / "tiny.bin").read_bytes()
    assert ids["xml-file"]["fingerprint"] == hashlib.sha256(xml_bytes).hexdigest()[:16]
    assert json.loads(json.dumps(ids)) == ids  # plain JSON data


def test_impossible_backend_choices_say_why(tiny_model, tmp_path):
    onnx_path = export_model(str(tiny_model), "onnx", tmp_path / "tiny.onnx")["path"]
    with pytest.raises(ValueError, match="bf16 needs the OpenVINO backend"):
        load_embedder(tiny_model, backend="onnx", precision="bf16")
    with pytest.raises(ValueError, match="only xreid models .* run in PyTorch"):
        load_embedder(onnx_path, backend="torch")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        load_embedder(tiny_model, backend="tensorrt")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        load_embedder(tiny_model, precision="fp8")


def test_backend_environment_variable_steers_auto(cache, monkeypatch):
    monkeypatch.setenv("XREID_BACKEND", "torch")
    assert load_embedder("default").backend == "torch"
    assert load_embedder("default", backend="onnx").backend == "onnx"  # an explicit choice wins
    monkeypatch.setenv("XREID_BACKEND", "cuda")
    with pytest.raises(ValueError, match="XREID_BACKEND='cuda' is not a backend"):
        load_embedder("default")


def test_exported_model_in_openvino_is_f32_unless_bf16_is_asked(cache, monkeypatch):
    """On CPUs with bf16 support OpenVINO's default precision is bf16 (cosine ~0.995 to PyTorch):
    the explicit f32 hint keeps exports exact; bf16 stays available. The export never runs OpenVINO's
    model converter, whose usage telemetry goes out to the network by default (and hung a test run at
    exit): the IR is read from the ONNX export."""
    import openvino

    def no_converter(*a, **k):
        raise AssertionError("openvino.convert_model sends telemetry; read the ONNX export instead")

    monkeypatch.setattr(openvino, "convert_model", no_converter)
    reference = load_embedder("default", backend="torch")
    f32 = load_embedder("default", backend="openvino")
    assert f32.identity()["precision"] == "f32" and min_cosine(f32, reference, crops()) > 0.9999
    bf16 = load_embedder("default", backend="openvino", precision="bf16")
    assert bf16.identity()["precision"] == "bf16" and min_cosine(bf16, reference, crops()) > 0.98


@needs_0277
def test_black_box_openvino_precision_is_set_and_recorded():
    f32 = load_embedder(OMZ_0277)
    assert f32.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    bf16 = load_embedder(OMZ_0277, precision="bf16")
    assert bf16.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
    assert (f32.identity()["precision"], bf16.identity()["precision"]) == ("f32", "bf16")
