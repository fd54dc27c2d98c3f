"""Shared fixtures: tiny datasets built on the fly, and the ../shared data when present."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XREID_SHARED", REPO.parent / "shared"))
PETA_ARCHIVE = SHARED / "data" / "peta.tar.zst"
MODELS = SHARED / "models" / "openvino"


def omz_model(name: str) -> Path:
    precision = "FP16" if name.endswith(("0277", "0286")) else "FP32"
    return MODELS / name / precision / f"{name}.xml"


@pytest.fixture(autouse=True, scope="session")
def isolated_model_cache(tmp_path_factory):
    """Compiled copies of models (``xreid.models.model_cache``) go to the test session's temporary
    folder, never the user's ``~/.cache/xreid/models``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XREID_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "model-cache"))
        yield


def needs_file(path: Path):
    """Marks a test that reads ``path`` from ../shared: ``shared``, and skipped saying which file is missing."""
    def mark(test):
        return pytest.mark.shared(pytest.mark.skipif(not Path(path).is_file(),
                                                     reason=f"needs the shared data ({path} not found)")(test))
    return mark


#: a test that reads the shared PETA archive (prefer the ``shared_data_root`` fixture, which also skips)
needs_shared = needs_file(PETA_ARCHIVE)


def pytest_collection_modifyitems(config, items):
    """Every test that takes the ``shared_data_root`` fixture is marked ``shared``, whether or not its
    author wrote the marker, so ``-m "not shared"`` leaves out every test that reads ../shared."""
    for item in items:
        if "shared_data_root" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("shared"):
            item.add_marker(pytest.mark.shared)


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSON-lines file (the server's audit log), oldest first."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_same_weights(a: Path, b: Path) -> None:
    """Two model or checkpoint files hold the same weights (every tensor of ``a``'s state dict, float tolerance):
    what an interrupted and resumed run must give against an uninterrupted one."""
    import torch

    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], msg=k)


TINY_ATTRIBUTES = "{weight: 1.0, names: [personalMale, hairLong, carryingBackpack], attribute_only_batch: 2}"


def tiny_aanet_config(tmp_path: Path, name: str, model: str = "", train: str = "swa_epochs: 0",
                      extra: str = "", attributes: str = TINY_ATTRIBUTES) -> Path:
    """A training config (YAML file) for a tiny AANet on ``mini_peta``: ``model`` / ``train`` add to
    those sections, ``attributes`` is that section, ``extra`` adds whole sections (one per line)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join([
        f"name: {name}", f"output_dir: {tmp_path / 'runs'}",
        "model: {backbone: mobilenetv2, input_size: [96, 32], last_stride: 1, freeze_stages: 3, head: aanet, "
        f"aanet_hidden: 8, {model}}}",
        "train: {id_warm_epochs: 1, p: 2, k: 2, warmup_epochs: 1, checkpoint_minutes: 0.0, " f"{train}}}",
        f"attributes: {attributes}",
        extra]) + "\n")
    return path


def write_image(path: Path, seed: int, size=(32, 64), colour: tuple[int, int, int] | None = None) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    if colour is not None:
        arr[:] = (0.7 * np.asarray(colour) + 0.3 * arr).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def camera_crops(folder: Path, cameras=("c1", "c2"), per: int = 10, seed: int = 0) -> list[tuple[str, str]]:
    """Crops of each camera with its own colour cast (what per-camera statistics and centring take
    away), written under ``folder/CAMERA/``: (path under folder, camera) per crop."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, cam in enumerate(cameras):
        for j in range(per):
            arr = np.clip(rng.normal(60 + 120 * c, 30, (64, 32, 3)), 0, 255).astype(np.uint8)
            path = folder / cam / f"{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
            rows.append((path.relative_to(folder).as_posix(), cam))
    return rows


