import pytest

from xreid.data.peta import VOCABULARY, LoadReport, label_key, load_peta, parse_reid_name, prepare_peta
from xreid.data.protocol import load_protocol


def test_vocabulary_has_105_names():
    assert len(VOCABULARY) == 105 and len(set(VOCABULARY)) == 105
    assert "footwearSneakers" in VOCABULARY and "upperBodyRed" in VOCABULARY


@pytest.mark.parametrize("subset,name,pid,cam", [
    ("VIPeR", "000_45_1.jpg", "VIPeR/000", "VIPeR/1"),
    ("PRID", "0001_a.jpg", "PRID/0001", "PRID/a"),
    ("GRID", "0001_1_25004_107_32_106_221.jpeg", "GRID/0001", "GRID/1"),
    ("3DPeS", "100_3_FRAME_26_RGB.jpg", "3DPeS/100", "3DPeS/3"),
    ("3DPeS", "166_B_1280_FRAME_105_RGB.jpg", "3DPeS/166", "3DPeS/B"),
    ("CAVIAR4REID", "0001_001.jpg", "CAVIAR4REID/0001", "CAVIAR4REID/0"),
    ("i-LID", "0120_001.png", "i-LID/0120", "i-LID/0"),
    ("SARC3D", "001_front.jpg", "SARC3D/001", "SARC3D/0"),
    ("TownCentre", "0_16.jpg", "TownCentre/0", "TownCentre/0"),
])
def test_parse_reid_names(subset, name, pid, cam):
    assert parse_reid_name(subset, name) == (pid, cam)


def test_bad_name_is_an_error():
    with pytest.raises(ValueError, match="naming convention"):
        parse_reid_name("VIPeR", "hello.jpg")


def test_label_keys():
    assert label_key("CUHK", "0002.jpg") == "0002"
    assert label_key("MIT", "00924_female_back.jpg") == "00924"
    assert label_key("VIPeR", "806_0_2.jpg") == "806"


def test_load_peta_fixture(mini_peta):
    report = LoadReport()
    recs = {r.path: r for r in load_peta(mini_peta / "peta" / "PETA dataset", report=report)}
    v = recs["VIPeR/archive/000_45_1.jpg"]
    assert v.pid == "VIPeR/000" and v.cam == "VIPeR/1" and "personalMale" in v.attributes
    # 3DPeS: key '7' (no padding) labels both views; an id with a letter camera works
    assert recs["3DPeS/archive/7_4_FRAME_9_RGB.jpg"].attributes == frozenset({"personalMale"})
    assert recs["3DPeS/archive/12_B_80_FRAME_3_RGB.jpg"].cam == "3DPeS/B"
    # CUHK: label key written as .png matches the .jpg image by stem; an image with no label is reported
    assert recs["CUHK/archive/0002.jpg"].attributes == frozenset({"personalMale", "hairShort"})
    assert recs["CUHK/archive/0003.jpg"].attributes is None and recs["CUHK/archive/0003.jpg"].pid is None
    text = "\n".join(report.problems)
    assert "0003.jpg: no label" in text
    assert "label key '99' matches no image" in text and "label key '0004' matches no image" in text


def test_wrong_layout_is_a_clear_error(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(ValueError, match="not a PETA folder"):
        load_peta(tmp_path / "random")
    with pytest.raises(ValueError, match="no PETA folder"):
        prepare_peta(tmp_path / "random", tmp_path / "root")


def test_prepare_from_folder_and_protocol(mini_peta, tmp_path):
    folder = prepare_peta(mini_peta / "peta", tmp_path / "root")
    assert (folder / "VIPeR" / "archive" / "Label.txt").is_file()
    proto = load_protocol("peta-reid", tmp_path / "root")
    assert [t.name for t in proto.test_sets] == ["VIPeR"]
    assert len(proto.train) == 8 and proto.train[0].attributes is not None
    assert len(proto.test_images()) == 4


def test_prepare_from_archive(mini_peta, tmp_path):
    import tarfile

    archive = tmp_path / "peta.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(mini_peta / "peta" / "PETA dataset", arcname="PETA dataset")
    folder = prepare_peta(archive, tmp_path / "root2")
    assert len(load_peta(folder)) == 17
    assert not (tmp_path / "root2" / "peta" / ".extracting").exists()


def test_missing_protocol_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="xreid data prepare peta"):
        load_protocol("peta-reid", tmp_path)
