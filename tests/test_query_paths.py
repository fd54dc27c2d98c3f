"""One path from a query to a report: ``xreid explain``, ``xreid index search`` and the server search
a ``Gallery`` (``xreid.index.base``) the same way, filter with the same meaning, and explain the
hits without decoding any image twice."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from test_index import NAMES, embedder, root  # noqa: F401  (fixtures)
from xreid.cli import app
from xreid.data import images
from xreid.data.images import load_image
from xreid.data.transforms import resize_rgb
from xreid.explain.attribute_head import AttributeHead
from xreid.index.base import BACKENDS, Gallery, Hits, backend
from xreid.index.features import save_features
from xreid.index.filters import Filter, parse_filter
from xreid.index.gallery import GalleryIndex
from xreid.index.memory import MemoryGallery
from xreid.serve.case import CaseSession
from xreid.workflows.explain import explain, write_report
from xreid.workflows.index import build_index

runner = CliRunner()
K = 5


def _gallery_vectors(embedder, root):  # noqa: F811
    paths = sorted((root / "gallery").glob("*.jpg"))
    res = embedder.embed_paths(paths)
    assert len(res.kept) == len(paths)
    return [p.relative_to(root).as_posix() for p in paths], res.features.astype(np.float64)


@pytest.fixture()
def calibrated_head(embedder, root, tmp_path):  # noqa: F811
    """A head whose calibration moves attribute 0's decision away from raw p = 0.5, so that "yes" keeps
    other rows with calibrated probabilities than with raw ones (the filter's one meaning is seen)."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(1280, len(NAMES)))
    _, g = _gallery_vectors(embedder, root)
    z = np.sort((g / np.linalg.norm(g, axis=1, keepdims=True)) @ weights[:, 0])
    raw_pass = int(np.sum(z >= 0))
    cut = 3 if raw_pass != 10 - 4 else 5  # calibrated p >= 0.5  <=>  z >= midpoint of z[cut - 1], z[cut]
    threshold = (z[cut - 1] + z[cut]) / 2
    calibration = np.array([[1.0, -threshold], [1.0, 0.0], [1.0, 0.0]])
    head = AttributeHead(NAMES, weights, np.full(len(NAMES), 0.4), {}, calibration=calibration)
    path = tmp_path / "calibrated_head.npz"
    head.save(path)
    return path


def _brute_force(embedder, root, head, query: Path, attribute: str | None):  # noqa: F811
    """The expected top-K, computed here: cosine distance of L2-normalised float64 embeddings, rows
    kept where the head's calibrated probability of ``attribute`` is >= 0.5."""
    keys, g = _gallery_vectors(embedder, root)
    q = embedder.embed_arrays([resize_rgb(load_image(query), embedder.preprocess.size)])[0].astype(np.float64)
    g_n = g / np.linalg.norm(g, axis=1, keepdims=True)
    d = 1 - g_n @ (q / np.linalg.norm(q))
    keep = np.ones(len(keys), bool)
    if attribute is not None:
        a = NAMES.index(attribute)
        z = g_n @ head.weights[:, a]
        keep = (z * head.calibration[a, 0] + head.calibration[a, 1]) >= 0  # sigmoid(.) >= 0.5
    order = [i for i in np.argsort(d, kind="stable") if keep[i]]
    return [keys[i] for i in order[:K]], keep


@pytest.mark.parametrize("attribute", [None, NAMES[0]])
def test_server_explain_and_index_search_give_the_brute_force_top_k(embedder, root, calibrated_head, tiny_model,  # noqa: F811
                                                                    tmp_path, attribute):
    head = AttributeHead.load(calibrated_head)
    query = root / "more" / "new0.png"
    expected, kept = _brute_force(embedder, root, head, query, attribute)
    if attribute is not None:  # the filter's meaning matters here: raw probabilities would keep other rows
        _, g = _gallery_vectors(embedder, root)
        assert not np.array_equal(kept, head.predict(g)[:, 0] >= 0.5)
        assert len(expected) == K
    case = tmp_path / "case"
    build_index(embedder, head, root, case, images=root / "gallery", batch_size=4, progress=False)
    model = ["--model", str(tiny_model), "--backend", "torch"]
    text = f"{attribute}=yes" if attribute else None

    # 1. the server
    session = CaseSession(case, embedder, head, root, workdir=tmp_path / "serve")
    try:
        uid = session.upload(query.read_bytes(), "q.png")["id"]
        found = session.search(uploads=[uid], k=K, filters={"attributes": {attribute: True}} if attribute else {})
    finally:
        session.close()
    by_server = [r["key"] for r in found["results"]]

    # 2. xreid explain (a folder gallery, embedded in memory)
    js = tmp_path / "r.json"
    res = runner.invoke(app, ["explain", *model, "--head", str(calibrated_head), "--query", str(query), "--gallery",
                              str(root / "gallery"), "--data-root", str(root), "--top-k", str(K), "--maps", "none",
                              "--filter-mode", "keep", "--out", str(tmp_path / "r.html"), "--json", str(js),
                              *(["--filter", text] if text else [])])
    assert res.exit_code == 0, res.output
    by_explain = [r["key"] for r in json.loads(js.read_text())["results"]]

    # 3. xreid index search
    res = runner.invoke(app, ["index", "search", str(case), *model, "--query", str(query), "--top-k", str(K),
                              *(["--filter", text] if text else [])])
    assert res.exit_code == 0, res.output
    by_index = re.findall(r"^\s+\d+\. id \d+  d=\S+  (\S+)", res.output, re.M)

    assert by_server == by_explain == by_index == expected


def test_explaining_a_top_10_decodes_each_image_once(embedder, root, tmp_path, monkeypatch):  # noqa: F811
    head = AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {})
    keys, g = _gallery_vectors(embedder, root)
    npz = tmp_path / "gallery.npz"
    save_features(npz, dict(zip(keys, g.astype(np.float32))), embedder.identity())
    decoded = Counter()
    real = images.load_image

    def counting(path):
        decoded[Path(path).resolve()] += 1
        return real(path)

    monkeypatch.setattr(images, "load_image", counting)
    query = root / "more" / "new1.png"
    out = explain(embedder, head, query, npz, data_root=root, top_k=10, maps="pair")
    write_report(out, tmp_path / "r.html", tmp_path / "r.json")
    assert len(out.results) == 10 and out.maps is not None and out.maps.maps
    assert set(decoded) == {query.resolve()} | {(root / k).resolve() for k in keys}
    assert set(decoded.values()) == {1}, decoded

    # the server: one result explained with maps, then the whole report, each gallery image decoded once
    case = tmp_path / "case"
    build_index(embedder, head, root, case, images=root / "gallery", batch_size=4, progress=False)
    session = CaseSession(case, embedder, head, root, workdir=tmp_path / "serve")
    try:
        decoded.clear()
        uid = session.upload(query.read_bytes(), "q.png")["id"]
        s = session.search(uploads=[uid], k=10)
        session.explain(s["search"], [s["results"][0]["id"]], "pair")
        page, _ = session.report(s["search"], "pair")
        assert page.startswith("<!doctype html>")
    finally:
        session.close()
    assert set(decoded) == {(root / k).resolve() for k in keys}
    assert set(decoded.values()) == {1}, decoded


