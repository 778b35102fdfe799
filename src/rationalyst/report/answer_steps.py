"""Choices between candidates that state different answers: the scorer against a random pick.

A run's accuracy mixes two things: whether the agent's candidates contain a right answer at all (the
sampling) and whether the method picks it (the choice). Where a step's candidates state final answers,
both can be read off the trace: the step's candidates are all right, all wrong, or mixed, and at a
mixed step the method chose a right one or not. A uniformly random pick would choose right with
probability (right candidates) / (candidates) there, so over a run's mixed steps its number of right
choices is a sum of independent Bernoulli variables (a Poisson binomial): the report gives its
expectation and the exact one-sided p-value of doing at least as well as the method did by chance.

For best-of-n and self-consistency the one step is the whole samples (the verifier's or the vote's
choice; "any right" is pass@N); for a step-by-step search, the steps whose candidates state an answer,
usually the last. A candidate that states no answer yet counts as not right there (its trajectory might
still end right), and so does one cut by the agent's token limit (``cut`` in its record): the search
reads no answer from a cut step, so an 'answer' in its unfinished text is none. Only gold answers count
as right (an item's extra acceptable answers are not in its trace).
"""

from __future__ import annotations

from dataclasses import dataclass

from rationalyst.data.answers import extract_answer, is_correct
from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.data.benchmarks.items import BENCHMARKS


@dataclass
class AnswerSteps:
    """One run's steps with two or more candidates of which at least one states a final answer."""

    benchmark: str
    label: str
    steps: int = 0
    all_right: int = 0  # every candidate states the gold answer
    none_right: int = 0  # no candidate does (wrong answers, or no answer yet)
    mixed: int = 0
    chosen_right: int = 0  # at mixed steps: the chosen candidate states the gold answer
    expected: float = 0.0  # at mixed steps: a uniformly random pick's expected number of right choices
    p_value: float = 1.0  # P(a random pick is right at least ``chosen_right`` times)

    @property
    def any_right(self) -> int:
        return self.all_right + self.mixed


def at_least(probabilities: list[float], k: int) -> float:
    """P(a sum of independent Bernoulli(p) over ``probabilities`` is >= k), exactly (the Poisson binomial)."""
    distribution = [1.0]  # distribution[j] = P(sum == j) over the variables so far
    for p in probabilities:
        shifted = [0.0] + [q * p for q in distribution]
        distribution = [q * (1 - p) for q in distribution] + [0.0]
        distribution = [a + b for a, b in zip(distribution, shifted)]
    return min(1.0, sum(distribution[max(k, 0) :]))


def _item(trace, family: str) -> BenchmarkItem:
    return BenchmarkItem(
        id=trace.id, benchmark=trace.benchmark or "?", family=family, question=trace.question or "?",
        choices=trace.choices, answer=str(trace.gold),
    )


def answer_steps(run) -> AnswerSteps | None:
    """The answer steps of one eval run (anything with ``benchmark``, ``label`` and ``traces``); None
    when its benchmark's answer family is unknown or no step qualifies."""
    spec = BENCHMARKS.get(run.benchmark)
    if spec is None:
        return None
    result = AnswerSteps(run.benchmark, run.label)
    chances: list[float] = []
    for trace in run.traces:
        if trace.gold is None or trace.error:
            continue
        try:
            item = _item(trace, spec.family)
        except ValueError:  # a gold answer the family cannot hold: nothing to compare with
            continue
        for step in trace.steps:
            if len(step.candidates) < 2 or step.chosen is None:
                continue
            answers = [None if c.cut else extract_answer(c.text, item) for c in step.candidates]
            if all(a is None for a in answers):
                continue
            right = [a is not None and is_correct(a, item) for a in answers]
            result.steps += 1
            if all(right):
                result.all_right += 1
            elif not any(right):
                result.none_right += 1
            else:
                result.mixed += 1
                result.chosen_right += right[step.chosen]
                chances.append(sum(right) / len(right))
    if not result.steps:
        return None
    result.expected = sum(chances)
    result.p_value = at_least(chances, result.chosen_right)
    return result


def all_answer_steps(runs: list) -> list[AnswerSteps]:
    """`answer_steps` of every run that has such steps, in run order."""
    return [found for found in map(answer_steps, runs) if found is not None]
