"""The one ranking distance (docs/METHODS.md#distance-and-normalisation), hand-computed."""

import numpy as np
import pytest
import torch

from xreid import distance
from xreid.distance import (cosine_distance, cosine_similarity, l2_normalise, pair_distance, paired_cosine,
                            rank_gallery, row_norms)


def test_l2_normalise_hand_computed_numpy_and_torch():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalise(x), [[0.6, 0.8], [0.0, 0.0]])  # zero rows stay zero
    t = l2_normalise(torch.tensor([[3.0, 4.0]]))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([[0.6, 0.8]]))
    np.testing.assert_allclose(l2_normalise(np.array([[3.0, 0.0], [4.0, 2.0]]), axis=0), [[0.6, 0.0], [0.8, 1.0]])


def test_cosine_distance_hand_computed():
    q = np.array([1.0, 0.0])
    g = np.array([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(cosine_distance(q, g), [0.0, 1.0, 2.0, 1 - 1 / np.sqrt(2)])
    np.testing.assert_allclose(cosine_similarity(q[None], g), [[1.0, 0.0, -1.0, 1 / np.sqrt(2)]])
    # on unit vectors it is half the squared Euclidean distance
    np.testing.assert_allclose(pair_distance(l2_normalise(q), l2_normalise(g)), cosine_distance(q, g))


def test_row_norms_and_an_unnormalised_gallery_match_the_definition():
    np.testing.assert_allclose(row_norms(np.array([[3.0, 4.0], [0.0, 0.0]])), [5.0, 1e-12])
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(3, 16)), 7 * rng.normal(size=(40, 16))
    by_definition = l2_normalise(q) @ l2_normalise(g).T
    np.testing.assert_allclose(cosine_similarity(q, g), by_definition, rtol=1e-12)
    t = cosine_similarity(torch.from_numpy(q), torch.from_numpy(g))  # torch keeps its own path
    np.testing.assert_allclose(t.numpy(), by_definition, rtol=1e-12)


def test_rank_gallery_nearest_first_ties_in_gallery_order():
    order, dist = rank_gallery(np.array([1.0, 0.0]), np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.1]]))
    assert order.tolist() == [1, 3, 0, 2]
    assert dist[0] == dist[2]


def test_l2_normalise_of_lists_scalars_and_torch_vectors():
    np.testing.assert_allclose(l2_normalise([3.0, 4.0]), [0.6, 0.8])
    np.testing.assert_allclose(l2_normalise((0.0, -2.0)), [0.0, -1.0])
    t = l2_normalise(torch.tensor([3.0, 4.0]))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([0.6, 0.8]))
    cols = l2_normalise(torch.tensor([[3.0, 1.0], [4.0, 0.0]]), axis=0)  # along the first axis
    assert torch.allclose(cols, torch.tensor([[0.6, 1.0], [0.8, 0.0]]))


def test_normalised_true_trusts_the_caller():
    q, g = np.array([2.0, 0.0]), np.array([[3.0, 0.0], [0.0, 1.0]])
    # the caller says both are unit rows: the distance is 1 - q . g as given (here 1 - 6 = -5)
    np.testing.assert_allclose(cosine_distance(q, g, normalised=True), [-5.0, 1.0])
    np.testing.assert_allclose(cosine_distance(q, g), [0.0, 1.0])


def test_paired_cosine_hand_computed():
    a = np.array([[3.0, 4.0], [1.0, 0.0], [2.0, 2.0]])
    b = np.array([[4.0, 3.0], [0.0, 2.0], [-1.0, -1.0]])
    np.testing.assert_allclose(paired_cosine(a, b), [24 / 25, 0.0, -1.0])
    assert paired_cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(2 ** -0.5)


def test_rank_gallery_scores_in_float32_and_keeps_long_ties_in_order():
    _, dist = rank_gallery(np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert dist.dtype == np.float32
    _, dist = rank_gallery(np.array([1.0, 0.0], np.float32), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert dist.dtype == np.float32
    # 40 rows in four groups of equal distance, interleaved: each group keeps gallery order
    g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])[np.arange(40) % 4]
    order, _ = rank_gallery(np.array([1.0, 0.0]), g)
    assert order.tolist() == [i for k in (0, 2, 1, 3) for i in range(k, 40, 4)]


def test_one_query_against_few_rows_is_summed_without_the_blas(monkeypatch):
    """A search's re-rank (one query, a few hundred candidates) runs numpy's own loop on the calling
    thread; a larger product keeps the BLAS. Both give the definition's values."""
    calls = []
    einsum = np.einsum
    monkeypatch.setattr(distance.np, "einsum", lambda *a, **kw: calls.append(a[0]) or einsum(*a, **kw))
    monkeypatch.setattr(distance, "OWN_LOOP_ROWS", 50)
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=16).astype(np.float32), rng.normal(size=(50, 16)).astype(np.float32)
    np.testing.assert_allclose(cosine_similarity(q, g, normalised=True), g @ q, rtol=1e-5)
    np.testing.assert_allclose(cosine_distance(q, g), 1 - l2_normalise(g) @ l2_normalise(q), rtol=1e-5, atol=1e-6)
    assert calls.count("nd,d->n") == 2  # (row_norms has an einsum of its own)
    calls.clear()
    big = np.concatenate([g, g[:1]])  # 51 rows: past the limit
    np.testing.assert_allclose(cosine_similarity(q, big, normalised=True), big @ q, rtol=1e-5)
    np.testing.assert_allclose(cosine_similarity(q[None], g, normalised=True), (g @ q)[None], rtol=1e-5)  # a batch
    assert "nd,d->n" not in calls
