"""Statistics against hand-worked examples and SciPy."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from dnnls_tf.study import stats


def test_summarize_is_the_t_interval_and_counts_missing_values():
    result = stats.summarize([0.5, 0.6, 0.7, math.nan])
    assert result["n"] == 3 and result["n_missing"] == 1
    assert result["mean"] == pytest.approx(0.6) and result["std"] == pytest.approx(0.1)
    assert result["ci_half_width"] == pytest.approx(scipy_stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3))


def test_holm_against_a_hand_worked_example():
    # p sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06, monotone), 0.04 (x1 = 0.04 -> 0.06)
    assert stats.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = stats.holm([0.01, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_paired_and_welch_tests_match_scipy():
    a, b = [0.50, 0.52, 0.55, 0.51, 0.53], [0.48, 0.50, 0.52, 0.50, 0.49]
    paired = stats.compare(a, b, paired=True)
    assert paired["test"] == "paired t" and paired["p"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert paired["df"] == 4 and paired["ci_low"] < paired["difference"] < paired["ci_high"]
    welch = stats.compare(a, b, paired=False)
    assert welch["test"] == "Welch t" and welch["p"] == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    # a pair with a missing value is dropped from the paired test
    assert stats.compare(a + [math.nan], b + [0.4], paired=True)["p"] == pytest.approx(paired["p"])
    assert math.isnan(stats.compare([0.5], [0.4], paired=False)["p"])


def test_bootstrap_over_test_images_matches_the_normal_approximation_on_a_known_case():
    # 2,000 images, a paired difference of +1 on 300, -1 on 200, 0 elsewhere: mean 0.05,
    # standard error sqrt(E[d^2] - mean^2) / sqrt(n) = sqrt(0.25 - 0.0025) / sqrt(2000)
    per_image = np.array([1.0] * 300 + [-1.0] * 200 + [0.0] * 1500)
    low, high = stats.bootstrap_interval(per_image)
    half = 1.96 * math.sqrt(0.25 - 0.05**2) / math.sqrt(2000)
    assert low == pytest.approx(0.05 - half, abs=0.004) and high == pytest.approx(0.05 + half, abs=0.004)
    assert stats.bootstrap_interval(per_image) == [low, high]  # seeded
    # a group's accuracy on 1,017 images near 50%: about +-3.1 pp
    hits = np.array([1.0] * 509 + [0.0] * 508)
    low, high = stats.bootstrap_interval(hits)
    assert (high - low) / 2 == pytest.approx(1.96 * 0.5 / math.sqrt(1017), abs=0.003)
