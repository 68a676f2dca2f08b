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
    p = float(scipy_wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return p, r


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
