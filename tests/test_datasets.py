"""The dataset registry: datasets by name, file-name conventions parsed in one place, protocols
read from any folder."""

import json

import pytest

from conftest import write_image
from xreid.data.protocol import load_protocol
from xreid.data.registry import datasets, get_dataset, parse_name


def test_the_shipped_datasets_are_registered_by_name():
    assert {"peta", "market-1501", "folder"} <= set(datasets())
    assert get_dataset("PETA").name == "peta" and get_dataset("market_1501").title == "Market-1501"
    with pytest.raises(ValueError, match="unknown dataset 'nope'; known: folder, market-1501, peta"):
        get_dataset("nope")


def test_file_name_conventions_are_parsed_in_one_place():
    assert parse_name("VIPeR/archive/001_45_1.jpg") == ("VIPeR/001", "VIPeR/1")
    assert parse_name("x/0002_c1s1_000451_03.jpg") == ("market/0002", "market/1")
    assert parse_name("VIPeR/archive/unnamed.jpg") is None  # a PETA subset's file that states nothing
    assert parse_name("camera3/person.jpg") is None  # folder names are never identities


def test_a_protocol_loads_from_any_folder(tmp_path):
    crops = tmp_path / "anywhere" / "crops"
    for seed, name in enumerate(("0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.jpg", "0002_c1s1_000003_00.jpg")):
        write_image(crops / name, seed)
    spec = {"name": "mine", "dataset": "folder", "images": "crops",
            "train": [{"path": "0002_c1s1_000003_00.jpg", "pid": "2"}],
            "test": {"one": {"query": [{"path": "0001_c1s1_000001_00.jpg", "pid": "1", "cam": "1"}],
                             "gallery": [{"path": "0001_c2s1_000002_00.jpg", "pid": "1", "cam": "2"}]}}}
    (tmp_path / "anywhere" / "mine.json").write_text(json.dumps(spec))
    proto = load_protocol(str(tmp_path / "anywhere" / "mine.json"), tmp_path / "unused-data-root")
    assert proto.name == "mine" and proto.image_root == crops
    assert [r.path for r in proto.test_sets[0].gallery] == ["0001_c2s1_000002_00.jpg"]
