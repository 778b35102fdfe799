"""The guided search as a chat model: `rationalyst serve --guided` answers chat requests with it.

The last user message is the question; the reply is the solution the search chose, one step per
line. The search recipe (a `SolveConfig` YAML: method, family, models, settings) comes from
``--guided-config``; models it names that the server already serves are reused, not loaded twice.
Requests that arrive together are solved in lockstep (`GuidedSearch.many`, the batched search of
`batch.run_batch`): one engine call per kind of call for all of them, each request's answer the one it
would get alone where the backend seeds each row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rationalyst.config import load_config
from rationalyst.errors import RationalystError
from rationalyst.lm.base import LanguageModel, SamplingParams
from rationalyst.search.batch import run_batch
from rationalyst.search.methods import PROGRAMS
from rationalyst.search.pool import ModelPool
from rationalyst.search.solve import SolveConfig, question_item


def _question(messages: list[dict]) -> str:
    questions = [m.get("content") for m in messages if m.get("role") == "user"]
    if not questions or not isinstance(questions[-1], str) or not questions[-1].strip():
        raise RationalystError("the guided model needs a user message with the question")
    return questions[-1].strip()


class GuidedSearch:
    """``guided(messages, params) -> text`` for one request, ``guided.many(requests)`` for several at once."""

    def __init__(self, config: SolveConfig, pool: ModelPool) -> None:
        self.config = config
        self.roles = pool.roles(config, config.method)

    def __call__(self, messages: list[dict], params: SamplingParams) -> str:
        (answer,) = self.many([(messages, params)])
        if isinstance(answer, Exception):
            raise answer
        return answer

    def many(self, requests: Sequence[tuple[list[dict], SamplingParams]]) -> list[str | Exception]:
        """Each request's solution (or the `RationalystError` it met), all solved in one lockstep batch;
        a request's ``seed`` replaces the recipe's, as in `rationalyst solve --seed`."""
        out: list[str | Exception] = [RationalystError("not solved")] * len(requests)
        jobs, slots = [], []
        program = PROGRAMS[self.config.method]
        for slot, (messages, params) in enumerate(requests):
            try:
                item = question_item(self.config, _question(messages))
            except RationalystError as exc:
                out[slot] = exc
                continue
            seed = self.config.seed if params.seed is None else params.seed
            jobs.append((lambda roles, item=item, seed=seed: program(item, roles, self.config.search, seed), self.roles.fork()))
            slots.append(slot)
        for index, result in run_batch(jobs, max(1, len(jobs))):
            out[slots[index]] = result if isinstance(result, Exception) else result["solution"]
        return out


def make_guided(config: Path | None, models: Mapping[str, LanguageModel]) -> GuidedSearch:
    """The guided search on the recipe ``config`` (None: `SolveConfig`'s defaults), reusing ``models``."""
    solve_config = load_config(SolveConfig, config) if config is not None else SolveConfig()
    pool = ModelPool()
    for model in models.values():
        pool.add(model)
    return GuidedSearch(solve_config, pool)
