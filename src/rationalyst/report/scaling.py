"""Accuracy against compute, from the runs as they are: no extra generation.

Every eval run is one point, (mean tokens per problem over all roles, accuracy). A ``best-of-n`` or
``self-consistency`` run sampled N whole solutions per problem; its first n samples are what a run with
n samples would have drawn (the samples are seeded per problem, not per count), so the curve at
n = 1, 2, 4, ..., N comes from the same traces:

* ``majority@n``: the most frequent parsed answer among the first n samples (first seen on ties);
* ``best-of-n@n`` (naive): the answer of the best-scored sample among the first n (best-of-n runs);
* ``weighted@n``: the answer whose samples' weights sum highest, a sample's weight being exp(score)
  (its aggregated implicit step score, or implicit PRM reward, as a probability; best-of-n runs), or the
  score itself where it is already a probability (a PRM's min, mean or last: ``best-of-n-prm``, as
  search-and-learn weights by PRM score).

The cost at n is the agent's tokens of the first n samples plus the supervision tokens scaled by n/N
(scoring is per sample). `best_at_each_budget` says which method is most accurate within each budget.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from rationalyst.data.answers import extract_answer, is_correct
from rationalyst.data.benchmarks import BENCHMARKS, BenchmarkItem
from rationalyst.report.collect import EvalRun
from rationalyst.search.roles import SUPERVISION_ROLES
from rationalyst.search.trace import Trace

VERIFIED_SAMPLING = ("best-of-n", "best-of-n-prm", "best-of-n-implicit-prm")
SAMPLING_METHODS = (*VERIFIED_SAMPLING, "self-consistency")


@dataclass(frozen=True)
class Point:
    """One method (or one sample count of a sampling method) on one benchmark."""

    benchmark: str
    label: str  # the run's label, or "<label> majority@4" for a point of a curve
    n: int | None  # samples, for curve points
    tokens: float  # mean tokens per problem, all roles
    accuracy: float
    problems: int


def _item(trace: Trace, benchmark: str) -> BenchmarkItem | None:
    spec = BENCHMARKS.get(benchmark)
    family = spec.family if spec else ("multiple_choice" if trace.choices else "arithmetic")
    try:
        return BenchmarkItem(id=trace.id, benchmark=benchmark, family=family, question=trace.question or "?",
                             choices=trace.choices or None, answer=trace.gold or "?")
    except ValueError:
        return None


def _counts(n_max: int) -> list[int]:
    counts, n = [], 1
    while n < n_max:
        counts.append(n)
        n *= 2
    return counts + [n_max]


def _pick(answers: list[str | None], weights: list[float] | None) -> str | None:
    """The answer with the most votes (``weights`` None) or the largest summed weight; first seen on ties."""
    totals: dict[str, float] = defaultdict(float)
    order: list[str] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        if answer not in totals:
            order.append(answer)
        totals[answer] += 1.0 if weights is None else weights[i]
    if not order:
        return None
    best = max(totals.values())
    return next(a for a in order if totals[a] == best)


def curves(run: EvalRun) -> list[Point]:
    """The sample-count curves of a best-of-n or self-consistency run (empty for other methods)."""
    if run.method not in SAMPLING_METHODS or not run.traces:
        return []
    rows = []  # per problem: (item, answers, scores, agent tokens per sample, supervision tokens)
    for trace in run.traces:
        item = _item(trace, run.benchmark)
        if item is None or not trace.steps:
            continue
        candidates = trace.steps[0].candidates
        answers = [extract_answer(c.text, item) for c in candidates]
        scores = [c.score for c in candidates]
        supervision = sum(trace.tokens.get(r, 0.0) for r in SUPERVISION_ROLES)
        rows.append((item, answers, scores, [c.tokens or 0 for c in candidates], supervision))
    if not rows:
        return []
    n_max = min(len(r[1]) for r in rows)
    variants = ["majority"] + (["best-of-n", "weighted"] if run.method in VERIFIED_SAMPLING else [])
    aggregate = getattr(run.traces[0], "aggregate", None)
    probabilities = run.method == "best-of-n-prm" and aggregate != "product"

    def weight(score: float | None) -> float:
        return 0.0 if score is None else score if probabilities else math.exp(score)

    points = []
    for n in _counts(n_max):
        tokens = sum(sum(t[:n]) + s * n / len(a) for _, a, _, t, s in rows) / len(rows)
        for variant in variants:
            correct = 0
            for item, answers, scores, _, _ in rows:
                first, first_scores = answers[:n], scores[:n]
                if variant == "majority":
                    chosen = _pick(first, None)
                elif variant == "weighted":
                    chosen = _pick(first, [weight(s) for s in first_scores])
                else:
                    ranked = [i for i in range(n) if first_scores[i] is not None]
                    chosen = first[max(ranked, key=lambda i: (first_scores[i], -i))] if ranked else None
                correct += chosen is not None and is_correct(chosen, item)
            points.append(Point(run.benchmark, f"{run.label} {variant}@{n}", n, tokens, correct / len(rows), len(rows)))
    return points


def points(runs: list[EvalRun]) -> list[Point]:
    """Every run as a point, and the sample-count curves of the sampling methods."""
    out = [Point(r.benchmark, r.label, None, r.tokens.get("total", 0.0), r.accuracy or 0.0, r.n) for r in runs if r.n]
    for run in runs:
        out += curves(run)
    return out


def best_at_each_budget(all_points: list[Point]) -> dict[str, list[tuple[float, str, float]]]:
    """Per benchmark: for each budget (the token cost of some point, ascending), the most accurate
    method within it, as (budget, label, accuracy); a budget appears when its best method changes."""
    out: dict[str, list[tuple[float, str, float]]] = {}
    by_benchmark = defaultdict(list)
    for p in all_points:
        by_benchmark[p.benchmark].append(p)
    for benchmark, group in sorted(by_benchmark.items()):
        steps: list[tuple[float, str, float]] = []
        for budget in sorted({p.tokens for p in group}):
            affordable = [p for p in group if p.tokens <= budget]
            best = max(affordable, key=lambda p: (p.accuracy, -p.tokens))
            if not steps or steps[-1][1] != best.label:
                steps.append((budget, best.label, best.accuracy))
        out[benchmark] = steps
    return out


def accuracy_tokens_plot(all_points: list[Point], path) -> object:
    """Accuracy against mean tokens per problem (log x), one panel per benchmark: runs as points,
    sampling curves as lines. None when there is nothing to draw."""
    if not all_points:
        return None
    from rationalyst.report.plots import PALETTE, _pyplot

    plt = _pyplot()
    benchmarks = sorted({p.benchmark for p in all_points})
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 4.2), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks):
        group = [p for p in all_points if p.benchmark == benchmark]
        lines: dict[str, list[Point]] = defaultdict(list)
        for p in group:
            if p.n is not None:
                lines[p.label.rsplit("@", 1)[0]].append(p)
        singles = [p for p in group if p.n is None]
        for i, p in enumerate(singles):
            ax.scatter([max(p.tokens, 1.0)], [100 * p.accuracy], color=PALETTE[i % len(PALETTE)], label=p.label, zorder=3)
        for j, (name, pts) in enumerate(sorted(lines.items())):
            pts.sort(key=lambda p: p.n)
            color = PALETTE[(len(singles) + j) % len(PALETTE)]
            ax.plot([max(p.tokens, 1.0) for p in pts], [100 * p.accuracy for p in pts], marker=".", color=color, label=name)
            for p in pts:
                ax.annotate(f"n={p.n}", (max(p.tokens, 1.0), 100 * p.accuracy), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("tokens per problem (all roles, log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(benchmark)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
