"""The checkpoint format: every load is weights-only, so a model file can never run code."""

import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from xreid.models.checkpoint import (
    load_model_file,
    load_safely,
    load_training_checkpoint,
    plain_data,
    save_model_file,
)
from xreid.models.loading import BUNDLED_MODEL, load_embedder
from xreid.models.networks import build_model
from xreid.models.reid_net import ModelSpec
from xreid.training.config import load_config
from xreid.training.trainer import train

SRC = Path(__file__).resolve().parents[1] / "src"


class WritesMarker:
    """Unpickling this runs ``exec``, which writes a marker file: what a malicious model file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def _malicious_model(path: Path, marker: Path) -> Path:
    torch.save({"format": "xreid-model", "spec": ModelSpec(input_size=(64, 32)).to_dict(), "state_dict": {},
                "meta": {"payload": WritesMarker(marker)}}, path)
    return path


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_model_file_that_runs_code_is_refused(tmp_path, backend):
    marker = tmp_path / "marker.txt"
    evil = _malicious_model(tmp_path / "evil.pt", marker)
    with pytest.raises(ValueError, match=r"evil\.pt: not a safe xreid model file.*exec"):
        load_embedder(evil, backend=backend)
    assert not marker.exists()
    # the file really is dangerous: the ordinary unpickler runs its code
    torch.load(evil, weights_only=False)  # noqa: S614 - the point of the test
    assert marker.read_text() == "code ran"


def test_plain_pickle_is_refused_unread(tmp_path):
    marker = tmp_path / "marker.txt"
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(WritesMarker(marker)))
    with pytest.raises(ValueError, match=r"raw\.pt: not a readable xreid model file"):
        load_embedder(raw)
    assert not marker.exists()


def test_training_resume_refuses_a_checkpoint_that_runs_code(mini_peta, tmp_path):
    cfg_path = tmp_path / "evil.yaml"
    cfg_path.write_text(textwrap.dedent(f"""
        name: evil
        output_dir: {tmp_path / 'runs'}
        model: {{backbone: mobilenetv2, input_size: [64, 32], freeze_stages: 3}}
        train: {{epochs: 1, p: 2, k: 2}}
    """))
    cfg = load_config(cfg_path)
    cfg.run_dir.mkdir(parents=True)
    marker = tmp_path / "marker.txt"
    _malicious_model(cfg.run_dir / "last.pt", marker)
    with pytest.raises(ValueError, match=r"last\.pt: not a safe xreid model file"):
        train(cfg, mini_peta, resume=True, progress=False)
    assert not marker.exists()


def test_training_checkpoint_is_tensors_and_plain_data(mini_peta, tmp_path):
    torch.set_num_threads(1)
    cfg_path = tmp_path / "plain.yaml"
    cfg_path.write_text(textwrap.dedent(f"""
        name: plain
        output_dir: {tmp_path / 'runs'}
        model: {{backbone: mobilenetv2, input_size: [64, 32], freeze_stages: 3}}
        train: {{epochs: 1, swa_epochs: 1, id_warm_epochs: 0, p: 2, k: 2, warmup_epochs: 0}}
    """))
    cfg = load_config(cfg_path)
    cfg.output_dir = tmp_path / "runs"  # a Path in the config is stored as its string
    final = train(cfg, mini_peta, progress=False)
    ckpt = load_training_checkpoint(cfg.run_dir / "last.pt")  # weights-only
    assert ckpt["format"] == "xreid-checkpoint" and ckpt["averaged"] == 1
    assert ckpt["optimizer"]["state"] and isinstance(ckpt["average"], dict)
    assert ckpt["config"]["output_dir"] == str(tmp_path / "runs") and ckpt["history"][0]["epoch"] == 1
    model, meta = load_model_file(final)
    assert meta["format"] == "xreid-model" and "classifier.weight" not in meta["state_dict"]
    assert all(v.dtype == torch.float32 for v in model.state_dict().values() if v.is_floating_point())


def test_plain_data_converts_or_names_the_key():
    out = plain_data({"dir": Path("/x"), "n": np.float32(0.5), "v": np.arange(2), "t": (1, [None, "a"])})
    assert out["dir"] == "/x" and type(out["n"]) is float and torch.equal(out["v"], torch.arange(2))
    assert out["t"] == (1, [None, "a"])
    with pytest.raises(TypeError, match=r"meta\['history'\]\[1\]: a object cannot go into an xreid checkpoint"):
        plain_data({"history": [1, object()]}, "meta")


def test_model_file_round_trip_and_bundled_model(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelSpec(input_size=(64, 32), num_classes=3), pretrained=False).eval()
    save_model_file(model, model.spec, tmp_path / "m.pt", meta={"where": tmp_path})
    loaded, contents = load_model_file(tmp_path / "m.pt")
    assert contents["meta"]["where"] == str(tmp_path) and loaded.spec.num_classes == 0
    x = torch.rand(2, 3, 64, 32)
    torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=1e-2)  # fp16 weights
    bundled = load_safely(BUNDLED_MODEL)  # the shipped model was always weights-only loadable
    assert bundled["format"] == "xreid-model" and load_model_file(BUNDLED_MODEL)[0].spec.input_size == (224, 112)


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_safely(tmp_path / "none.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: not an xreid model file"):
        load_model_file(tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: not an xreid training checkpoint \(missing spec"):
        load_training_checkpoint(tmp_path / "other.pt")


def test_no_unsafe_load_left_in_the_package():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "weights_only=False" in p.read_text()]
    assert offenders == []
