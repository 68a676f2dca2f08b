"""The GP pieces behind the BayesOpt searchers (searchers/gp.py)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from searchers import gp


def test_log_h_matches_the_closed_form_and_stays_finite_far_below_the_incumbent():
    z = np.array([-5.0, -2.0, -1.0001, -0.5, 0.0, 1.0, 3.0])
    exact = np.log(norm.pdf(z) + z * norm.cdf(z))
    assert np.allclose(gp._log_h(z), exact, rtol=1e-6)
    far = gp._log_h(np.array([-40.0, -1e3, -1e7, -1e9]))
    # plain EI is exactly 0 here (underflow); log-EI still ranks the points
    assert np.all(np.isfinite(far)) and np.all(np.diff(far) < 0)
    assert norm.pdf(-40.0) + -40.0 * norm.cdf(-40.0) == 0.0


def test_the_map_prior_gradient_is_right():
    prior = gp.MapOptimizer(np.array([1.0, 9.0, 1.0]))
    theta = np.array([0.3, -0.5, 1.2, 0.1, -5.0])
    value, grad = prior.log_prior(theta)
    numeric = [(prior.log_prior(theta + 1e-6 * np.eye(5)[i])[0] - value) / 1e-6 for i in range(5)]
    assert np.allclose(grad, numeric, atol=1e-4)


def test_warp_keeps_the_order_and_compresses_the_tail():
    y = np.array([0.9, 0.89, 0.88, 0.5, -10.0])
    warped = gp.warp(y)
    assert list(np.argsort(warped)) == list(np.argsort(y))
    assert warped.max() == 0.0
    # the distance to a diverged run shrinks relative to the distances among the good ones
    assert (warped[0] - warped[4]) / (warped[0] - warped[2]) < (y[0] - y[4]) / (y[0] - y[2]) / 4


def test_subset_of_data_keeps_the_best_half_and_caps_the_size():
    rng = np.random.RandomState(0)
    y = rng.normal(size=1000)
    X = np.arange(1000.0)[:, None]
    Xs, ys = gp.subset_of_data(X, y, rng)
    assert len(ys) == gp.MAX_POINTS
    best = set(np.argsort(-y)[:gp.MAX_POINTS // 2])
    assert best <= set(Xs[:, 0].astype(int))
    small = gp.subset_of_data(X[:10], y[:10], rng)
    assert len(small[1]) == 10


def test_hyperparameters_are_reoptimized_on_the_schedule_only():
    from bayes_opt import BayesianOptimization

    space = BayesianOptimization(f=None, pbounds={"x": (0.0, 1.0)}, verbose=0).space
    model = gp.Model(space, np.random.RandomState(0))
    rng = np.random.RandomState(1)
    X = rng.uniform(size=(200, 1))
    y = np.sin(6 * X[:, 0])
    optimized = []
    for n in range(5, 200, 5):
        before = model._optimized_at
        model.fit(X[:n], y[:n])
        optimized.append(model._optimized_at != before)
    counts = list(range(5, 200, 5))
    assert all(optimized[i] for i, n in enumerate(counts) if n <= gp.ALWAYS_OPTIMIZE)
    later = [o for o, n in zip(optimized, counts) if n > gp.ALWAYS_OPTIMIZE]
    assert 0 < sum(later) < len(later) / 2
    assert math.isfinite(model._theta.sum())


def test_to_arrays_is_bayes_opts_params_to_array():
    from bayes_opt import BayesianOptimization

    space = BayesianOptimization(f=None, pbounds={"a": (0.0, 1.0), "b": (0, 9, int), "c": ["x", "y", "z"]},
                                 verbose=0).space
    params = [{"a": 0.25, "b": 3, "c": "y"}, {"a": 1.0, "b": 0, "c": "z"}]
    assert np.array_equal(gp.to_arrays(space, params), np.array([space.params_to_array(p) for p in params]))


def test_the_posterior_is_sklearns_gp_and_conditioning_is_a_refit():
    import warnings

    from bayes_opt import BayesianOptimization

    space = BayesianOptimization(f=None, pbounds={"a": (0.0, 1.0), "b": (0, 9, int), "c": ["x", "y", "z"]},
                                 verbose=0).space
    rng = np.random.RandomState(0)
    X = np.vstack([space.random_sample(random_state=rng) for _ in range(40)])
    y = np.sin(5 * X[:, 0]) + 0.1 * X[:, 1] + X[:, 3]
    sk = gp.make_gp(space, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X, y)  # MAP-fitted hyperparameters, then the same ones in ours
    ours = gp.Posterior(space, sk.kernel_.theta, X, y)
    grid = np.vstack([space.random_sample(random_state=rng) for _ in range(300)])
    for a, b in zip(ours.predict(grid, return_std=True), sk.predict(grid, return_std=True)):
        assert np.allclose(a, b, rtol=1e-7, atol=1e-9)
    # given 5 more points: the grown Cholesky factor predicts as a GP fitted to all 45 from scratch
    grown = gp.Posterior(space, sk.kernel_.theta, X[:35], y[:35]).condition(X[35:], y[35:])
    for a, b in zip(grown.predict(grid, return_std=True), ours.predict(grid, return_std=True)):
        assert np.allclose(a, b, rtol=1e-7, atol=1e-9)
