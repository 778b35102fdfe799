"""Paired accuracy comparisons: two runs of one benchmark on the same problems, with McNemar's test.

Accuracy intervals of two methods overlap long before the methods are the same: on the same problems
the question is only how often one was right where the other was wrong. With ``b`` problems that A got
right and B wrong and ``c`` the other way, McNemar's exact test asks how likely a split at least this
uneven is if each discordant problem were a fair coin: the two-sided binomial p-value of
``min(b, c)`` in ``b + c`` trials at 1/2 (exact, so right for the small counts of a CPU-sized run).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Any


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (1.0 when there are none)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, not {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass
class PairedOutcome:
    """Runs A and B of one benchmark on the problems both solved (or failed): who was right where."""

    benchmark: str
    a: str  # run labels
    b: str
    n: int  # problems in both runs
    a_right: int  # of those, A right
    b_right: int
    a_only: int  # A right and B wrong
    b_only: int
    p_value: float  # McNemar's exact test on a_only vs b_only

    @property
    def difference(self) -> float | None:
        """A's accuracy minus B's on the shared problems."""
        return (self.a_right - self.b_right) / self.n if self.n else None


def paired_outcome(benchmark: str, a_label: str, a_traces: Any, b_label: str, b_traces: Any) -> PairedOutcome:
    """Compare two runs' traces (anything with ``.id`` and ``.right``) on the problem ids they share."""
    b_right = {t.id: t.right for t in b_traces}
    pairs = [(t.right, b_right[t.id]) for t in a_traces if t.id in b_right]
    a_only = sum(x and not y for x, y in pairs)
    b_only = sum(y and not x for x, y in pairs)
    return PairedOutcome(
        benchmark, a_label, b_label, len(pairs), sum(x for x, _ in pairs), sum(y for _, y in pairs),
        a_only, b_only, mcnemar_exact_p(a_only, b_only),
    )


def benchmark_pairs(runs: list) -> list[tuple]:
    """Every two runs of the same benchmark, in run order."""
    by_benchmark: dict[str, list] = defaultdict(list)
    for run in runs:
        by_benchmark[run.benchmark].append(run)
    return [pair for group in by_benchmark.values() for pair in combinations(group, 2)]


def paired_outcomes(runs: list) -> list[PairedOutcome]:
    """Every pair of eval runs of the same benchmark that share at least one problem, in run order."""
    results = [paired_outcome(a.benchmark, a.label, a.traces, b.label, b.traces) for a, b in benchmark_pairs(runs)]
    return [result for result in results if result.n]
