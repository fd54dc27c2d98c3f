"""The ANN's scan floor (``xreid.index.ann``): a search scans at least a fixed fraction of the
inverted lists, whatever the build's tuning on the gallery's own rows chose; recorded in the
index's manifest."""

import json

import numpy as np
import pytest

from xreid.index import ann as ann_mod
from xreid.index.ann import SCAN_FLOOR, AnnIndex, scan_nprobe
from xreid.index.gallery import MANIFEST, GalleryIndex, IndexWriter, Rows, read_manifest
from xreid.index.lookalikes import _ann_candidates

NAMES = ["personalMale"]
IDENTITY = {"model": "synthetic", "fingerprint": "f" * 16, "preprocess": {}, "flip": False}
HEAD = {"head": "h", "head_fingerprint": "0"}


@pytest.mark.parametrize("tuned, nlist, floor, lists", [
    (2, 128, 0.25, 32),   # the floor raises a narrow tuning: ceil(0.25 * 128) = 32
    (40, 128, 0.25, 40),  # a wider tuning stands
    (1, 64, 0.0, 1),      # no floor: the tuning alone
    (1, 10, 0.25, 3),     # ceil(2.5) = 3
    (1, 16, 1.0, 16),     # every list
    (300, 256, 0.5, 256),  # never more than nlist
    (0, 16, 0.0, 1),      # at least one list
])
def test_scan_nprobe_is_the_tuning_raised_to_the_floor(tuned, nlist, floor, lists):
    assert scan_nprobe(tuned, nlist, floor) == lists


@pytest.mark.parametrize("floor", [-0.1, 1.5])
def test_a_floor_outside_0_to_1_is_refused(floor):
    with pytest.raises(ValueError, match="scan floor"):
        scan_nprobe(1, 16, floor)


