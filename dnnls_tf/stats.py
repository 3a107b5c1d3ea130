"""Statistics over seeds: mean, standard deviation, t-based 95% CI, Welch's t-test."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats


def summarize(values, confidence: float = 0.95) -> dict:
    """n, mean, std (ddof=1) and the t-distribution confidence interval of the mean.

    NaN values (diverged runs) are left out and counted in `n_missing`.
    """
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    n = len(finite)
    result = {"n": n, "n_missing": int(len(array) - n), "mean": math.nan, "std": math.nan,
              "ci_low": math.nan, "ci_high": math.nan, "ci_half_width": math.nan}
    if n == 0:
        return result
    mean = float(finite.mean())
    result["mean"] = mean
    if n > 1:
        std = float(finite.std(ddof=1))
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
        result.update(std=std, ci_low=mean - half, ci_high=mean + half, ci_half_width=half)
    return result


def welch_test(first, second) -> dict:
    """Welch's unequal-variance t-test of mean(first) - mean(second) (two-sided)."""
    a = np.asarray(first, dtype=float)
    b = np.asarray(second, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return {"difference": math.nan, "t": math.nan, "p_value": math.nan, "df": math.nan}
    result = scipy_stats.ttest_ind(a, b, equal_var=False)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else math.nan
    return {"difference": float(a.mean() - b.mean()), "t": float(result.statistic),
            "p_value": float(result.pvalue), "df": float(df)}


def band_over_seeds(frame, value: str, by=("epoch",), confidence: float = 0.95):
    """Per-group mean and t-based CI of `value` over seeds (for learning-curve bands)."""
    rows = []
    for key, group in frame.groupby(list(by)):
        key = key if isinstance(key, tuple) else (key,)
        summary = summarize(group[value].to_numpy(), confidence)
        rows.append({**dict(zip(by, key)), "mean": summary["mean"],
                     "low": summary["ci_low"] if summary["n"] > 1 else summary["mean"],
                     "high": summary["ci_high"] if summary["n"] > 1 else summary["mean"], "n": summary["n"]})
    import pandas as pd

    return pd.DataFrame(rows)
