"""The demo until the pipeline exists: candidate steps from the agent, rated with and without a rationale.

It exercises the whole model layer on the embedded default model: chat-templated generation with a
seed, and KV-shared scoring of several continuations after one context.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydantic import Field

from rationalyst.config import StrictModel
from rationalyst.lm import SamplingParams, load_model
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.registry import ModelConfig

INSTRUCTION = "Solve the problem one step at a time. Write only the next step."


class ShowcaseConfig(StrictModel):
    """The `rationalyst demo` recipe (see recipes/cpu-demo.yaml)."""

    model: ModelConfig = Field(default_factory=lambda: ModelConfig(spec=DEFAULT_LM))
    question: str = Field(min_length=1, description="The problem the agent works on.")
    rationale: str = Field(min_length=1, description="A rationale for the next step, written by hand.")
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(n=4, temperature=0.8))
    written_steps: list[str] = Field(
        default_factory=list, description="Candidate steps written by hand, rated beside the sampled ones."
    )


@dataclass
class CandidateRating:
    text: str
    source: str  # "agent" (sampled) or "written" (from the recipe)
    tokens: int
    mean_without: float
    mean_with: float

    @property
    def delta(self) -> float:
        return self.mean_with - self.mean_without


@dataclass
class ShowcaseResult:
    candidates: list[CandidateRating]
    generate_seconds: float
    score_seconds: float


def run(config: ShowcaseConfig) -> ShowcaseResult:
    model = load_model(config.model)
    messages = [{"role": "user", "content": f"{INSTRUCTION}\n\n{config.question}"}]
    start = time.perf_counter()
    completions = model.generate([messages], config.sampling)[0]
    generated = time.perf_counter()
    texts = [c.text.strip() or c.text for c in completions] + config.written_steps
    sources = ["agent"] * len(completions) + ["written"] * len(config.written_steps)
    # Implicit supervision scores a step given the trajectory *followed by* the rationale, as if the
    # model had written the rationale itself just before the step.
    trajectory = model.render(messages)
    without = model.score(trajectory, texts)
    with_rationale = model.score(f"{trajectory}{config.rationale}\n", texts)
    scored = time.perf_counter()
    ratings = [
        CandidateRating(text, source, len(a.token_ids), a.mean, b.mean)
        for text, source, a, b in zip(texts, sources, without, with_rationale)
    ]
    return ShowcaseResult(ratings, generated - start, scored - generated)
