"""The Gaussian-process model and acquisition behind ``searchers.bayesopt``, built on
bayes_opt 3.x's own pieces: its ``TargetSpace`` (typed parameters, integer rounding and
one-hot categoricals inside the kernel, after Garrido-Merchan & Hernandez-Lobato 2020), its
kernel wrapper and its acquisition base class. What bayes_opt lacks or makes too slow is
ours, and marked as such:

* the kernel: bayes_opt's default is one isotropic Matern length scale over raw inputs, which
  lets a wide input (an integer width 16..512) swamp a narrow one. Ours is an ARD Matern-5/2
  times a signal variance plus a noise term, over inputs normalized to [0, 1] (floats, log10
  of log-scaled ones; integers and one-hot columns are scaled through the bounds), with its
  hyperparameters fitted by MAP under Optuna's GP priors (``MapOptimizer``): maximum
  likelihood let ARD length scales collapse on Hartmann-6 (issue 14's ablation).
* output warping (``warp``): compresses the skewed tail of bad scores.
* log expected improvement (Ament et al. 2023, the acquisition of Optuna's and BoTorch's
  GP samplers): plain EI underflows to exactly 0 far from the incumbent, leaving the
  optimizer a flat landscape; bayes_opt has no log-EI.
* the acquisition optimizer: bayes_opt's (10,000 random points, then L-BFGS-B with
  finite differences one point at a time, or differential evolution on mixed spaces) costs
  0.2-0.7 s a suggestion; ours scores ``N_RANDOM`` random points, then improves the best
  observation and the best ``N_LOCAL`` of them with L-BFGS-B over the continuous inputs (the gradient by finite differences
  evaluated in one batch) and greedy moves over the discrete ones, and returns every
  candidate ranked, so the searcher can take the next best when the best was tried.
* the refit schedule (``Model.fit``): hyperparameters re-optimized from the previous optimum,
  at every suggestion up to 50 observations, then only when the data grew by a fifth, so a
  long ASHA run (hundreds of trials) mostly pays for a Cholesky.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from bayes_opt import acquisition as bo_acquisition
from bayes_opt.parameter import CategoricalParameter, FloatParameter, wrap_kernel
from scipy.optimize import minimize
from scipy.special import erfcx, log_ndtr
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from searchers.posterior import GP_ALPHA, Posterior

# Hard bounds, in units of each input's range, around what the priors already favour: they only
# keep the optimizer out of numerically degenerate corners (Hartmann-6 ablation, seeds 0-9:
# (0.05, 20) 0.107 median regret at 50, (0.01, 100) 0.002 with the priors).
LENGTH_SCALE_BOUNDS = (0.01, 100.0)
# Noise variance relative to the normalized targets' variance: from deterministic (1e-6) to a
# third of the signal (an SGD run's seed-to-seed spread is well inside that).
NOISE_BOUNDS = (1e-6, 0.3)
SIGNAL_BOUNDS = (0.05, 20.0)
# The refit schedule, in observations: hyperparameters are optimized (from the last optimum) at
# every suggestion up to ALWAYS_OPTIMIZE, then whenever the data grew by REOPTIMIZE_GROWTH; RESTARTS
# random restarts join whenever it grew by RESTART_GROWTH. In between, only the Cholesky is redone.
ALWAYS_OPTIMIZE = 50
REOPTIMIZE_GROWTH = 1.2
RESTART_GROWTH = 1.5
RESTARTS = 2
MAX_POINTS = 200  # observations the GP is fitted to at most (subset_of_data)
N_RANDOM = 1024  # random points scored per suggestion
N_LOCAL = 4  # of which this many are refined locally
ROULETTE = True
MAP = True  # MapOptimizer's priors (False: sklearn's maximum likelihood, for ablations)
WARP_SCALE: float | None = 3.0  # see warp(); None: no warping
FD_STEP = 1e-6  # finite-difference step on a [0, 1]-normalized input


def warp(y: np.ndarray) -> np.ndarray:
    """The targets as the GP sees them (output warping, as HEBO does; Cowen-Rivers et al. 2022):
    each target's gap to the best, g, becomes -log(1 + g / s), s = ``WARP_SCALE`` times the median
    gap. Gaps up to about s stay nearly linear, larger ones are compressed. Validation scores
    are skewed (a few diverged configurations far below the rest); unwarped, a stationary GP
    spends its flexibility on the tail and its mean near the optimum is off by more than the
    differences between the good configurations (on the mixed benchmark function it stalled
    at a width 7 off the optimum, 5x Optuna GP's regret). The scale was chosen on
    benchmarks/searcher_quality.py's functions, seeds 0-9 (none, Yeo-Johnson, and this with
    s = 0.1, 1, 3 median gaps; Hartmann-6 also on seeds 30-59); its reported table uses seeds 100-129."""
    if WARP_SCALE is None or len(y) < 3 or np.ptp(y) == 0:
        return y
    gap = y.max() - y
    return -np.log1p(gap / (WARP_SCALE * np.median(gap[gap > 0])))


class LogExpectedImprovement(bo_acquisition.AcquisitionFunction):
    """log EI(x) = log E[max(f(x) - best, 0)], computed without underflow (ours: bayes_opt has no log-EI)."""

    def __init__(self) -> None:
        super().__init__()
        self.y_max = 0.0  # the incumbent: the best real (not believed) observation

    def base_acq(self, mean, std):
        std = np.maximum(std, 1e-12)
        z = (mean - self.y_max) / std
        return np.log(std) + _log_h(z)

    def get_acquisition_params(self) -> dict:
        return {"y_max": self.y_max}

    def set_acquisition_params(self, params: dict) -> None:
        self.y_max = params["y_max"]


def _log_h(z: np.ndarray) -> np.ndarray:
    """log(phi(z) + z * Phi(z)), stable for very negative z (Ament et al. 2023, eq. 9)."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    c1 = 0.5 * math.log(2 * math.pi)
    c2 = 0.5 * math.log(math.pi / 2)
    high = z > -1
    zh = z[high]
    out[high] = np.log(np.exp(-0.5 * zh ** 2) / math.sqrt(2 * math.pi) + zh * np.exp(log_ndtr(zh)))
    low = ~high
    zl = z[low]
    far = zl < -1e6
    # log1mexp(a) = log(1 - exp(a)) for a = log(erfcx(-z/sqrt 2) |z|) + c2 < 0
    a = np.log(erfcx(-zl / math.sqrt(2)) * np.abs(zl)) + c2
    a = np.minimum(a, -1e-300)
    log1mexp = np.where(a > -math.log(2), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))
    out[low] = np.where(far, -0.5 * zl ** 2 - c1 - 2 * np.log(np.abs(zl)), -0.5 * zl ** 2 - c1 + log1mexp)
    return out


