import numpy as np
import pytest
from scipy.io import savemat

from conftest import SHARED, needs_file, write_image
from xreid.data.market import (AGE_CLASSES, JUNK_PID, MARKET_ATTRIBUTES, load_market, load_market_attributes,
                               parse_market_name)
from xreid.evaluation.metrics import evaluate_ranking

REAL_MAT = SHARED / "data" / "market_attribute.mat"
FIELDS = ["age", "backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray", "downgreen",
          "downpink", "downpurple", "downwhite", "downyellow", "upblack", "upblue", "upgreen", "upgray", "uppurple",
          "upred", "upwhite", "upyellow", "clothes", "down", "up", "hair", "hat", "gender"]


def _write_mat(path, ids_train, ids_test):
    """A market_attribute.mat with the real file's struct layout."""
    def split(ids, offset):
        n = len(ids)
        d = {f: np.ones((1, n), np.uint8) for f in FIELDS}
        d["age"] = np.array([[1 + (i + offset) % 4 for i in range(n)]], np.uint8)
        d["gender"] = np.array([[2 if i % 2 == 0 else 1 for i in range(n)]], np.uint8)
        d["clothes"] = np.array([[1] + [2] * (n - 1)], np.uint8)
        d["image_index"] = np.array([[np.array([pid]) for pid in ids]], dtype=object)
        return d
    savemat(path, {"market_attribute": {"train": split(ids_train, 0), "test": split(ids_test, 1)}})


def test_market_names():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == ("market/0002", "market/1")
    assert parse_market_name("-1_c3s2_000000_00.jpg") == (JUNK_PID, "market/3")
    with pytest.raises(ValueError, match="Market-1501"):
        parse_market_name("foo.jpg")


def test_market_fixture_layout_and_attributes(tmp_path):
    root = tmp_path / "market"
    names = {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c1s1_000001_01.jpg"],
             "query": ["0010_c1s1_000001_00.jpg"],
             "bounding_box_test": ["0010_c2s1_000002_00.jpg", "0010_c1s1_000003_00.jpg", "0000_c3s1_000001_00.jpg",
                                   "-1_c2s1_000004_00.jpg"]}
    for split, files in names.items():
        for i, n in enumerate(files):
            write_image(root / split / n, seed=i)
    _write_mat(tmp_path / "attr.mat", ["0002", "0007"], ["0010"])
    attrs = load_market_attributes(tmp_path / "attr.mat")
    assert set(attrs) == {"0002", "0007", "0010"}
    assert attrs["0002"] >= {"female", "dress", AGE_CLASSES[0]}
    assert "female" not in attrs["0007"] and AGE_CLASSES[1] in attrs["0007"]
    train = load_market(root, "bounding_box_train", attrs)
    assert [r.pid for r in train] == ["market/0002", "market/0002", "market/0007"]
    assert train[0].cam == "market/1" and "female" in train[0].attributes
    query, gallery = load_market(root, "query", attrs), load_market(root, "bounding_box_test", attrs)
    # evaluation: the same-camera true match is ignored, junk is ignored, the distractor counts as a miss
    feats = {"0010_c1s1_000001_00.jpg": [1, 0], "0010_c2s1_000002_00.jpg": [0.6, 0.8],
             "0010_c1s1_000003_00.jpg": [1, 0.01], "0000_c3s1_000001_00.jpg": [0.8, 0.6],
             "-1_c2s1_000004_00.jpg": [1, 0.02]}
    f = lambda recs: np.array([feats[r.path.split("/")[-1]] for r in recs], float)  # noqa: E731
    junk = np.array([r.pid == JUNK_PID for r in gallery])
    m = evaluate_ranking(f(query), f(gallery), [r.pid for r in query], [r.pid for r in gallery],
                         [r.cam for r in query], [r.cam for r in gallery], g_junk=junk)
    assert m.rank(1) == 0.0 and m.rank(2) == 1.0 and m.mAP == pytest.approx(0.5)


def test_market_bad_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="bounding_box_train"):
        load_market(tmp_path, "bounding_box_train")
    (tmp_path / "x.mat").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a Market-1501 attribute file"):
        load_market_attributes(tmp_path / "x.mat")


@needs_file(REAL_MAT)
def test_real_market_attribute_file():
    attrs = load_market_attributes(REAL_MAT)
    assert len(attrs) == 751 + 750
    assert len(MARKET_ATTRIBUTES) == 30
    # every identity has exactly one age class
    assert all(sum(a in labels for a in AGE_CLASSES) == 1 for labels in attrs.values())
    female = np.mean(["female" in a for a in attrs.values()])
    assert 0.2 < female < 0.6
