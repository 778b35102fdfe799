"""AUROC and its bootstrap interval, against scikit-learn and the Hanley-McNeil standard error."""

from __future__ import annotations

import math
import random

import pytest
from sklearn.metrics import roc_auc_score

from rationalyst.report.auroc import auroc, bootstrap_interval


def test_auroc_matches_scikit_learn_with_ties():
    rng = random.Random(1)
    for _ in range(5):
        labels = [rng.randint(0, 1) for _ in range(60)]
        scores = [round(rng.gauss(label * 0.7, 1.0), 1) for label in labels]  # rounding makes ties
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))


def test_bootstrap_interval_is_as_wide_as_the_hanley_mcneil_error_says():
    rng = random.Random(2)
    labels = [1] * 150 + [0] * 100
    scores = [rng.gauss(0.8 * label, 1.0) for label in labels]
    a = auroc(scores, labels)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = math.sqrt((a * (1 - a) + 149 * (q1 - a * a) + 99 * (q2 - a * a)) / (150 * 100))
    low, high = bootstrap_interval(scores, labels, resamples=1000, seed=0)
    assert low < a < high
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert bootstrap_interval(scores, labels, seed=0) == (low, high)  # seeded
    assert bootstrap_interval([0, 1, 2, 3], [0, 0, 1, 1], resamples=200) == (1.0, 1.0)  # separated in every resample
    with pytest.raises(ValueError):
        bootstrap_interval([0.1, 0.2], [1, 1])
