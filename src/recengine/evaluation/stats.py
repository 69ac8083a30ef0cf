"""Statistics over per-user metric values: confidence intervals and paired comparisons of two models."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from recengine.errors import ConfigError, DataError

__all__ = ["MeanCI", "PairedTest", "mean_ci", "paired_test"]


@dataclass(frozen=True)
class MeanCI:
    """A mean with its two-sided confidence interval [low, high] over n values."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of a and b (difference = a - b) over the n pairs where both are defined.

    mean_difference with its t-interval [low, high]; t_pvalue from the paired t-test; wilcoxon_pvalue from the
    Wilcoxon signed-rank test (zero differences dropped; 1.0 when every difference is zero)."""

    mean_difference: float
    low: float
    high: float
    t_statistic: float
    t_pvalue: float
    wilcoxon_statistic: float
    wilcoxon_pvalue: float
    n: int
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return float(confidence)


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return mean, float("nan"), float("nan")
    # Half-width t_{(1+c)/2, n-1} * s / sqrt(n); a zero spread gives a zero-width interval, not NaN.
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> MeanCI:
    """Mean and Student-t confidence interval of the finite values (NaN, e.g. users without relevant items,
    are left out). Fewer than two values give NaN bounds."""
    confidence = _check_confidence(confidence)
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    mean, low, high = _t_interval(values, confidence)
    return MeanCI(mean, low, high, len(values), confidence)


def paired_test(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of a - b, e.g. two models' per-user NDCG on one split.
    Pairs where either value is not finite are dropped."""
    confidence = _check_confidence(confidence)
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"paired_test needs values for the same users: got {len(a)} and {len(b)} values")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    n = len(diff)
    if n < 2:
        raise DataError(f"paired_test needs at least two paired values, got {n}")
    mean, low, high = _t_interval(diff, confidence)
    if not diff.any():
        return PairedTest(0.0, 0.0, 0.0, float("nan"), 1.0, 0.0, 1.0, n, confidence)
    with warnings.catch_warnings():
        # Constant non-zero differences make t infinite; scipy warns about the degenerate variance.
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_rel(a[keep], b[keep])
        w = stats.wilcoxon(diff, zero_method="wilcox")
    return PairedTest(mean, low, high, float(t.statistic), float(t.pvalue), float(w.statistic),
                      float(w.pvalue), n, confidence)
