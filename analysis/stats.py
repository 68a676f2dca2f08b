"""Paired comparisons over seeds: what every summary (a run's, a replay's) states next to a
difference, so that no verdict is given without n, its spread and a test."""

from __future__ import annotations

import numpy as np


def wilcoxon(x, y) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank p-value of x - y (pairs), and the matched-pairs
    rank-biserial correlation (r in [-1, 1]; negative: x lower). Ties at zero are dropped
    (Wilcoxon's own treatment); all-zero differences give p = 1, r = 0."""
    from scipy.stats import rankdata
    from scipy.stats import wilcoxon as scipy_wilcoxon

    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    d = d[np.isfinite(d) & (d != 0)]
    if len(d) == 0:
        return 1.0, 0.0
    ranks = rankdata(np.abs(d))
    r = float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())
    if len(np.unique(np.abs(d))) < len(d) and len(d) <= EXACT_TIED_N:
        p = _tied_exact_p(d)
    else:
        p = float(scipy_wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return p, r


# scipy's wilcoxon, for tied differences and n <= 13, runs an exact sign-flip permutation test
# (all 2^n sign patterns) with a statistic it passes as a plain lambda, so permutation_test
# evaluates it one pattern at a time: 0.09 s a test at n = 10, and the LCBench suite's
# per-data-set tables run ~2,700 of them (4 minutes). Ours is the same test through the same
# scipy.stats.permutation_test, with the statistic (the positive rank sum) vectorized; the
# p-values equal scipy's (tests/test_replay.py).
EXACT_TIED_N = 13  # scipy's own bound: 2^13 sign patterns < its default 9,999 resamples


def _positive_rank_sum(d, axis):
    from scipy.stats import rankdata

    return np.sum(np.where(d > 0, rankdata(np.abs(d), axis=axis), 0.0), axis=axis)


def _tied_exact_p(d: np.ndarray) -> float:
    from scipy.stats import permutation_test

    return float(permutation_test((d,), _positive_rank_sum, permutation_type="samples", vectorized=True,
                                  n_resamples=9999, alternative="two-sided").pvalue)


def paired(x, y) -> dict:
    """x - y over pairs (seeds): n, median difference, its interquartile range, Wilcoxon's p
    and the rank-biserial r (p and r only from 2 pairs on; one pair is no test)."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {"n": 0, "diff_median": None, "diff_q25": None, "diff_q75": None, "p": None, "r": None}
    q25, median, q75 = np.percentile(d, [25, 50, 75])
    p, r = wilcoxon(d, np.zeros_like(d)) if len(d) >= 2 else (None, None)
    return {"n": int(len(d)), "diff_median": float(median), "diff_q25": float(q25), "diff_q75": float(q75),
            "p": p, "r": r}
