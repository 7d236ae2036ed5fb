"""The statistics in the report: bootstrap intervals and the paired model comparison (calibration is in
`models.scoring`, shared with the calibration command).

Each function takes per-image arrays over the test split, so everything here is testable on
hand-made inputs and independent of any model.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 2_000


def bootstrap_ci(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of per-image values (e.g. 1 = correct, 0 = wrong)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 20_000_000 // max(1, len(values)))  # bounded memory for the index matrix
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        means[start : start + count] = values[rng.integers(0, len(values), (count, len(values)))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test on paired per-image correctness: do the two models' error rates differ?"""
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    discordant = a_only + b_only
    p_value = binomial_two_sided(min(a_only, b_only), discordant) if discordant else 1.0
    return {"a_right_b_wrong": a_only, "a_wrong_b_right": b_only, "discordant": discordant,
            "p_value": p_value, "significant_at_0_05": p_value < 0.05}


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k or fewer successes in n fair coin flips (k <= n/2): twice the lower tail,
    computed with exact integers (no underflow for the few thousand discordant images a report can have)."""
    tail = sum(comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_difference_ci(correct_a: np.ndarray, correct_b: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of accuracy(a) - accuracy(b), resampling images (keeps the pairing)."""
    return bootstrap_ci(correct_a.astype(np.float64) - correct_b.astype(np.float64), seed=seed)


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.array([(predicted[labels == c] == c).mean() if np.any(labels == c) else np.nan
                     for c in range(num_classes)])
