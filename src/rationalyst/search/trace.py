"""One problem's trace record: its schema (`Trace`, docs/traces.md), defined once for the methods that
write it and the report that reads it, and the functions that build it from the steps a method took.

Records are checked against the schema as they are written and as they are read (pydantic), so a
malformed one is reported with its file, line and field instead of breaking the report later.
"""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_serializer, model_validator

from rationalyst.data.answers import extract_answer, is_correct
from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.search.heuristics import Candidate
from rationalyst.search.roles import ROLES, Roles


def _text(value: Any) -> Any:
    """Answers may be numbers in a record; they are shown and compared as text."""
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)


def _choices(value: Any) -> Any:
    if isinstance(value, dict):
        return [f"{key}. {text}" for key, text in value.items()]
    if isinstance(value, list):
        return [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in value]
    return value


def _finite(value: Any) -> Any:
    """``value`` with each number that is not finite (in lists too) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


Text = Annotated[str | None, BeforeValidator(_text)]


class _Record(BaseModel):
    # Fields beyond the schema (a method's extras: aggregate, path_score, explicit_context...) are kept.
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _finite_numbers(cls, data: Any) -> Any:
        """A score that is not a finite number is recorded as None, in a field or a list of scores
        (``score``, ``subtree_scores``, ``step_scores``): `verify.aggregate` gives -inf to a solution
        with no steps, which ranks it last but is no JSON (json.dumps writes ``-Infinity``, which the
        report's strict dump refuses). Records written with one read back the same way."""
        return {key: _finite(value) for key, value in data.items()} if isinstance(data, dict) else data


class CandidateRecord(_Record):
    """One candidate: its text, score (None where the method has none) and agent tokens; ``cut`` where
    the agent's completion ran into its token limit (written only then)."""

    text: str
    score: float | None = None
    tokens: int | None = None
    cut: bool = False

    @model_serializer(mode="wrap")
    def _cut_only_when_true(self, handler: Any) -> dict[str, Any]:
        """``cut`` is written only where true: the records of whole completions stay as they were."""
        data = handler(self)
        if not self.cut:
            data.pop("cut", None)
        return data


class StepRecord(_Record):
    """One step of a search: the rationale used, every candidate, the index of the chosen one."""

    rationale: str | None = None
    candidates: list[CandidateRecord] = []
    chosen: int | None = None

    @model_validator(mode="after")
    def _chosen_in_range(self) -> StepRecord:
        if self.chosen is not None and not 0 <= self.chosen < len(self.candidates):
            raise ValueError(f"chosen = {self.chosen} but the step has {len(self.candidates)} candidates")
        return self


class Trace(_Record):
    """One problem's trace (``docs/traces.md``): written by `trace_record`, read back by the report."""

    id: str
    benchmark: str | None = None
    method: str | None = None
    question: Text = ""
    choices: Annotated[list[str] | None, BeforeValidator(_choices)] = None
    gold: Text = None
    steps: list[StepRecord] = []
    solution: Text = None
    prediction: Text = None
    parsed: bool | None = None
    correct: bool = False
    stop_reason: str | None = None
    tokens: dict[str, float] = {}
    seconds: dict[str, float] = {}
    judge_parse_failures: int | None = None
    error: str | None = None

    @property
    def right(self) -> bool:
        """Counted correct: a failed problem (``error``) is wrong whatever ``correct`` says."""
        return self.correct and not self.error

    def total_seconds(self) -> float:
        return self.seconds["total"] if "total" in self.seconds else sum(self.seconds.get(r, 0.0) for r in ROLES)




def step_record(
    rationale: str | None, candidates: list[Candidate], scores: list[float | None], chosen: int, **extra: Any
) -> dict[str, Any]:
    """One step: the rationale, every candidate with its score and token count, the chosen index."""
    return StepRecord(
        rationale=rationale,
        candidates=[
            CandidateRecord(text=c.text, score=None if s is None else round(float(s), 6), tokens=c.tokens, cut=c.cut)
            for c, s in zip(candidates, scores)
        ],
        chosen=chosen,
        **extra,
    ).model_dump(exclude_unset=True)


def trace_record(
    item: BenchmarkItem,
    method: str,
    solution_steps: list[str],
    steps: list[dict[str, Any]],
    stop_reason: str,
    roles: Roles,
    started: float,
    answer_steps: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The trace of one solved problem; the answer is parsed from the solution (or from ``answer_steps``,
    the steps it may be read from, where a search chose steps that cannot state it) and checked against
    the gold."""
    solution = "\n".join(solution_steps)
    prediction = extract_answer(solution if answer_steps is None else "\n".join(answer_steps), item)
    seconds = roles.seconds()
    seconds["total"] = round(time.perf_counter() - started, 4)
    return Trace(
        id=item.id,
        benchmark=item.benchmark,
        method=method,
        question=item.question,
        choices=item.choices,
        gold=item.answer,
        steps=steps,
        solution=solution,
        prediction=prediction,
        parsed=prediction is not None,
        correct=prediction is not None and is_correct(prediction, item),
        stop_reason=stop_reason,
        tokens=roles.tokens(),
        seconds=seconds,
        **extra,
    ).model_dump(exclude_unset=True)
