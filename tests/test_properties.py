"""Laws that hold for any input, checked with hypothesis on small inputs (a few seconds per law):
the exact decomposition splits the ranking distance, a ranking does not depend on the query's
length, a filter commutes with the search, and a resumed index build equals an uninterrupted one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import write_image
from xreid.distance import rank_gallery
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.formulas import exact_decomposition, orthonormal_attribute_basis
from xreid.index.gallery import Filter, GalleryIndex, IndexWriter, Rows, encode_probabilities, threshold_code
from xreid.models.embedders import Embedder, Preprocess
from xreid.workflows.index import build_index

FAST = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
# no subnormals: a test earlier in the session may have turned on flush-to-zero (training does)
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


# --- the exact decomposition -----------------------------------------------------------------------------

@st.composite
def pairs_and_weights(draw):
    n = draw(st.integers(2, 12))
    a = draw(st.integers(1, n))
    w = draw(arrays(np.float64, (n, a), elements=finite))
    f_q = draw(arrays(np.float64, n, elements=finite))
    f_g = draw(arrays(np.float64, n, elements=finite))
    assume(np.linalg.norm(f_q) > 1e-3 and np.linalg.norm(f_g) > 1e-3 and np.abs(w).max() > 1e-3)
    return w, f_q / np.linalg.norm(f_q), f_g / np.linalg.norm(f_g)


@FAST
@given(pairs_and_weights())
def test_exact_decomposition_splits_the_distance_of_any_pair(case):
    w, f_q, f_g = case
    u = orthonormal_attribute_basis(w)
    parts, residual, d = exact_decomposition(f_q, f_g, u)
    assert d == pytest.approx(1.0 - f_q @ f_g, abs=1e-12)  # the cosine distance of the ranking
    assert (parts >= 0).all() and residual >= 0
    assert parts.sum() + residual == pytest.approx(d, abs=1e-9)
    # the residual is the part of the difference outside span(W), found here by least squares instead
    # (when W is well conditioned, so both agree on what its span is)
    s = np.linalg.svd(w, compute_uv=False)
    if s.min() > 1e-3 * s.max():
        diff = f_q - f_g
        coef = np.linalg.lstsq(w, diff, rcond=None)[0]
        assert residual == pytest.approx(0.5 * np.sum((diff - w @ coef) ** 2), abs=1e-9)
        assert parts.sum() == pytest.approx(0.5 * np.sum((w @ coef) ** 2), abs=1e-9)


# --- a small index of random vectors with metadata ------------------------------------------------------------

N, DIM = 40, 6
NAMES = ["personalMale", "carryingBackpack"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, DIM)).astype(np.float32)
    x[5] = x[4]  # the same vector twice: an exact tie, broken by id
    probs = rng.random((N, 2))
    probs[:4, 0] = [0.5, 0.49999, 0.25, 0.75]
    cams = rng.integers(1, 4, N)
    sites = rng.choice(["north", "south", ""], N)
    case = tmp_path_factory.mktemp("synthetic") / "case"
    identity = {"model": "synthetic", "fingerprint": "f" * 16, "preprocess": {}, "flip": False}
    with IndexWriter.create(case, identity, NAMES, {"head": "h", "head_fingerprint": "0"}, DIM) as w:
        for s in range(0, N, 16):
            e = min(N, s + 16)
            fields = [{"camera": f"c/{cams[i]}", **({"site": sites[i]} if sites[i] else {})} for i in range(s, e)]
            w.commit(Rows([f"p/{i}.jpg" for i in range(s, e)], x[s:e], probs[s:e], fields, np.arange(s, e) * 10.0))
        w.finish(ann_min_rows=10 ** 9)
    return GalleryIndex.open(case), x, probs, cams, sites


queries = arrays(np.float64, DIM, elements=finite).filter(lambda q: np.linalg.norm(q) > 1e-2)


@FAST
@given(q=queries, scale=st.floats(1e-3, 1e3, allow_subnormal=False), k=st.integers(1, N))
def test_a_ranking_does_not_depend_on_the_length_of_the_query(synthetic, q, scale, k):
    g, x, *_ = synthetic
    a, b = g.search(q, k), g.search(q * scale, k)
    assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_allclose(a.distances, b.distances, atol=1e-5)
    # and the library ranking function agrees (a gallery row's length does not matter either)
    order, _ = rank_gallery(q * scale, x * np.arange(1, N + 1)[:, None])
    brute = 1 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    np.testing.assert_allclose(np.sort(brute)[:k], a.distances, atol=1e-5)
    assert set(order[:k].tolist()) <= set(np.flatnonzero(brute <= a.distances[-1] + 1e-5).tolist())


@st.composite
def filters(draw):
    camera = draw(st.none() | st.lists(st.sampled_from(["1", "2", "3", "c/2", "9"]), min_size=1, max_size=3))
    after = draw(st.none() | st.integers(-10, N * 10 + 10).map(float))
    before = draw(st.none() | st.integers(-10, N * 10 + 10).map(float))
    attributes = draw(st.dictionaries(st.sampled_from(NAMES), st.booleans() | st.sampled_from([0.25, 0.5, 0.75, 0.9]),
                                      max_size=2))
    fields = draw(st.none() | st.lists(st.sampled_from(["north", "south", "east"]), min_size=1, max_size=2))
    return Filter(camera=camera, after=after, before=before, attributes=attributes,
                  fields={"site": fields} if fields else {})


def _keeps(where: Filter, probs, cams, sites) -> np.ndarray:
    """What the filter means, row by row, from the data the index was built from."""
    times = np.arange(N) * 10.0
    codes = encode_probabilities(probs)
    keep = np.ones(N, bool)
    if where.camera is not None:
        keep &= np.array([any(c in (str(cam), f"c/{cam}") for c in where.camera) for cam in cams])
    if where.after is not None:
        keep &= times >= where.after
    if where.before is not None:
        keep &= times < where.before
    for name, want in where.attributes.items():
        col = codes[:, NAMES.index(name)]
        keep &= (col >= threshold_code(0.5)) == want if isinstance(want, bool) else col >= threshold_code(want)
    if where.fields:
        keep &= np.isin(sites, where.fields["site"])
    return keep


@FAST
@given(q=queries, where=filters(), k=st.integers(1, N))
def test_a_filter_commutes_with_the_search(synthetic, q, where, k):
    g, x, probs, cams, sites = synthetic
    keep = _keeps(where, probs, cams, sites)
    filtered = g.search(q, k, where=where)
    everything = g.search(q, N)
    # filtering the full ranking gives the filtered search's results, in the same order
    assert filtered.ids.tolist() == [i for i in everything.ids.tolist() if keep[i]][:k]
    assert filtered.candidates == keep.sum()
    # and searching then filtering equals filtering then searching on the kept rows alone
    sel = np.flatnonzero(keep)
    if len(sel):
        order, _ = rank_gallery(q, x[sel])
        assert filtered.ids.tolist() == sel[order[:k]].tolist()


# --- resumed builds ---------------------------------------------------------------------------------------------

class MeanColour(Embedder):
    """A stand-in model (embedding = mean and spread per channel) that fails after ``fail_after`` batches."""

    name, preprocess, fingerprint = "mean-colour", Preprocess(height=8, width=4, scale=1.0), "0123456789abcdef"

    def __init__(self, fail_after=None):
        self.batches, self.fail_after = 0, fail_after

    def run(self, inputs):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        return np.concatenate([inputs.mean(axis=(2, 3)), inputs.std(axis=(2, 3))], axis=1)


IMAGES = 7


class Built:
    """The tiny image folder, its head and the state of an uninterrupted build (short repr for hypothesis)."""

    def __init__(self, root, head, state):
        self.root, self.head, self.state = root, head, state

    def __repr__(self):
        return f"Built({self.root})"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    for i in range(IMAGES):
        write_image(root / "gallery" / f"{i}.png", seed=i, size=(4, 8))
    head = AttributeHead(NAMES, np.random.default_rng(0).normal(size=(6, 2)), np.full(2, 0.4), {})
    build_index(MeanColour(), head, root, root / "whole", images=root / "gallery", batch_size=IMAGES, progress=False)
    return Built(root, head, _state(root / "whole"))


def _state(case):
    g = GalleryIndex.open(case)
    return (g.keys.tolist(), g.vectors.copy(), g.attribute_codes.copy(), [g.row(i) for i in range(len(g))],
            [g.thumbnail(i) for i in range(len(g))])


_runs = itertools.count()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(1, IMAGES), fail_after=st.integers(0, IMAGES - 1), second=st.integers(1, IMAGES + 1))
def test_a_resumed_build_equals_an_uninterrupted_one_for_any_batch_size(images, first, fail_after, second):
    """Interrupted after ``fail_after`` batches of ``first`` images, resumed with batches of ``second``."""
    assume(fail_after * first < IMAGES)  # the interruption comes before the end
    root, head = images.root, images.head
    case = root / f"case{next(_runs)}"
    with pytest.raises(KeyboardInterrupt):
        build_index(MeanColour(fail_after), head, root, case, images=root / "gallery", batch_size=first, progress=False)
    assert len(GalleryIndex.open(case)) == fail_after * first  # whole batches committed, nothing more
    build_index(MeanColour(), head, root, case, images=root / "gallery", batch_size=second, progress=False)
    keys, vectors, codes, rows, thumbs = _state(case)
    whole = images.state
    assert keys == whole[0] and rows == whole[3]
    assert thumbs == whole[4]
    np.testing.assert_allclose(vectors, whole[1], atol=1e-6)
    np.testing.assert_array_equal(codes, whole[2])