def test_both_backends_implement_the_gallery_interface(embedder, root, tmp_path):  # noqa: F811
    head = AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {})
    keys, g = _gallery_vectors(embedder, root)
    build_index(embedder, head, root, tmp_path / "case", images=root / "gallery", batch_size=4, progress=False)
    index = GalleryIndex.open(tmp_path / "case", image_root=root)
    memory = MemoryGallery(keys, g, [root / k for k in keys], head=head)
    assert backend("index") is GalleryIndex and backend("memory") is MemoryGallery and {"index", "memory"} <= set(BACKENDS)
    where = Filter(attributes={NAMES[1]: False})
    row = int(np.flatnonzero(head.calibrated(g)[:, 1] < 0.5)[0])  # a row the filter keeps, as the query
    for gallery in (index, memory):
        assert isinstance(gallery, Gallery) and len(gallery) == 10
        hits = gallery.search(g[row], 3, where)
        assert isinstance(hits, Hits) and hits.keys[0] == keys[row] and hits.ranks.tolist() == [1, 2, 3]
        np.testing.assert_allclose(hits.distances[0], 0.0, atol=1e-5)
        probs = gallery.probabilities(hits.ids)
        assert probs.shape == (3, 3) and (probs[:, 1] < 0.5).all()
        np.testing.assert_allclose(probs, head.calibrated(gallery.vectors_of(hits.ids)), atol=1 / 256)
        assert gallery.metadata(int(hits.ids[0]))["path"] == hits.keys[0]
        assert gallery.image(int(hits.ids[0])).shape[2] == 3
    assert index.search(g[row], 10, where).keys == memory.search(g[row], 10, where).keys
    with pytest.raises(ValueError, match="unknown gallery backend 'ray'"):
        backend("ray")


@pytest.mark.parametrize("spec,message", [
    ({"attributes": ["personalMale"]}, "'attributes' must be an object"),
    ({"attributes": {"personalMale": "yes"}}, "filter attribute 'personalMale'"),
    ({"attributes": {"personalMale": 1.5}}, "probability in [0, 1]"),
    ({"camera": {"a": 1}}, "'camera' must be a camera or a list"),
    ({"camera": True}, "'camera' must be a camera or a list"),
    ({"camera": [[1]]}, "'camera': each camera"),
    ({"after": {"t": 1}}, "'after' must be a time"),
    ({"before": True}, "'before' must be a time"),
    ({"after": "yesterday"}, "filter 'after'"),
    ({"fields": ["site"]}, "'fields' must be an object"),
    ({"fields": {"site": {"x": 1}}}, "filter field 'site'"),
    ({"fields": {"colour": "red"}}, "unknown field 'colour'"),
    ({"mode": "sometimes"}, "filter mode"),
    ({"colour": "red"}, "unknown filter key"),
    (["personalMale"], "a filter must be an object"),
    ("personalMale=maybe", "yes or no"),
    ("personalmale=yes", "did you mean personalMale"),
    ("personalMale=yes,personalMale=no", "named twice"),
])
def test_one_parser_refuses_wrong_types_naming_the_field(spec, message):
    with pytest.raises(ValueError) as err:
        parse_filter(spec, NAMES, ["site", "camera", "pid"])
    assert message in str(err.value)


def test_one_parser_reads_text_and_json_alike():
    text = parse_filter("personalMale=yes, carryingBackpack=no,site=north", NAMES, ["site"])
    js = parse_filter({"attributes": {"personalMale": True, "carryingBackpack": False}, "fields": {"site": "north"}},
                      NAMES, ["site"])
    assert text == js == Filter(attributes={"personalMale": True, "carryingBackpack": False}, fields={"site": "north"})
    assert parse_filter(js) == js and parse_filter(None).is_empty()
    assert parse_filter({"camera": [], "after": "", "fields": {"site": ""}}).is_empty()
    assert parse_filter("personalMale=yes", NAMES, mode="rerank").mode == "rerank"
