"""The models of the search by role, each behind a meter that counts its tokens and seconds.

Roles are agent (proposes steps), rationalist (writes rationales), scorer (scores candidates given a
rationale), judge (the llm-judge baseline's model) and prm (a discriminative process reward model,
`lm.prm`: the ``prm`` scorer). One loaded model may serve several
roles (the CPU demo uses one model in all of them); each role still gets its own meter, so a trace
can say how much of a problem's cost went to supervision.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rationalyst.data.rationale_text import load_instruction
from rationalyst.data.solve_prompts import SolvePrompt
from rationalyst.lm.base import (
    Completion,
    ContinuationScore,
    LanguageModel,
    Prompt,
    SamplingParams,
    ScoreRequest,
)

ROLES = ("agent", "rationalist", "scorer", "judge", "prm")
#: The roles that supervise the agent (their cost is the supervision share).
SUPERVISION_ROLES = ("rationalist", "scorer", "judge", "prm")


@dataclass
class Meter:
    """Tokens and seconds spent by one role (generated tokens, or tokens run through scoring passes)."""

    tokens: int = 0
    seconds: float = 0.0


@dataclass
class MeteredModel:
    """A role's view of a model: the same calls, with their cost added to the role's meter."""

    model: Any  # a LanguageModel; for the prm role a ProcessRewardModel (None when no method uses it)
    meter: Meter = field(default_factory=Meter)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        start = time.perf_counter()
        out = self.model.generate(prompts, params)
        self.meter.seconds += time.perf_counter() - start
        self.meter.tokens += sum(len(c.token_ids) for row in out for c in row)
        return out

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[list[ContinuationScore]]:
        start = time.perf_counter()
        before = getattr(self.model, "forwarded_tokens", None)
        out = self.model.score_many(requests)
        self.meter.seconds += time.perf_counter() - start
        if before is not None:
            self.meter.tokens += self.model.forwarded_tokens - before
        else:  # engines that do not count: the scored tokens, a lower bound
            self.meter.tokens += sum(len(s.token_ids) for row in out for s in row)
        return out

    def render(self, prompt: Prompt) -> str:
        return self.model.render(prompt)


@dataclass
class Roles:
    """The metered models of one search; `reset` starts the meters of a new problem.

    ``rationalist_instruction``: the instruction the rationalist was trained with (None: its user turn
    is the text alone); by default the packaged one. ``solve_prompt``: the agent's few-shot prompt when
    it is not the packaged one of the item's family (``demos: train``)."""

    agent: MeteredModel
    rationalist: MeteredModel
    scorer: MeteredModel
    judge: MeteredModel
    prm: MeteredModel = field(default_factory=lambda: MeteredModel(None))
    rationalist_instruction: str | None = field(default_factory=load_instruction)
    solve_prompt: SolvePrompt | None = None

    @classmethod
    def of(
        cls,
        agent: LanguageModel,
        rationalist: LanguageModel | None = None,
        scorer: LanguageModel | None = None,
        judge: LanguageModel | None = None,
        prm: Any = None,
        **options: Any,
    ) -> Roles:
        """Roles from models; a missing rationalist, scorer or judge is the agent itself (a PRM has no default)."""
        return cls(
            MeteredModel(agent),
            MeteredModel(rationalist or agent),
            MeteredModel(scorer or agent),
            MeteredModel(judge or agent),
            MeteredModel(prm),
            **options,
        )

    def fork(self) -> Roles:
        """The same models and prompts with fresh meters: one problem's view when problems run in a batch."""
        return replace(self, **{role: MeteredModel(getattr(self, role).model) for role in ROLES})

    def reset(self) -> None:
        for role in ROLES:
            getattr(self, role).meter = Meter()

    def tokens(self) -> dict[str, int]:
        return {role: getattr(self, role).meter.tokens for role in ROLES}

    def seconds(self) -> dict[str, float]:
        return {role: round(getattr(self, role).meter.seconds, 4) for role in ROLES}
