"""How the next step is chosen: one function per heuristic, one shared signature, one registry.

Each heuristic takes a `StepContext` (the problem, the steps chosen so far, the metered models, the
settings and a seed) and returns a `StepDecision`: the rationale it used (or None), the candidates,
their scores (higher is better; None where it has none) and the index of the chosen candidate.

* ``implicit`` (the paper's best): the scorer's mean token log-prob of each candidate given the
  trajectory followed by the rationalist's rationale; argmax.
* ``explicit``: the rationale is put into the agent's context and the agent writes the next step
  with it in view (one sample, no scoring); with ``explicit_context: keep`` (the default, as the
  paper's agent) the earlier steps' rationales stay in its context too.
* ``random``: a seeded uniform choice among the candidates.
* ``self-ppl``: the rationalist's own mean log-prob of each candidate given the trajectory alone.
* ``llm-judge``: a judge model rates each candidate 0-3; replies that do not parse are counted and
  score None (ranked last), never replaced by a random number.
* ``prm``: a discriminative process reward model (`lm.prm`, the ``prm`` role) gives each candidate
  P(good) as the last step of the trajectory; argmax. No rationale.
* ``implicit-prm``: PRIME's implicit process reward (Cui et al. 2025): beta * sum over the candidate's
  tokens of log pi(token) - log pi_ref(token), with pi the rationalist and pi_ref the scorer (its
  base model: a no-rationale variant of implicit supervision); argmax. No rationale.

Candidates are sampled with a seed derived from the problem and the trajectory, so every heuristic
meets the same candidates wherever the trajectories agree.

Heuristics are programs (`batch`): they yield the model calls they need (``yield from ctx.rationale()``)
instead of making them, so the calls of many problems at the same step go out as one engine call.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.lm.base import ContinuationScore, SamplingParams, ScoreRequest
from rationalyst.search import prompts
from rationalyst.search.batch import Call, Generate, Reward, Score, ask, gather
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings

RATIONALE_STOP = ("\n", "<EOT>")
_JUDGE_RATING = re.compile(r"\b([0-3])\b")


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (problem id, trajectory, ...)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def step_score(score: ContinuationScore, discount: float | None = None) -> float:
    """A step's score: its mean token log-prob, or the discount-weighted mean when ``discount`` is set."""
    if discount is None:
        return score.mean
    weights = sum(discount**i for i in range(len(score.logprobs)))
    return score.discounted(discount) / weights if weights else 0.0


@dataclass(frozen=True)
class Candidate:
    """One proposed next step (or whole solution) and how many tokens the agent spent on it. ``cut``: the
    agent's completion ran into its token limit, so a step may be unfinished ("The answer is 1" of 12): it
    can be chosen, but never ends a search as its answer (a whole solution loses its unfinished last step)."""

    text: str
    tokens: int
    cut: bool = False


@dataclass
class StepDecision:
    """What a heuristic decided at one step."""

    rationale: str | None
    candidates: list[Candidate]
    scores: list[float | None]
    chosen: int
    judge_parse_failures: int = 0


@dataclass
class StepContext:
    """Everything a heuristic may use at one step of one problem."""

    item: BenchmarkItem
    steps: list[str]
    roles: Roles
    settings: SearchSettings
    seed: int
    #: The rationale written before each step so far (None where there was none).
    step_rationales: list[str | None] = field(default_factory=list)
    _rationale: str | None = field(default=None, repr=False)

    def rationale(self) -> Generator[list[Call], list[Any], str]:
        """The rationalist's rationale for the trajectory so far (greedy; written once per step)."""
        if self._rationale is None:
            params = SamplingParams(
                max_new_tokens=self.settings.max_rationale_tokens, stop=RATIONALE_STOP, logprobs=False
            )
            prompt = prompts.rationalist_prompt(
                self.item, self.steps, self.roles.rationalist_instruction, self.settings.step_separator
            )
            (completions,) = yield from ask(Generate("rationalist", prompt, params))
            self._rationale = completions[0].text.strip()
        return self._rationale

    def propose(
        self, rationale: str | None = None, n: int | None = None, step_rationales: list[str | None] | None = None
    ) -> Generator[list[Call], list[Any], list[Candidate]]:
        """Sample the agent's candidate next steps, each ended by the step separator (a line, or a
        paragraph) or by ``max_step_tokens`` (``cut``); empty ones are dropped (the agent ended its answer)."""
        params = SamplingParams(
            n=n or self.settings.n_candidates,
            temperature=self.settings.temperature,
            top_p=self.settings.top_p,
            max_new_tokens=self.settings.max_step_tokens,
            stop=(self.settings.step_separator,),
            seed=derive_seed(self.seed, self.item.id, *self.steps),
            logprobs=False,
        )
        prompt = prompts.agent_prompt(
            self.roles.agent, self.item, self.steps, rationale, step_rationales, self.roles.solve_prompt,
            self.settings.step_separator,
        )
        (completions,) = yield from ask(Generate("agent", prompt, params))
        return [
            Candidate(c.text.strip(), len(c.token_ids), c.finish_reason == "length") for c in completions if c.text.strip()
        ]

    def scorer_context(self, rationale: str | None) -> str:
        """The scorer's context for the next step: the trajectory (and ``rationale``, when given)."""
        return prompts.scorer_context(self.item, self.steps, rationale, self.settings.step_separator)

    def score_candidates(
        self, role: str, context: str, candidates: list[Candidate]
    ) -> Generator[list[Call], list[Any], list[float]]:
        """Mean log-prob of each candidate after ``context`` by ``role``'s model, in one request (duplicates once)."""
        unique = list(dict.fromkeys(c.text for c in candidates))
        (scores,) = yield from ask(Score(role, ScoreRequest(context, unique)))
        by_text = {text: step_score(s, self.settings.discount) for text, s in zip(unique, scores)}
        return [by_text[c.text] for c in candidates]


