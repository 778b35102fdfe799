"""The knobs of the step search, with the authors' values as defaults (METHOD.md, Stage 5)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rationalyst.config import StrictModel


class SearchSettings(StrictModel):
    """How candidates are sampled, rationales written and steps scored."""

    n_candidates: int = Field(3, ge=1, description="Candidate next steps the agent samples per step (code: 3).")
    temperature: float = Field(0.7, ge=0, description="Agent sampling temperature for candidates (code: 0.7).")
    top_p: float = Field(1.0, gt=0, le=1, description="Agent nucleus sampling mass.")
    max_steps: int = Field(15, ge=1, description="Steps before the search gives up without an answer (code: 15).")
    max_step_tokens: int = Field(64, ge=1, description="Most tokens of one candidate step.")
    max_rationale_tokens: int = Field(48, ge=1, description="Most tokens of one rationale (greedy).")
    max_solution_tokens: int = Field(320, ge=1, description="Most tokens of a whole solution (cot, self-consistency, best-of-n).")
    discount: float | None = Field(
        None, gt=0, le=1,
        description="implicit: score sum_i gamma^i logp_i / sum_i gamma^i instead of the plain mean (0.9 in one script).",
    )
    self_consistency_samples: int = Field(5, ge=1, description="Whole solutions sampled by self-consistency.")
    beam_width: int = Field(3, ge=1, description="Partial solutions kept per step by beam search.")
    best_of_n: int = Field(4, ge=1, description="Whole solutions sampled by best-of-n.")
    aggregate: Literal["min", "mean", "last", "product"] = Field(
        "min", description="best-of-n: how step scores make a solution score (product = sum of log-probs)."
    )
    implicit_prm_beta: float = Field(
        0.05, gt=0, description="implicit-prm: beta of PRIME's reward beta * log(pi / pi_ref) (PRIME: 0.05)."
    )
    dvts_budget: int = Field(
        9, ge=1,
        description="dvts: N, the candidate steps per round over all subtrees: N // beam_width independent "
        "subtrees each expand beam_width candidates (all N in one subtree when N < beam_width) and keep the "
        "best (search-and-learn's DVTS); never more than N candidates per round, nor N finished paths.",
    )
    judge_max_tokens: int = Field(4, ge=1, description="llm-judge: tokens of the judge's reply.")
    demo_count: int = Field(4, ge=1, description="Benchmarks with demos: train: worked solutions in the agent's prompt.")
    demo_seed: int = Field(0, description="Benchmarks with demos: train: the seed that draws them.")
    explicit_context: Literal["keep", "current"] = Field(
        "keep",
        description="explicit: 'keep' every step's rationale in the agent's context for the later steps (the "
        "paper's agent), or show only the 'current' one.",
    )

    step_format: Literal["lines", "paragraphs"] = Field(
        "lines",
        description="What one step is: 'lines' (one line, the packaged few-shot prompts' format) or "
        "'paragraphs' (a block ended by a blank line: the format chat models answer in zero-shot, equations over "
        "several lines; needs demos: zero-shot). Candidates stop at the step's end, and every prompt (agent, "
        "rationalist, scorer) sets the steps apart the same way.",
    )

    added_fields = frozenset({"implicit_prm_beta", "dvts_budget", "step_format"})

    @property
    def step_separator(self) -> str:
        """What follows each step in every prompt: a newline, or a blank line for paragraphs."""
        return "\n\n" if self.step_format == "paragraphs" else "\n"