@pytest.fixture()
def mini_peta(tmp_path: Path) -> Path:
    """A data root holding a tiny PETA (VIPeR, 3DPeS, CUHK) and a PETA-ReID style protocol."""
    peta = tmp_path / "data" / "peta" / "PETA dataset"
    viper = peta / "VIPeR" / "archive"
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]
    train, test_q, test_g = [], [], []
    for i in range(6):
        for cam in (1, 2):
            name = f"{i:03d}_{45 * cam}_{cam}.jpg"
            write_image(viper / name, seed=10 * i + cam, colour=colours[i])
            entry = {"path": f"VIPeR/archive/{name}", "pid": f"VIPeR/{i:03d}", "cam": f"VIPeR/{cam}"}
            if i < 4:
                train.append(entry)
            else:
                (test_q if cam == 1 else test_g).append(entry)
    (viper / "Label.txt").write_text("\n".join(
        f"{i:03d} personalMale upperBody{'Red' if i % 2 else 'Blue'} carryingBackpack" if i % 3 == 0
        else f"{i:03d} personalFemale hairLong upperBodyBlack" for i in range(6)) + "\n")
    pes = peta / "3DPeS" / "archive"
    for i, name in enumerate(["7_3_FRAME_1_RGB.jpg", "7_4_FRAME_9_RGB.jpg", "12_B_80_FRAME_3_RGB.jpg"]):
        write_image(pes / name, seed=100 + i)
    (pes / "Label.txt").write_text("7 personalMale\n12 personalFemale\n99 personalMale\n")
    cuhk = peta / "CUHK" / "archive"
    write_image(cuhk / "0002.jpg", seed=200)
    write_image(cuhk / "0003.jpg", seed=201)
    (cuhk / "Label.txt").write_text("0002.png personalMale hairShort\n0004.jpg personalFemale\n")
    protocol = {"name": "mini", "version": 1, "attributes": ["personalMale", "hairLong", "carryingBackpack"],
                "test": {"VIPeR": {"query": test_q, "gallery": test_g}}, "train": train,
                "attribute_only": [{"path": "CUHK/archive/0002.jpg"}]}
    (peta.parent / "peta_reid_protocol.json").write_text(json.dumps(protocol))
    return tmp_path / "data"


@pytest.fixture(scope="session")
def shared_data_root(tmp_path_factory) -> Path:
    """A data root with the real PETA prepared from ../shared (extracted once per test session)."""
    if not PETA_ARCHIVE.is_file():
        pytest.skip(f"needs the shared data ({PETA_ARCHIVE} not found)")
    from xreid.data.peta import prepare_peta

    env = os.environ.get("XREID_TEST_DATA_ROOT")
    root = Path(env) if env else tmp_path_factory.mktemp("shared_data")
    prepare_peta(PETA_ARCHIVE, root)
    return root


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    """A small-input xreid model file (ImageNet MobileNetV2, untrained head), as `xreid train` writes it."""
    import torch

    from xreid.models.networks import build_model
    from xreid.models.reid_net import ModelSpec
    from xreid.models.checkpoint import save_model_file

    torch.manual_seed(0)
    model = build_model(ModelSpec(input_size=(64, 32)), pretrained=True).eval()
    path = tmp_path / "tiny.pt"
    save_model_file(model, model.spec, path, meta={})
    return path


def _every_node_schedulable(ray, timeout: float = 60.0) -> None:
    """Wait until a task pinned to each node runs there: a node registered with the cluster can still
    be unknown for a moment (longer on a loaded machine) to the scheduler that places an actor, and
    the shard actors' hard node affinity to it would then fail."""
    import time

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def node():
        return ray.get_runtime_context().get_node_id()

    ids = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            ran = ray.get([node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(i, soft=False)).remote()
                           for i in ids], timeout=10)
            if sorted(ran) == ids:
                return
        except (ray.exceptions.RayError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test cluster's nodes {ids} did not all take tasks within {timeout:.0f} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-node Ray cluster on this machine (head and one worker node, 1 CPU each, small object
    stores, no dashboard), this process connected to it; started per test module and shut down after
    it (so no cluster outlives the modules that use it)."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 * 2**20,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, object_store_memory=80 * 2**20)
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    _every_node_schedulable(ray)
    yield c
    ray.shutdown()
    c.shutdown()