def _argmax(scores: list[float | None]) -> int:
    """The first index of the highest score; None and NaN (a scorer overflowing) rank below every number."""
    ranked = [s if s is not None and not math.isnan(s) else None for s in scores]
    best = 0
    for i, s in enumerate(ranked):
        if s is not None and (ranked[best] is None or s > ranked[best]):
            best = i
    return best


Heuristic = Callable[[StepContext], Generator[list[Call], list[Any], StepDecision]]


def implicit(ctx: StepContext):
    # The rationale and the candidates both follow from the trajectory alone: asked for together, so
    # that one engine in both roles writes them in one call (`batch.generate_mixed`).
    rationale, candidates = yield from gather([ctx.rationale(), ctx.propose()])
    if not candidates:
        return StepDecision(rationale, [], [], 0)
    context = ctx.scorer_context(rationale)
    scores = yield from ctx.score_candidates("scorer", context, candidates)
    return StepDecision(rationale, candidates, list(scores), _argmax(scores))


def explicit(ctx: StepContext):
    rationale = yield from ctx.rationale()
    earlier = ctx.step_rationales if ctx.settings.explicit_context == "keep" else None
    candidates = yield from ctx.propose(rationale=rationale or None, n=1, step_rationales=earlier)
    return StepDecision(rationale, candidates, [None] * len(candidates), 0)


def random_choice(ctx: StepContext):
    candidates = yield from ctx.propose()
    if not candidates:
        return StepDecision(None, [], [], 0)
    rng = random.Random(derive_seed(ctx.seed, ctx.item.id, "random", *ctx.steps))
    return StepDecision(None, candidates, [None] * len(candidates), rng.randrange(len(candidates)))


def self_ppl(ctx: StepContext):
    candidates = yield from ctx.propose()
    if not candidates:
        return StepDecision(None, [], [], 0)
    context = ctx.scorer_context(None)
    scores = yield from ctx.score_candidates("rationalist", context, candidates)
    return StepDecision(None, candidates, list(scores), _argmax(scores))


def parse_judge_rating(reply: str) -> int | None:
    """The first rating 0-3 in the judge's reply, or None."""
    match = _JUDGE_RATING.search(reply)
    return int(match.group(1)) if match else None


def llm_judge(ctx: StepContext):
    candidates = yield from ctx.propose()
    if not candidates:
        return StepDecision(None, [], [], 0)
    params = SamplingParams(max_new_tokens=ctx.settings.judge_max_tokens, logprobs=False)
    separator = ctx.settings.step_separator
    replies = yield from ask(
        *[Generate("judge", prompts.judge_prompt(ctx.item, ctx.steps, c.text, separator), params) for c in candidates]
    )
    ratings = [parse_judge_rating(r[0].text) for r in replies]
    scores = [float(r) if r is not None else None for r in ratings]
    return StepDecision(None, candidates, scores, _argmax(scores), judge_parse_failures=ratings.count(None))


def prm(ctx: StepContext):
    candidates = yield from ctx.propose()
    if not candidates:
        return StepDecision(None, [], [], 0)
    rated = yield from ask(*[Reward("prm", prompts.prm_request(ctx.item, [*ctx.steps, c.text])) for c in candidates])
    scores = [row[-1] for row in rated]
    return StepDecision(None, candidates, scores, _argmax(scores))


def implicit_process_reward(theta: ContinuationScore, reference: ContinuationScore, beta: float) -> float:
    """PRIME's implicit process reward of one step: beta * (log pi - log pi_ref), summed over its tokens."""
    return beta * (sum(theta.logprobs) - sum(reference.logprobs))


def implicit_prm(ctx: StepContext):
    candidates = yield from ctx.propose()
    if not candidates:
        return StepDecision(None, [], [], 0)
    unique = list(dict.fromkeys(c.text for c in candidates))
    request = ScoreRequest(ctx.scorer_context(None), unique)
    theta, reference = yield from ask(Score("rationalist", request), Score("scorer", request))
    by_text = {
        text: implicit_process_reward(t, r, ctx.settings.implicit_prm_beta) for text, t, r in zip(unique, theta, reference)
    }
    scores = [by_text[c.text] for c in candidates]
    return StepDecision(None, candidates, scores, _argmax(scores))


HEURISTICS: dict[str, Heuristic] = {
    "implicit": implicit,
    "explicit": explicit,
    "random": random_choice,
    "self-ppl": self_ppl,
    "llm-judge": llm_judge,
    "prm": prm,
    "implicit-prm": implicit_prm,
}
#: The heuristics that score every candidate: the verifiers that beam, best-of-n and dvts can rank by.
VERIFIERS = ("implicit", "prm", "implicit-prm")
