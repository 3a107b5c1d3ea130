"""Statistics over seeds and over test images.

Over seeds: mean, standard deviation and t-based 95% CI; a paired t-test where two
arms share seeds and splits, Welch's t-test otherwise; Holm's step-down correction
over a declared family. Over test images: a percentile bootstrap (the test set's own
sampling uncertainty, beside the seed CI).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 2023


def summarize(values, confidence: float = 0.95) -> dict:
    """n, mean, std (ddof=1) and the t-distribution confidence interval of the mean.

    NaN values (unstable runs) are left out and counted in `n_missing`.
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


def compare(first, second, paired: bool, confidence: float = 0.95) -> dict:
    """first minus second: difference of means, its t-based CI, t, df, two-sided p and the difference's
    standard error.

    paired: a paired t-test on the per-seed differences (pairs with a NaN are dropped);
    otherwise Welch's unequal-variance t-test. NaN results when either arm has < 2 values.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    empty = {"test": "paired t" if paired else "Welch t", "difference": math.nan, "ci_low": math.nan,
             "ci_high": math.nan, "t": math.nan, "df": math.nan, "p": math.nan, "n_first": 0, "n_second": 0,
             "standard_error": math.nan}
    if paired:
        if len(a) != len(b):
            raise ValueError("a paired test needs arms of equal length")
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
        empty.update(n_first=len(a), n_second=len(b))
        if len(a) < 2:
            return empty
        differences = a - b
        mean, sd, df = float(differences.mean()), float(differences.std(ddof=1)), len(a) - 1
        if sd == 0:
            return {**empty, "difference": mean}
        result = scipy_stats.ttest_rel(a, b)
        error = sd / math.sqrt(len(a))
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df) * error)
        return {**empty, "difference": mean, "ci_low": mean - half, "ci_high": mean + half,
                "t": float(result.statistic), "df": float(df), "p": float(result.pvalue), "standard_error": error}
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    empty.update(n_first=len(a), n_second=len(b))
    if len(a) < 2 or len(b) < 2:
        return empty
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    mean = float(a.mean() - b.mean())
    if va + vb == 0:
        return {**empty, "difference": mean}
    result = scipy_stats.ttest_ind(a, b, equal_var=False)
    df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb))
    return {**empty, "difference": mean, "ci_low": mean - half, "ci_high": mean + half,
            "t": float(result.statistic), "df": df, "p": float(result.pvalue), "standard_error": math.sqrt(va + vb)}


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values (same order; NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=float)
    finite = np.flatnonzero(np.isfinite(p))
    adjusted = np.full(len(p), math.nan)
    m = len(finite)
    running = 0.0
    for rank, index in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def bootstrap_interval(per_image: np.ndarray, confidence: float = 0.95) -> list[float]:
    """Percentile-bootstrap interval of the mean of a per-image quantity, resampling test images.

    `per_image` is one value per test image (for example the correctness of a group's
    predictions averaged over its seeds, or the difference of two groups' averages):
    the interval says how much the mean could move with another test set of this size.
    """
    values = np.asarray(per_image, dtype=float)
    if values.size < 2 or np.ptp(values) == 0:
        return [float(values.mean()), float(values.mean())] if values.size else [math.nan, math.nan]
    result = scipy_stats.bootstrap((values,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                                   confidence_level=confidence, random_state=BOOTSTRAP_SEED, vectorized=True)
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def last_quarter_gain(curves) -> float:
    """Gain of the mean curve from its second-to-last to its last quarter (quarter means): how much a
    group's mean validation curve still rises at the end of its epochs (the plateau rule).

    Curves are cut to the shortest; NaN when there is no curve or fewer than two epochs.
    """
    if not curves:
        return math.nan
    length = min(len(curve) for curve in curves)
    if length < 2:
        return math.nan
    mean = np.mean([curve[:length] for curve in curves], axis=0)
    quarter = max(1, math.ceil(length / 4))
    quarter = min(quarter, length // 2)
    return float(mean[-quarter:].mean() - mean[-2 * quarter:-quarter].mean())


def significant(value: float, digits: int = 3) -> float:
    """`value` rounded to `digits` significant digits (rates are stored and shown this way)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits - 1}e}")


POWER = 0.8  # the power at which the minimum detectable effect is stated


def power_of_t_test(effect: float, standard_error: float, df: float, alpha: float = 0.05) -> float:
    """Power of a two-sided t-test at level alpha against a true difference `effect`, for a difference
    whose standard error is `standard_error` (noncentral t with `df` degrees of freedom)."""
    if not (standard_error > 0 and df > 0):
        return math.nan
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    shift = effect / standard_error
    power = float(scipy_stats.nct.sf(critical, df, shift) + scipy_stats.nct.cdf(-critical, df, shift))
    if not math.isfinite(power):  # scipy's noncentral t gives up far in the tail, where the power is ~1
        power = float(scipy_stats.norm.sf(critical - abs(shift)))
    return min(max(power, 0.0), 1.0)


def minimum_detectable_effect(standard_error: float, df: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest true difference a two-sided t-test at level alpha detects with the given power,
    for a difference with this standard error and df (solved exactly on the noncentral t; NaN when
    the standard error is not positive or df < 1)."""
    if not (math.isfinite(standard_error) and standard_error > 0 and math.isfinite(df) and df >= 1):
        return math.nan
    from scipy.optimize import brentq

    upper = 2 * standard_error * (scipy_stats.t.ppf(1 - alpha / 2, df) + scipy_stats.t.ppf(power, df))
    return float(brentq(lambda effect: power_of_t_test(effect, standard_error, df, alpha) - power, 0.0, upper,
                        xtol=1e-12 * standard_error))
