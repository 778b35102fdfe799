"""Step verifiers: one score per step of a given solution, by implicit supervision (the default), a
process reward model (``prm``) or PRIME's implicit process reward (``implicit-prm``).

For step i the rationalist writes a rationale after the question and steps 1..i-1, and the scorer
gives step i's mean token log-prob after that trajectory and rationale: the same number the step
search ranks candidates by, so these scores can be checked against human step ratings (PRM800K,
`benchmarks/prm800k_auroc.py`) and used to rank whole solutions (best-of-n). All rationales of a
solution are written in one batched call and all its steps scored in one more (`verify_program`: the
same as a program, whose calls join those of other solutions or problems in a batch). A PRM rates all
steps of a solution in one forward pass; the implicit PRM scores each step with the rationalist and with
its reference (the scorer). These two have no rationale (``""``).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.lm.base import SamplingParams, ScoreRequest
from rationalyst.search import prompts
from rationalyst.search.batch import Call, Generate, Reward, Score, ask, run_one
from rationalyst.search.heuristics import RATIONALE_STOP, implicit_process_reward, step_score
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings


@dataclass(frozen=True)
class StepVerdict:
    """One step's rationale, its score with the rationale, and (for comparison) without it."""

    rationale: str
    score: float
    score_without: float


def verify_steps(
    item: BenchmarkItem, steps: list[str], roles: Roles, settings: SearchSettings, *, without: bool = False,
    verifier: str = "implicit",
) -> list[StepVerdict]:
    """Score every step of ``steps`` by ``verifier``; ``without`` adds implicit's no-rationale score."""
    return run_one(verify_program(item, steps, roles, settings, without=without, verifier=verifier), roles)


def verify_program(
    item: BenchmarkItem, steps: list[str], roles: Roles, settings: SearchSettings, *, without: bool = False,
    verifier: str = "implicit",
) -> Generator[list[Call], list[Any], list[StepVerdict]]:
    """`verify_steps` as a program (`batch`)."""
    if not steps:
        return []
    nan, separator = float("nan"), settings.step_separator

    def context(i: int, rationale: str | None) -> str:  # the scorer's context for step i
        return prompts.scorer_context(item, steps[:i], rationale, separator)

    if verifier == "prm":
        (rewards,) = yield from ask(Reward("prm", prompts.prm_request(item, steps)))
        return [StepVerdict("", r, nan) for r in rewards]
    if verifier == "implicit-prm":
        requests = [ScoreRequest(context(i, None), [steps[i]]) for i in range(len(steps))]
        scored = yield from ask(*[Score(role, r) for role in ("rationalist", "scorer") for r in requests])
        theta, reference = scored[: len(steps)], scored[len(steps) :]
        beta = settings.implicit_prm_beta
        return [StepVerdict("", implicit_process_reward(t[0], r[0], beta), nan) for t, r in zip(theta, reference)]
    if verifier != "implicit":
        raise ValueError(f"unknown verifier {verifier!r}: use implicit, prm or implicit-prm")
    params = SamplingParams(max_new_tokens=settings.max_rationale_tokens, stop=RATIONALE_STOP, logprobs=False)
    instruction = roles.rationalist_instruction
    rationale_prompts = [prompts.rationalist_prompt(item, steps[:i], instruction, separator) for i in range(len(steps))]
    written = yield from ask(*[Generate("rationalist", prompt, params) for prompt in rationale_prompts])
    rationales = [row[0].text.strip() for row in written]
    requests = [ScoreRequest(context(i, rationales[i]), [steps[i]]) for i in range(len(steps))]
    if without:
        requests += [ScoreRequest(context(i, None), [steps[i]]) for i in range(len(steps))]
    scored = yield from ask(*[Score("scorer", request) for request in requests])
    scores = [step_score(row[0], settings.discount) for row in scored]
    plain = scores[len(steps) :] if without else [float("nan")] * len(steps)
    return [StepVerdict(r, s, w) for r, s, w in zip(rationales, scores[: len(steps)], plain)]


def aggregate(scores: list[float], how: str, probabilities: bool = False) -> float:
    """A whole solution's score from its step scores: min, mean, last, or product (for log-prob scores
    their sum; for ``probabilities``, a PRM's, the sum of their logs)."""
    if not scores:
        return float("-inf")
    if how == "product" and probabilities:
        return sum(math.log(max(p, 1e-12)) for p in scores)
    if how == "min":
        return min(scores)
    if how == "mean":
        return sum(scores) / len(scores)
    if how == "last":
        return scores[-1]
    if how == "product":
        return sum(scores)
    raise ValueError(f"unknown aggregate {how!r}: use min, mean, last or product")
