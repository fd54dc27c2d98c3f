import numpy as np
import pytest

from xreid.distance import cosine_distance, l2_normalise
from xreid.explain.formulas import (attribute_error, class_balanced_weights, confident_attributes,
                                    dims_per_attribute, exact_decomposition, extreme_attributes, matching_scores,
                                    orthonormal_attribute_basis)


def test_matching_scores_hand_computed():
    x_q = np.array([0.9, 0.05, 0.5])
    x_g = np.array([0.8, 0.5, 0.5])
    # a0: (1 - 0.1) / (0.5 + 0.4) = 1.0 ; a1: (1 - 0.45) / (0.5 + 0.45) = 0.55/0.95 ; a2: 1 / 0.5 = 2 -> clipped 1
    raw = matching_scores(x_q, x_g, clip=False)
    np.testing.assert_allclose(raw, [1.0, 0.55 / 0.95, 2.0])
    np.testing.assert_allclose(matching_scores(x_q, x_g), [1.0, 0.55 / 0.95, 1.0])
    # identical extreme probabilities score exactly 1; opposite ones near 0
    assert matching_scores(np.array([0.99]), np.array([0.99]))[0] == pytest.approx(1.0)
    assert matching_scores(np.array([0.99]), np.array([0.01]))[0] == pytest.approx(0.02 / 0.99)


def test_confidence_threshold():
    x = np.array([0.05, 0.25, 0.5, 0.79, 0.81, 0.95])
    assert confident_attributes(x, 0.3).tolist() == [True, False, False, False, True, True]
    assert confident_attributes(x, 0.4).tolist() == [True, False, False, False, False, True]


def test_attribute_error_hand_computed():
    f_q = np.array([1.0, 0.0, 2.0])
    f_g = np.array([0.0, 1.0, 0.0])
    w = np.array([[1.0, 0.0], [2.0, -1.0], [0.5, 1.0]])
    # squared diffs (1, 1, 4): e_0 = 1 + 2 + 2 = 5, e_1 = 0 - 1 + 4 = 3
    np.testing.assert_allclose(attribute_error(f_q, f_g, w), [5.0, 3.0])


def test_exact_decomposition_hand_computed():
    # W spans the first two axes (non-orthogonal columns); the difference has a part outside the span
    w = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    u = orthonormal_attribute_basis(w)
    np.testing.assert_allclose(u.T @ u, np.eye(2), atol=1e-12)
    f_q = np.array([0.6, 0.0, 0.8])
    f_g = np.array([0.0, 0.6, 0.8])
    parts, residual, d = exact_decomposition(f_q, f_g, u)
    # D = (0.6, -0.6, 0): inside span(W), so no residual; d = (0.36 + 0.36) / 2 = 0.36
    assert d == pytest.approx(0.36) and residual == pytest.approx(0.0, abs=1e-12)
    assert parts.sum() == pytest.approx(0.36)
    assert (parts >= 0).all()
    # a difference along the third axis is entirely residual
    parts, residual, d = exact_decomposition(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0]), u)
    assert residual == pytest.approx(0.5) and parts.sum() == pytest.approx(0.0)


def test_exact_decomposition_sums_to_the_ranking_distance():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 10))
    u = orthonormal_attribute_basis(w)
    f_q = l2_normalise(rng.normal(size=64))
    f_g = l2_normalise(rng.normal(size=(7, 64)))
    parts, residual, d = exact_decomposition(f_q, f_g, u)
    np.testing.assert_allclose(d, 1 - f_g @ f_q)  # the cosine distance used for ranking
    np.testing.assert_allclose(d, cosine_distance(f_q, f_g), atol=1e-12)
    assert np.all(np.abs(parts.sum(1) + residual - d) <= 1e-5 * d)
    assert (parts >= 0).all() and (residual >= 0).all()


def test_basis_handles_dependent_weights():
    w = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])  # second column = 2 x first
    u = orthonormal_attribute_basis(w)
    assert np.isfinite(u).all()
    parts, residual, d = exact_decomposition(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), u)
    assert parts.sum() + residual == pytest.approx(d)


def test_class_balanced_weights():
    labels = np.array([[1, 0], [0, 0]], bool)
    w = class_balanced_weights(labels, np.array([0.1, 0.5]), "exp")
    np.testing.assert_allclose(w, [[np.exp(0.9), np.exp(0.5)], [np.exp(0.1), np.exp(0.5)]])
    w = class_balanced_weights(labels, np.array([0.1, 0.5]))  # inverse frequency: 0.5/p and 0.5/(1-p)
    np.testing.assert_allclose(w, [[5.0, 1.0], [0.5 / 0.9, 1.0]])
    # each class carries the same total weight
    labels = np.array([[1], [0], [0], [0]], bool)
    w = class_balanced_weights(labels, np.array([0.25]))
    assert w[labels].sum() == pytest.approx(w[~labels].sum())


def test_dims_per_attribute_and_extremes():
    w = np.array([[0.1, 0.9, -0.2], [0.5, 0.1, 0.0], [0.2, 0.3, 0.7], [-1.0, 0.4, 0.0]])
    assert dims_per_attribute(w).tolist() == [1, 2, 1]
    top, bottom = extreme_attributes(w, 0, k=2)
    assert top.tolist() == [1, 0] and bottom.tolist() == [2, 0]