def _near_copies(n=3000, people=40, dim=16, seed=0):
    """Many views of few people: each row is one of ``people`` centres plus small noise, so each row's
    ten nearest neighbours share its list and the tuning settles on one list or two."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, dim))
    x = centres[rng.integers(0, people, n)] + 0.05 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_floor_widens_searches_but_not_the_lookalikes_the_tuning_measured():
    x = _near_copies()
    ann = AnnIndex.build(x, nlist=16, scan_floor=0.5)
    assert ann.tuned_nprobe <= 2 and ann.tuned_recall >= 0.98  # near-copies: one or two lists do
    assert ann.nprobe == 8 and ann.scan_floor == 0.5
    narrow = AnnIndex.build(x, nlist=16, scan_floor=0.0)
    assert narrow.nprobe == narrow.tuned_nprobe == ann.tuned_nprobe  # same data, same seed, same tuning
    # gallery rows searching the gallery (the look-alikes) scan the tuned width, not the floor's
    seen = []
    real = ann.index.search

    def spy(q, k, params=None):
        seen.append(params.nprobe)
        return real(q, k, params=params)

    ann.index.search = spy
    _ann_candidates(ann, x[:4], 4)
    ann.search(x[0], 10)
    assert seen == [ann.tuned_nprobe, 8]


def _write(case, x, floor=None, batch=1000):
    with IndexWriter.create(case, IDENTITY, NAMES, HEAD, x.shape[1]) as w:
        for s in range(0, len(x), batch):
            e = min(len(x), s + batch)
            w.commit(Rows([f"p/{i}.jpg" for i in range(s, e)], x[s:e], np.full((e - s, 1), 0.5),
                          [{"camera": "c1"}] * (e - s), np.arange(s, e) * 1.0))
        w.finish(ann_min_rows=1000, scan_floor=floor)


def test_the_floor_is_recorded_kept_by_an_add_and_used_by_search(tmp_path, monkeypatch):
    monkeypatch.setattr("xreid.index.gallery.EXACT_LIMIT", 100)  # a small index stands in for a large one
    x = _near_copies()
    case = tmp_path / "case"
    _write(case, x[:2500], floor=0.5)
    info = read_manifest(case)["ann"]
    assert info["scan_floor"] == 0.5 and info["nlist"] == 16
    assert info["nprobe"] == max(info["tuned_nprobe"], 8)
    assert GalleryIndex.open(case).ann.nprobe == info["nprobe"]
    with IndexWriter.append(case, IDENTITY, NAMES, HEAD) as w:  # an add keeps the recorded floor
        w.commit(Rows([f"p/{i}.jpg" for i in range(2500, 3000)], x[2500:], np.full((500, 1), 0.5),
                      [{"camera": "c1"}] * 500, np.arange(2500, 3000) * 1.0))
        w.finish(ann_min_rows=1000)
    info = read_manifest(case)["ann"]
    assert info["scan_floor"] == 0.5 and info["rows"] == 3000
    g = GalleryIndex.open(case)
    assert g.ann.nprobe == info["nprobe"] == max(info["tuned_nprobe"], 8)
    assert g.search(x[0], 5).method == "ann"


def test_the_default_floor_and_an_index_written_before_floors(tmp_path, monkeypatch):
    x = _near_copies()
    case = tmp_path / "case"
    _write(case, x)
    info = read_manifest(case)["ann"]
    assert info["scan_floor"] == SCAN_FLOOR
    assert info["nprobe"] == scan_nprobe(info["tuned_nprobe"], 16, SCAN_FLOOR)
    # an index written before floors were recorded: its nprobe was the tuning's; it searches with
    # the default floor
    manifest = json.loads((case / MANIFEST).read_text())
    for key in ("scan_floor", "tuned_nprobe"):
        del manifest["ann"][key]
    manifest["ann"]["nprobe"] = 1
    (case / MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.setattr(ann_mod, "SCAN_FLOOR", 0.75)
    monkeypatch.setattr("xreid.index.gallery.SCAN_FLOOR", 0.75)
    g = GalleryIndex.open(case)
    assert g.ann.tuned_nprobe == 1 and g.ann.nprobe == 12  # ceil(0.75 * 16)


def test_a_floor_out_of_range_is_refused_before_the_ann_is_built(tmp_path):
    x = _near_copies(n=1200)
    with pytest.raises(ValueError, match="scan floor"):
        _write(tmp_path / "case", x, floor=2.0)


def test_index_build_refuses_a_floor_outside_0_to_1(tmp_path):
    from typer.testing import CliRunner

    from xreid.cli import app

    res = CliRunner().invoke(app, ["index", "build", "--out", str(tmp_path / "case"), "--images", str(tmp_path),
                                   "--scan-floor", "1.5"])
    assert res.exit_code == 2 and "scan-floor" in res.output
    assert not (tmp_path / "case").exists()


def test_a_new_floor_on_a_finished_index_is_recorded_without_building_the_ann_again(tmp_path):
    x = _near_copies()
    case = tmp_path / "case"
    _write(case, x, floor=1.0)
    before = read_manifest(case)["ann"]
    with IndexWriter.append(case, IDENTITY, NAMES, HEAD) as w:
        w.finish(ann_min_rows=1000, scan_floor=0.25)
    after = read_manifest(case)["ann"]
    assert after["file"] == before["file"] and after["sha256"] == before["sha256"]  # the same ANN file
    assert after["scan_floor"] == 0.25 and after["nprobe"] == max(after["tuned_nprobe"], 4)
    assert GalleryIndex.open(case).ann.nprobe == after["nprobe"]


def test_top_k_over_blocks_is_the_exact_top_k():
    from xreid.index.ann import TopK

    rng = np.random.default_rng(3)
    scores = rng.standard_normal((5, 1000)).astype(np.float32)
    best = TopK(5, 10)
    for a in (0, 7, 400, 993):  # uneven blocks, the last shorter than k
        b = {0: 7, 7: 400, 400: 993, 993: 1000}[a]
        best.add(scores[:, a:b], a)
    want = np.argsort(-scores, axis=1)[:, :10]
    assert [set(r) for r in best.ids.tolist()] == [set(r) for r in want.tolist()]
    np.testing.assert_array_equal(np.sort(best.scores, 1), np.sort(np.take_along_axis(scores, want, 1), 1))
    small = TopK(1, 3)  # fewer rows than k so far: the missing places stay empty (-1)
    small.add(np.array([[0.5, 0.9]], np.float32), 10)
    assert sorted(small.ids[0].tolist()) == [-1, 10, 11]


def test_the_tuning_in_blocks_gives_the_tuning_in_one(monkeypatch):
    x = _near_copies(n=2000)
    whole = AnnIndex.build(x, nlist=16, scan_floor=0.0)
    monkeypatch.setattr(ann_mod, "TOPK_BLOCK", 97)  # many blocks, each query's own row in one of them
    blocks = AnnIndex.build(x, nlist=16, scan_floor=0.0)
    assert (blocks.tuned_nprobe, blocks.factor, blocks.tuned_recall) == (whole.tuned_nprobe, whole.factor,
                                                                         whole.tuned_recall)


@pytest.mark.parametrize("dim, per, spec", [(256, 2, "IVF64,PQ128x4fs"), (256, 4, "IVF64,PQ64x4fs"),
                                            (15, 2, "IVF64,PQ15x4fs"), (258, 4, "IVF64,PQ129x4fs")])
def test_pq_spec_codes_per_dims(dim, per, spec):
    assert ann_mod.pq_spec(dim, 64, per, rotate=False) == spec
    assert ann_mod.pq_spec(dim, 64, per, rotate=True) == f"RR{dim},{spec}"


def test_an_index_names_the_codes_it_was_built_with(monkeypatch):
    """The manifest's spec comes from the built index, not from the module's current choice."""
    x = _near_copies(n=2000, dim=16)
    monkeypatch.setattr(ann_mod, "DIMS_PER_CODE", 4)
    built = AnnIndex.build(x, nlist=16, tune=False)
    monkeypatch.setattr(ann_mod, "DIMS_PER_CODE", 2)
    assert built.spec == "RR16,IVF16,PQ4x4fs" and built.manifest_entry()["spec"] == "RR16,IVF16,PQ4x4fs"


def test_one_query_scans_with_the_single_query_kernel_and_finds_what_a_batch_finds():
    """A single search runs faiss's single-query fast-scan kernel, a batch (the tuning, the
    look-alikes) faiss's own pick; the candidates agree but for ties of the 4-bit scores."""
    x = _near_copies(n=3000, people=300)
    ann = AnnIndex.build(x, nlist=16, scan_floor=1.0)
    kernels = []
    real = ann.index.search

    def spy(q, k, params=None):
        kernels.append((len(q), ann.ivf.implem))
        return real(q, k, params=params)

    ann.index.search = spy
    one = [ann.search(q, 10) for q in x[:20]]
    params = ann_mod._faiss().SearchParametersIVF(nprobe=ann.nprobe)
    batch = ann.scan(x[:20], ann.factor * ann_mod.candidates_for(10), params)
    _ann_candidates(ann, x[:4], 4)
    assert kernels == [(1, ann_mod.SINGLE_QUERY_KERNEL)] * 20 + [(20, 0), (4, 0)]
    assert ann_mod.SINGLE_QUERY_KERNEL != 0
    shared = [len(np.intersect1d(a, b[b >= 0])) / len(a) for a, b in zip(one, batch)]
    assert min(shared) >= 0.95 and all(i in a for i, a in enumerate(one))  # each row among its candidates


