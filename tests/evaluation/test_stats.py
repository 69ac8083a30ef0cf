import numpy as np
import pytest

from recengine.errors import ConfigError, DataError
from recengine.evaluation.stats import mean_ci, paired_test

T_975_4 = 2.7764451051977934  # Student t quantile 0.975 with 4 degrees of freedom (tables: 2.776)


def test_mean_ci_is_a_t_interval():
    ci = mean_ci([1, 2, 3, 4, 5])
    half = T_975_4 * np.sqrt(2.5) / np.sqrt(5)  # sample sd of 1..5 is sqrt(2.5)
    assert (ci.mean, ci.n) == (3.0, 5)
    assert ci.low == pytest.approx(3 - half) and ci.high == pytest.approx(3 + half)
    assert ci.low == pytest.approx(1.0367568, abs=1e-6)


def test_mean_ci_skips_nan_and_handles_degenerate_input():
    ci = mean_ci([1, 2, np.nan, 3, 4, 5])
    assert ci.n == 5 and ci.mean == 3.0
    constant = mean_ci([0.5, 0.5, 0.5])
    assert constant.low == constant.high == 0.5
    single = mean_ci([0.7])
    assert single.mean == 0.7 and np.isnan(single.low) and np.isnan(single.high)
    with pytest.raises(ConfigError, match="confidence"):
        mean_ci([1, 2], confidence=95)
    narrower = mean_ci([1, 2, 3, 4, 5], confidence=0.5)
    assert narrower.high - narrower.low < 3.9


def test_paired_test_on_known_values():
    a = np.arange(1, 11, dtype=float) * 2
    b = np.arange(1, 11, dtype=float)
    r = paired_test(a, b)  # differences 1..10: mean 5.5, sd 3.02765
    assert r.mean_difference == pytest.approx(5.5) and r.n == 10
    assert r.t_statistic == pytest.approx(5.5 / (np.std(b, ddof=1) / np.sqrt(10)))
    assert r.t_pvalue < 0.001
    # All ten differences positive: the exact two-sided signed-rank p-value is 2 / 2**10.
    assert r.wilcoxon_statistic == 0 and r.wilcoxon_pvalue == pytest.approx(2 / 1024)
    assert r.low < 5.5 < r.high


def test_paired_test_identical_and_misaligned_inputs():
    same = paired_test([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert same.mean_difference == 0 and same.t_pvalue == 1.0 and same.wilcoxon_pvalue == 1.0
    dropped = paired_test([1.0, np.nan, 3.0, 5.0], [0.0, 1.0, 1.0, 1.0])
    assert dropped.n == 3 and dropped.mean_difference == pytest.approx((1 + 2 + 4) / 3)
    with pytest.raises(DataError, match="same users"):
        paired_test([1, 2, 3], [1, 2])