def test_confidence_threshold_is_strict_at_the_boundary():
    # |x - 0.5| > t: a probability exactly t away from 0.5 is not confident (0.25 and 0.75 are exact in binary)
    x = np.array([0.25, 0.75, 0.2499, 0.7501, 0.5])
    assert confident_attributes(x, 0.25).tolist() == [False, False, True, True, False]
    # the default threshold (0.3): confident below 0.2 or above 0.8
    from xreid.explain.formulas import DEFAULT_CONFIDENCE
    assert DEFAULT_CONFIDENCE == 0.3
    assert confident_attributes(np.array([0.19, 0.21, 0.79, 0.81])).tolist() == [True, False, False, True]


def test_attribute_error_squares_the_difference_of_both_sides():
    # both embeddings non-zero in the same dims: (1 - 3)^2 = 4, (2 - 1)^2 = 1 (a sum would give 16 and 9)
    f_q, f_g = np.array([1.0, 2.0]), np.array([3.0, 1.0])
    np.testing.assert_allclose(attribute_error(f_q, f_g, np.array([[1.0], [2.0]])), [4.0 + 2.0])
    np.testing.assert_allclose(attribute_error(f_q, np.stack([f_g, f_q]), np.eye(2)), [[4.0, 1.0], [0.0, 0.0]])


def test_class_balanced_weights_clip_ratios_of_0_and_1_and_stay_float64():
    labels = np.array([[True, True], [False, False]])
    # p = 0 and 1 are clipped to 0.001 and 0.999: inverse weights 0.5 / 0.001 = 500 and 0.5 / 0.999
    w = class_balanced_weights(labels, np.array([0.0, 1.0]))
    np.testing.assert_allclose(w, [[500.0, 0.5 / 0.999], [0.5 / 0.999, 500.0]])
    w = class_balanced_weights(labels, np.array([0.0, 1.0]), "exp")
    np.testing.assert_allclose(w, [[np.exp(0.999), np.exp(0.001)], [np.exp(0.001), np.exp(0.999)]])
    assert class_balanced_weights(labels, np.array([0.1, 0.5], np.float32)).dtype == np.float64
    with pytest.raises(ValueError, match="unknown class-balancing scheme 'sqrt'; choose 'inverse' or 'exp'"):
        class_balanced_weights(labels, np.array([0.1, 0.5]), "sqrt")


def test_dims_per_attribute_counts_attributes_that_win_no_dim():
    w = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]])  # attributes 1 and 2 never hold the largest weight
    assert dims_per_attribute(w).tolist() == [2, 0, 0]


def test_extreme_attributes_default_to_three():
    top, bottom = extreme_attributes(np.array([[0.1, 0.5, -0.3, 0.9, 0.0]]), 0)
    assert top.tolist() == [3, 1, 0] and bottom.tolist() == [2, 4, 0]


def test_matching_scores_are_computed_in_float64_whatever_the_input():
    x_q = np.array([0.1, 0.9], np.float32)
    x_g = np.array([0.3, 0.2])
    q = x_q.astype(np.float64)  # the float32 values, exactly
    expected = (1.0 - np.abs(q - x_g)) / (0.5 + np.abs(q - 0.5))
    np.testing.assert_array_equal(matching_scores(x_q, x_g, clip=False), expected)
    np.testing.assert_array_equal(matching_scores(x_g, x_q.reshape(1, 2), clip=False),
                                  (1.0 - np.abs(x_g - q)) / (0.5 + np.abs(x_g - 0.5))[None])


def test_basis_drops_directions_relative_to_the_largest_eigenvalue():
    # W^T W = diag(2^-20, 1): the small direction sits exactly at rcond = 2^-20 x the largest and is dropped
    w = np.diag([2.0 ** -10, 1.0])
    u = orthonormal_attribute_basis(w, rcond=2.0 ** -20)
    np.testing.assert_allclose(u, [[0.0, 0.0], [0.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(orthonormal_attribute_basis(w, rcond=2.0 ** -21), np.eye(2), atol=1e-12)
    # the cut is relative: weights of any scale keep both directions when they are well conditioned ...
    for scale in (1e-4, 1e3):
        u = orthonormal_attribute_basis(scale * np.array([[1.0, 0.5], [0.0, 1.0], [0.0, 0.0]]))
        np.testing.assert_allclose(u.T @ u, np.eye(2), atol=1e-12)
    # ... and drop a direction 1e-7 times weaker than the largest (eigenvalue 0.25 against 1e6)
    u = orthonormal_attribute_basis(np.diag([1000.0, 0.5]))
    np.testing.assert_allclose(u, [[1.0, 0.0], [0.0, 0.0]], atol=1e-12)


def test_basis_of_float32_weights_is_float64_and_orthonormal():
    w = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    u = orthonormal_attribute_basis(w)
    assert u.dtype == np.float64
    np.testing.assert_allclose(u.T @ u, np.eye(5), atol=1e-12)