def _uneven(n=6000, dim=32, seed=0):
    """Unit rows whose variance falls steeply over the dimensions (as embeddings' does): dimension i
    has scale 1 / (1 + i)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)) / (1.0 + np.arange(dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _code_recall(ann: AnnIndex, x: np.ndarray, queries: int = 100, shortlist: int = 20) -> float:
    """Recall@10 of the best ``shortlist`` rows by the 4-bit codes alone (every list scanned), for
    rows of ``x`` as queries: how well the codes order the rows, before any exact re-rank."""
    faiss = ann_mod._faiss()
    q = x[:queries]
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    cand = ann.scan(np.ascontiguousarray(q), shortlist, faiss.SearchParametersIVF(nprobe=ann.nlist))
    return float(np.mean([len(np.intersect1d(c, t)) / 10 for c, t in zip(cand, truth)]))


def test_wide_vectors_are_not_rotated_by_default():
    """A query reads the whole D x D rotation: past ``ROTATE_MAX_DIM`` the codes are left unrotated."""
    assert ann_mod.pq_spec(1024, 64).startswith("RR1024,")
    assert ann_mod.pq_spec(3072, 64) == "IVF64,PQ1536x4fs"
    assert ann_mod.pq_spec(3072, 64, rotate=True).startswith("RR3072,")


def test_rotated_codes_order_uneven_rows_better(monkeypatch):
    """With the variance in a few dimensions, plain 4-bit codes spend most sub-quantizers on
    dimensions that hardly vary; the rotation spreads it, so the codes' shortlist holds more of the
    true neighbours (measured here: about 0.6 against 0.3)."""
    x = _uneven()
    rotated = AnnIndex.build(x, nlist=16, tune=False)
    monkeypatch.setattr(ann_mod, "ROTATE", False)
    plain = AnnIndex.build(x, nlist=16, tune=False)
    assert rotated.rotated and rotated.spec.startswith("RR32,") and not plain.rotated
    assert _code_recall(rotated, x) > _code_recall(plain, x) + 0.15


def test_an_index_written_without_the_rotation_loads_and_searches(tmp_path, monkeypatch):
    """Cases built before the rotation keep their index: it loads as it was and is searched as it was."""
    x = _near_copies(n=2000, dim=16)
    monkeypatch.setattr(ann_mod, "ROTATE", False)
    old = AnnIndex.build(x, nlist=16, tune=False)
    old.save(tmp_path / "old.faiss")
    monkeypatch.setattr(ann_mod, "ROTATE", True)
    loaded = AnnIndex.load(tmp_path / "old.faiss", nprobe=16)
    assert not loaded.rotated and loaded.spec == "IVF16,PQ8x4fs"
    assert 0 in loaded.search(x[0], k=10) and list(loaded.search(x[0], 10)) == list(old.search(x[0], 10))


def test_a_rotated_build_is_deterministic_and_survives_a_save(tmp_path):
    x = _uneven(n=3000)
    a, b = AnnIndex.build(x, nlist=16, tune=False), AnnIndex.build(x, nlist=16, tune=False)
    faiss = ann_mod._faiss()
    assert np.array_equal(faiss.serialize_index(a.index), faiss.serialize_index(b.index))
    a.save(tmp_path / "a.faiss")
    loaded = AnnIndex.load(tmp_path / "a.faiss", nprobe=16)
    assert loaded.rotated and loaded.spec == a.spec
    assert list(loaded.search(x[5], 10)) == list(a.search(x[5], 10))
