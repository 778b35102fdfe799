"""The guided search as a chat model: `rationalyst serve --guided` answers chat requests with it.

The last user message is the question; the reply is the solution the search chose, one step per
line. The search recipe (a `SolveConfig` YAML: method, family, models, settings) comes from
``--guided-config``; models it names that the server already serves are reused, not loaded twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from rationalyst.config import load_config
from rationalyst.errors import RationalystError
from rationalyst.lm.base import LanguageModel, SamplingParams
from rationalyst.search.pool import ModelPool
from rationalyst.search.solve import SolveConfig, solve


def make_guided(
    config: Path | None, models: Mapping[str, LanguageModel]
) -> Callable[[list[dict], SamplingParams], str]:
    """A ``guided(messages, params) -> text`` callable running the step search on the question."""
    solve_config = load_config(SolveConfig, config) if config is not None else SolveConfig()
    pool = ModelPool()
    for model in models.values():
        pool.add(model)

    def guided(messages: list[dict], params: SamplingParams) -> str:
        questions = [m.get("content") for m in messages if m.get("role") == "user"]
        if not questions or not isinstance(questions[-1], str) or not questions[-1].strip():
            raise RationalystError("the guided model needs a user message with the question")
        run_config = solve_config
        if params.seed is not None:
            run_config = solve_config.model_copy(update={"seed": params.seed})
        trace = solve(run_config, questions[-1].strip(), pool=pool)
        return trace["solution"]

    return guided
