"""The GP of ``searchers.gp`` with its hyperparameters fixed: predictions and conditioning.

Split from gp.py (which fits the hyperparameters with sklearn and searches the acquisition):
this is the part every suggestion pays for.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.spatial.distance import cdist

GP_ALPHA = 1e-10  # jitter on the kernel's diagonal, sklearn's default (gp.make_gp and Posterior)


class Posterior:
    """A GP with fixed hyperparameters: mean and standard deviation at new inputs, and the same GP
    given more points. Ours, with sklearn's GaussianProcessRegressor math exactly (the kernel of
    ``gp.make_gp``, ``alpha``, ``normalize_y``, the noise in the predictive variance), for the fits
    that optimize nothing, which are nearly all of a long run's: sklearn's ``predict`` builds the
    signal and noise kernels as full matrices and transforms the inputs on every call, and adding
    pending points meant a new Cholesky from scratch. At 200 observations and 1,944 candidates
    sklearn's predict took 7.2 ms, this 3.6 ms; the suggestions of an LCBench ASHA replay cost
    about half as much in all."""

    def __init__(self, space, theta: np.ndarray, X: np.ndarray, y: np.ndarray, _factor=None):
        self.space = space
        self.theta = np.asarray(theta, dtype=float)
        self.X_train_ = np.asarray(X, dtype=float)  # the name bayes_opt's acquisition wrapper reads
        self.y = np.asarray(y, dtype=float)
        self._signal, self._noise = math.exp(self.theta[0]), math.exp(self.theta[-1])
        self._inverse_scales = np.exp(-self.theta[1:-1])
        self._scaled = self._scale(self.X_train_)
        if _factor is None:
            K = self._kernel(self._scaled, self._scaled)
            K[np.diag_indices_from(K)] += self._noise + GP_ALPHA
            _factor = cholesky(K, lower=True, check_finite=False)
        self._L = _factor
        self._mean = float(np.mean(self.y))
        std = float(np.std(self.y))
        self._std = std if std > 10 * np.finfo(float).eps else 1.0  # sklearn's _handle_zeros_in_scale
        self._weights = cho_solve((self._L, True), (self.y - self._mean) / self._std, check_finite=False)

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return self.space.kernel_transform(np.atleast_2d(X)) * self._inverse_scales

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Matern 5/2 on scaled inputs times the signal variance: sklearn's signal * ((1 + d + d^2 / 3)
        * exp(-d)), d = sqrt(5) * distance, in the same order (the same floats), in place: this is
        the bulk of a suggestion, and the temporaries cost as much as the arithmetic."""
        d = cdist(A, B)
        d *= math.sqrt(5)
        out = d + 1.0
        square = np.square(d)
        square /= 3.0
        out += square
        np.negative(d, out=d)
        np.exp(d, out=d)
        out *= d
        out *= self._signal
        return out

    def predict(self, X: np.ndarray, return_std: bool = False):
        cross = self._kernel(self._scale(X), self._scaled)
        mean = self._std * (cross @ self._weights) + self._mean
        if not return_std:
            return mean
        v = solve_triangular(self._L, cross.T, lower=True, check_finite=False)
        var = (self._signal + self._noise) - np.einsum("ij,ij->j", v, v)
        return mean, self._std * np.sqrt(np.maximum(var, 0.0))

    def condition(self, X_more: np.ndarray, y_more: np.ndarray) -> Posterior:
        """The same hyperparameters given (X_more, y_more) too: the Cholesky factor grows by a block
        (O(n^2) per point) instead of being refactored."""
        scaled = self._scale(X_more)
        b = solve_triangular(self._L, self._kernel(self._scaled, scaled), lower=True, check_finite=False)
        corner = self._kernel(scaled, scaled) - b.T @ b
        corner[np.diag_indices_from(corner)] += self._noise + GP_ALPHA
        n, m = len(self._L), len(scaled)
        factor = np.zeros((n + m, n + m))
        factor[:n, :n], factor[n:, :n] = self._L, b.T
        factor[n:, n:] = cholesky(corner, lower=True, check_finite=False)
        return Posterior(self.space, self.theta, np.vstack([self.X_train_, X_more]),
                         np.concatenate([self.y, y_more]), _factor=factor)
