import pytest

from conftest import write_image
from xreid.data.folder import load_folder, load_list
from xreid.data.peta import LoadReport
from xreid.data.pids import pid_from_name


def test_folder_names_are_not_identities(tmp_path):
    write_image(tmp_path / "g" / "alice" / "1.jpg", 0)
    write_image(tmp_path / "g" / "bob" / "2.png", 1)
    write_image(tmp_path / "g" / "loose.jpg", 2)
    (tmp_path / "g" / "readme.txt").write_text("not an image")
    recs = {r.path: r for r in load_folder(tmp_path / "g", root=tmp_path)}
    assert set(recs) == {"g/alice/1.jpg", "g/bob/2.png", "g/loose.jpg"}
    assert recs["g/alice/1.jpg"].pid is None and recs["g/loose.jpg"].pid is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_folder(tmp_path / "empty")


def test_csv_list(tmp_path):
    f = tmp_path / "list.csv"
    f.write_text("path,pid,cam\n# a comment\na/1.jpg,7,c1\nb/2.jpg\n\nc/3.jpg,8\n")
    report = LoadReport()
    recs = load_list(f, report)
    assert [(r.path, r.pid, r.cam) for r in recs] == [("a/1.jpg", "7", "c1"), ("b/2.jpg", None, None), ("c/3.jpg", "8", None)]
    f.write_text("path,pid,cam\na/1.jpg,7,c1\nbad,1,2,3\n")  # one list reader: a bad row is an error, not skipped
    with pytest.raises(ValueError, match=r"list\.csv:3: 4 cells but the header names 3 columns"):
        load_list(f)
    f.write_text("path,camera\na/1.jpg,3\n")  # by name: a path,camera file gives no person id
    assert [(r.pid, r.cam) for r in load_list(f)] == [(None, "3")]
    with pytest.raises(FileNotFoundError, match="list file not found"):
        load_list(tmp_path / "nope.csv")


@pytest.mark.parametrize("key,pid", [
    ("peta/PETA dataset/VIPeR/archive/001_45_1.jpg", "VIPeR/001"),
    ("bounding_box_test/0002_c1s1_000451_03.jpg", "market/0002"),
    ("gallery/alice/1.jpg", None),  # a folder name is not an identity
    ("peta/PETA dataset/VIPeR/archive/not_a_viper_name.jpg", None),
    ("x.jpg", None),
])
def test_pid_from_name(key, pid):
    assert pid_from_name(key) == pid
