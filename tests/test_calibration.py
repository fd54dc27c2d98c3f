"""Platt recalibration of the attribute layer (xreid.explain.calibration): the penalised loss by hand,
the fit against an independent optimiser (scipy), its damping where a plain Newton step diverges, and
its refusals."""

import numpy as np
import pytest
from scipy.optimize import minimize

from xreid.explain.calibration import _platt_loss, apply_platt, fit_platt, reliability, sigmoid

# A small, strongly anti-correlated set: a plain Newton iteration from (1, 0) overshoots and diverges
# (slope 66, intercept 37 after 100 steps); the damped fit must land on the optimum (slope -1.77).
Z = np.array([2.41, -1.48, 4.37, -3.17, -1.59, 2.24, 0.12, 4.81, 0.45, -1.52, -0.91, -2.62, -3.07, 1.51, 1.4, 3.11,
              -1.81, 4.05, -0.69, 3.78, -1.04, -1.77, 0.6, 2.48, 0.39, -1.41, -3.22])
Y = np.array([0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1], bool)


def _reference(z, y, l2):
    """The penalised Platt objective minimised by scipy (BFGS), one attribute."""
    def objective(v):
        t = v[0] * z + v[1]
        return np.mean(np.logaddexp(0.0, t) - y * t) + 0.5 * l2 * ((v[0] - 1) ** 2 + v[1] ** 2)

    return minimize(objective, [1.0, 0.0], method="BFGS", options={"gtol": 1e-12}).x


def test_platt_loss_hand_computed():
    z = np.array([[0.0, 1.0], [2.0, -1.0]])
    y = np.array([[1.0, 0.0], [0.0, 0.0]])
    slope, intercept = np.array([2.0, 1.0]), np.array([0.5, -1.0])
    # attribute 0: t = (0.5, 4.5): nll = (log(1 + e^0.5) - 0.5 + log(1 + e^4.5)) / 2; penalty 0.5 l2 (1 + 0.25)
    # attribute 1: t = (0, -2): nll = (log 2 + log(1 + e^-2)) / 2; penalty 0.5 l2 (0 + 1)
    l2 = 0.1
    expected = [(np.log1p(np.exp(0.5)) - 0.5 + np.log1p(np.exp(4.5))) / 2 + 0.5 * l2 * 1.25,
                (np.log(2) + np.log1p(np.exp(-2))) / 2 + 0.5 * l2 * 1.0]
    np.testing.assert_allclose(_platt_loss(z, y, slope, intercept, l2), expected, rtol=1e-12)
    # slope 1 and intercept 0 carry no penalty
    np.testing.assert_allclose(_platt_loss(z, y, np.ones(2), np.zeros(2), 5.0),
                               [(np.log(2) - 0 + np.log1p(np.exp(2))) / 2, (np.log1p(np.e) + np.log1p(np.exp(-1))) / 2])


@pytest.mark.parametrize("l2", [1e-3, 0.3])
def test_fit_is_the_optimum_of_the_penalised_likelihood(l2):
    rng = np.random.default_rng(1)
    z = np.stack([rng.normal(size=300) * 3.0, rng.normal(size=300) * 0.2], axis=1)  # two attributes, unlike scales
    y = rng.random((300, 2)) < sigmoid(np.array([0.7, 4.0]) * z + np.array([-0.5, 1.0]))
    cal = fit_platt(z, y, l2=l2)
    for a in range(2):
        np.testing.assert_allclose(cal[a], _reference(z[:, a], y[:, a], l2), atol=1e-6)


def test_newton_steps_reach_the_optimum_in_a_few_steps():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(400, 2)) * [2.0, 0.5]  # two attributes, each with its own curvature
    y = rng.random((400, 2)) < sigmoid(np.array([1.5, 3.0]) * z + np.array([-0.5, 1.5]))
    cal = fit_platt(z, y, steps=6)
    for a in range(2):
        np.testing.assert_allclose(cal[a], _reference(z[:, a], y[:, a], 1e-3), atol=1e-7)


def test_sigmoid_clips_its_argument_at_50():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        assert sigmoid(np.array([-1000.0]))[0] == 1.0 / (1.0 + np.exp(50.0))
        assert sigmoid(-50.5) == 1.0 / (1.0 + np.exp(50.0))
        assert sigmoid(np.array([1000.0]))[0] == 1.0


def test_the_fit_is_damped_where_a_plain_newton_step_overshoots():
    cal = fit_platt(Z[:, None], Y[:, None])
    np.testing.assert_allclose(cal[0], _reference(Z, Y, 1e-3), atol=1e-6)
    assert cal[0, 0] == pytest.approx(-1.7668, abs=1e-3)


def test_apply_platt_and_reliability():
    cal = np.array([[2.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(apply_platt(np.array([[0.5, 0.0], [1.0, -2.0]]), cal),
                               [[sigmoid(0.0), 0.5], [sigmoid(1.0), sigmoid(-2.0)]])
    assert sigmoid(np.array([1000.0, -1000.0])).tolist() == [pytest.approx(1.0), pytest.approx(0.0)]
    assert sigmoid(0.0) == 0.5 and sigmoid(np.log(3.0)) == pytest.approx(0.75)
    # logit > 0 is the decision: a logit of exactly 0 says "absent"
    assert reliability(np.array([[0.0], [1.0]]), np.array([[False], [True]]))[0] == 1.0


def test_fit_refuses_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match=r"logits \(3, 2\) and labels \(3, 1\) must be the same M x A shape"):
        fit_platt(np.zeros((3, 2)), np.zeros((3, 1), bool))
    with pytest.raises(ValueError, match="must be the same M x A shape"):
        fit_platt(np.zeros(3), np.zeros(3, bool))  # one attribute must still be a column
    with pytest.raises(ValueError, match="^calibration: no images to calibrate on$"):
        fit_platt(np.zeros((0, 2)), np.zeros((0, 2), bool))
    one = fit_platt(np.array([[2.0]]), np.array([[True]]))  # a single image is enough to fit (finitely)
    assert np.isfinite(one).all() and one[0, 0] > 1.0
