"""One question outside any benchmark: `rationalyst solve`, and the guided chat model of `serve --guided`."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from rationalyst.data.benchmarks import BenchmarkItem, Family, unlabeled_item
from rationalyst.search.methods import METHODS, check_methods
from rationalyst.search.pool import ModelPool, RolesConfig, require_prm


class SolveConfig(RolesConfig):
    """`rationalyst solve`: one question, one method."""

    method: str = Field("implicit", description="Heuristic or baseline: " + ", ".join(METHODS) + ".")
    family: Family = Field("arithmetic", description="Task family (prompt and answer format): arithmetic, math, multiple_choice, logic.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        return check_methods([method])[0]

    @model_validator(mode="after")
    def _prm_given_when_used(self) -> SolveConfig:
        require_prm(self, [self.method])
        return self

    @model_validator(mode="after")
    def _lines_only(self) -> SolveConfig:
        # One question is solved after the family's packaged demos, whose steps are lines.
        if self.search.step_format != "lines":
            raise ValueError("search.step_format: a single question is solved after few-shot demos (one step per line); use lines")
        return self


def question_item(config: SolveConfig, question: str, choices: list[str] | None = None, answer: str = "") -> BenchmarkItem:
    """A question outside any benchmark as the search's item (a placeholder answer when none is given)."""
    return unlabeled_item(config.family, question, choices, answer)


def solve(config: SolveConfig, question: str, choices: list[str] | None = None, answer: str = "",
          pool: ModelPool | None = None) -> dict[str, Any]:
    """One question outside any benchmark (`rationalyst solve`); ``answer`` is checked when given."""
    item = question_item(config, question, choices, answer)
    roles = (pool or ModelPool()).roles(config, config.method)
    trace = METHODS[config.method](item, roles, config.search, config.seed)
    if not answer:
        trace.update(gold=None, correct=None)
    return trace