def _ranges(space) -> np.ndarray:
    """Each array column's range: floats are [0, 1] already, one-hot columns 1, integers high - low."""
    width = space.bounds[:, 1] - space.bounds[:, 0]
    return np.where(width > 0, width, 1.0)


class MapOptimizer:
    """sklearn's GP ``optimizer`` hook, maximizing the log marginal likelihood plus a log prior
    on the hyperparameters (MAP) rather than the likelihood alone: with tens of points the
    maximum-likelihood length scales are often degenerate. The priors are Optuna's GP sampler's
    (optuna/_gp/prior.py): on each inverse squared length scale lam (of a [0, 1]-normalized
    input) log p = -(0.1 / lam + 0.1 lam), on the signal variance Gamma(2, 1), on the noise
    variance Gamma(1.1, 30). ``theta`` is sklearn's: log signal variance, log length scales,
    log noise variance, in that order (the kernel of ``make_gp``)."""

    def __init__(self, ranges: np.ndarray):
        self.log_ranges = np.log(ranges)

    def log_prior(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_signal, log_ls, log_noise = theta[0], theta[1:-1] - self.log_ranges, theta[-1]
        lam = np.exp(-2 * log_ls)  # inverse squared length scale of the normalized input
        value = -np.sum(0.1 / lam + 0.1 * lam) + (math.log(1) + log_signal - math.exp(log_signal)) \
            + (0.1 * log_noise - 30 * math.exp(log_noise))
        grad = np.empty_like(theta)
        grad[0] = 1 - math.exp(log_signal)
        grad[1:-1] = -(0.2 / lam - 0.2 * lam)  # d/dlog_ls of -(0.1/lam + 0.1 lam), lam = exp(-2 log_ls)
        grad[-1] = 0.1 - 30 * math.exp(log_noise)
        return value, grad

    def __call__(self, obj_func, initial_theta, bounds):
        def negative_log_posterior(theta):
            nlml, grad = obj_func(theta, eval_gradient=True)  # sklearn's: negative log likelihood
            value, prior_grad = self.log_prior(theta)
            return nlml - value, grad - prior_grad

        result = minimize(negative_log_posterior, initial_theta, jac=True, bounds=bounds, method="L-BFGS-B")
        return result.x, result.fun


def make_gp(space, random_state) -> GaussianProcessRegressor:
    """A GP over bayes_opt's array representation of ``space`` (see the module docstring)."""
    ranges = _ranges(space)
    low, high = LENGTH_SCALE_BOUNDS
    matern = Matern(nu=2.5, length_scale=0.5 * ranges,
                    length_scale_bounds=np.column_stack([low * ranges, high * ranges]))
    kernel = (ConstantKernel(1.0, SIGNAL_BOUNDS) * wrap_kernel(matern, transform=space.kernel_transform)
              + WhiteKernel(1e-3, NOISE_BOUNDS))
    return GaussianProcessRegressor(kernel=kernel, alpha=GP_ALPHA, normalize_y=True, n_restarts_optimizer=0,
                                    optimizer=MapOptimizer(ranges) if MAP else "fmin_l_bfgs_b",
                                    random_state=random_state)


class Model:
    """The GP of one searcher: fits with the refit schedule; ``fit`` returns a ``Posterior``."""

    _always_optimize = ALWAYS_OPTIMIZE  # for a Model pickled (--resume) before it was a setting

    def __init__(self, space, random_state, always_optimize: int = ALWAYS_OPTIMIZE):
        self.space = space
        self._random_state = random_state
        self._always_optimize = always_optimize  # observations up to which every fit optimizes
        # The last fit's hyperparameters (log scale), where the next fit starts. Kept as an array:
        # bayes_opt's wrapped kernel pickles back to its initial hyperparameters (see save/restore).
        self._theta: np.ndarray | None = None
        self._optimized_at = 0  # observations at the last hyperparameter optimization
        self._restarted_at = 0  # ... and at the last one with random restarts

    def fit(self, X: np.ndarray, y: np.ndarray, n_seen: int | None = None) -> Posterior:
        """The GP given (X, y); ``n_seen``: the observations the schedule counts (more than
        len(y) when (X, y) is a ``subset_of_data``)."""
        n = n_seen or len(y)
        if self._theta is not None and self._always_optimize < n < REOPTIMIZE_GROWTH * self._optimized_at:
            return Posterior(self.space, self._theta, X, y)  # the schedule: the same hyperparameters
        gp = make_gp(self.space, self._random_state)
        if self._theta is not None:
            gp.kernel = gp.kernel.clone_with_theta(self._theta)  # start from the last optimum
        self._optimized_at = n
        if n >= RESTART_GROWTH * self._restarted_at + 1:
            gp.n_restarts_optimizer = RESTARTS
            self._restarted_at = n
        with warnings.catch_warnings():  # sklearn warns whenever a length scale sits at its bound
            warnings.simplefilter("ignore")
            gp.fit(X, y)  # sklearn with MapOptimizer: the hyperparameters
        self._theta = gp.kernel_.theta
        return Posterior(self.space, self._theta, X, y)


def to_arrays(space, params: list[dict]) -> np.ndarray:
    """bayes_opt's ``space.params_to_array`` for many configurations at once (ours: bayes_opt converts
    one dict at a time, which cost more than the GP at a thousand observations)."""
    columns = []
    for name, param in space.params_config.items():
        values = [p[name] for p in params]
        if isinstance(param, CategoricalParameter):
            index = {str(c): i for i, c in enumerate(param.categories)}
            onehot = np.zeros((len(values), len(param.categories)))
            onehot[np.arange(len(values)), [index[str(v)] for v in values]] = 1.0
            columns.append(onehot)
        else:
            columns.append(np.asarray(values, dtype=float)[:, None])
    return np.hstack(columns) if columns else np.empty((len(params), 0))


def subset_of_data(X: np.ndarray, y: np.ndarray, rng: np.random.RandomState):
    """At most ``MAX_POINTS`` observations: the best half of them and a random draw of the rest
    (the subset-of-data approximation, Rasmussen & Williams 2006, 8.3.1). An ASHA run on a big
    grid registers a thousand trials, and an exact GP's fit and prediction grow as n^3 and n^2:
    unbounded, a suggestion took ~0.2 s at 1,000 trials on LCBench."""
    if len(y) <= MAX_POINTS:
        return X, y
    order = np.argsort(-y, kind="stable")
    best, rest = order[:MAX_POINTS // 2], order[MAX_POINTS // 2:]
    keep = np.concatenate([best, rng.choice(rest, MAX_POINTS - len(best), replace=False)])
    return X[keep], y[keep]


def acquisition(gp: Posterior, y_max: float):
    """Vectorized log-EI at rows of bayes_opt arrays (higher is better)."""
    acq = LogExpectedImprovement()
    acq.y_max = y_max
    negated = acq._get_acq(gp)  # bayes_opt's wrapper: predicts, then negates for minimization
    return lambda X: -negated(np.atleast_2d(X))


def ranked_candidates(score, space, rng: np.random.RandomState, incumbent: np.ndarray) -> np.ndarray:
    """Candidate arrays, best acquisition first: ``N_RANDOM`` random points, of which the best and
    ``N_LOCAL - 1`` more drawn by roulette (probability ~ EI), and the best observation so far
    (``incumbent``) refined locally, as Optuna's GP sampler does (optuna/_gp/optim_mixed.py;
    ours: bayes_opt's optimizer is too slow, see the module docstring). The roulette spreads the
    local searches over the acquisition's modes instead of the best few points of one."""
    X = np.vstack([incumbent[None, :], space.random_sample(N_RANDOM, random_state=rng)])
    values = score(X)
    best = int(np.argmax(values[1:])) + 1
    weights = np.exp(values[1:] - values[best])
    weights[best - 1] = 0.0
    drawn = []
    if ROULETTE and weights.sum() > 0:
        k = min(N_LOCAL - 1, int(np.count_nonzero(weights)))
        drawn = list(rng.choice(N_RANDOM, size=k, replace=False, p=weights / weights.sum()) + 1)
    elif not ROULETTE:
        drawn = [i for i in np.argsort(-values)[:N_LOCAL] if i not in (0, best)][:N_LOCAL - 1]
    refined = [_refine(score, space, X[i], values[i]) for i in [0, best] + drawn]
    X = np.vstack([np.array([x for x, _ in refined]), X])
    values = np.concatenate([[v for _, v in refined], values])
    return X[np.argsort(-values, kind="stable")]


def _refine(score, space, x: np.ndarray, value: float, rounds: int = 3):
    continuous = space.continuous_dimensions
    for _ in range(rounds):
        before = value
        if continuous.any():
            x, value = _lbfgs(score, space, x, value, continuous)
        x, value = _discrete_moves(score, space, x, value)
        if value <= before + 1e-12:
            break
    return x, value


def _lbfgs(score, space, x, value, continuous):
    bounds = space.bounds[continuous]
    dims = np.flatnonzero(continuous)

    def negative_with_gradient(z):
        # the point and one forward step per continuous input, scored in one batch
        batch = np.repeat(x[None, :], len(dims) + 1, axis=0)
        batch[:, dims] = z
        steps = np.where(z + FD_STEP <= bounds[:, 1], FD_STEP, -FD_STEP)
        batch[np.arange(1, len(dims) + 1), dims] += steps
        s = score(batch)
        return -s[0], -(s[1:] - s[0]) / steps

    result = minimize(negative_with_gradient, x[dims], jac=True, bounds=bounds, method="L-BFGS-B",
                      options={"maxiter": 50})
    if np.isfinite(result.fun) and -result.fun > value:
        x = x.copy()
        x[dims] = result.x
        value = float(-result.fun)
    return x, value


def _discrete_moves(score, space, x, value, max_rounds: int = 10):
    """Greedy moves on integer (steps of 1, 2, 4, ...) and categorical inputs, all scored in one batch."""
    for _ in range(max_rounds):
        neighbours = []
        for name, param in space.params_config.items():
            cols = np.flatnonzero(space.masks[name])
            if isinstance(param, FloatParameter):
                continue
            if isinstance(param, CategoricalParameter):
                for k in range(len(cols)):
                    n = x.copy()
                    n[cols] = 0.0
                    n[cols[k]] = 1.0
                    neighbours.append(n)
                continue
            low, high = space.bounds[cols[0]]
            step = 1
            while step <= high - low:
                for sign in (-1, 1):
                    moved = round(x[cols[0]]) + sign * step
                    if low <= moved <= high:
                        n = x.copy()
                        n[cols[0]] = moved
                        neighbours.append(n)
                step *= 2
        if not neighbours:
            return x, value
        neighbours = np.array(neighbours)
        values = score(neighbours)
        best = int(np.argmax(values))
        if values[best] <= value + 1e-12:
            return x, value
        x, value = neighbours[best], float(values[best])
    return x, value
