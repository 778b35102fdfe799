"""AUROC of a step score against good/wrong labels, with a bootstrap interval.

The verifier claim of the paper (and issue 15's check of it) is about ranking: does the score put
good steps above wrong ones? AUROC answers that (0.5 = chance), and on a few hundred rated steps its
uncertainty is wide, so every AUROC is reported with a percentile bootstrap interval over the steps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """P(score of a random positive > score of a random negative), ties counting half (Mann-Whitney);
    NaN when one class is missing."""
    ranked = sorted(zip(scores, labels))
    rank_sum, i, n = 0.0, 0, len(ranked)
    while i < n:  # average ranks over ties
        j = i
        while j < n and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(label for _, label in ranked[i:j]) * (i + j + 1) / 2
        i = j
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def bootstrap_interval(
    scores: Sequence[float], labels: Sequence[int], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of `auroc`: steps resampled with replacement (seeded); resamples
    that miss a class are drawn again."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
    if len(set(labels)) < 2:
        raise ValueError("the AUROC needs both good and wrong steps")
    rng = random.Random(seed)
    n, values = len(scores), []
    while len(values) < resamples:
        picks = [rng.randrange(n) for _ in range(n)]
        value = auroc([scores[i] for i in picks], [labels[i] for i in picks])
        if not math.isnan(value):
            values.append(value)
    values.sort()
    tail = (1 - level) / 2
    return values[int(tail * resamples)], values[min(resamples - 1, int((1 - tail) * resamples))]
