"""The agent's few-shot step-by-step prompts, one file per answer family.

In the step search (Stage 5 of RATIONALYST) the agent proposes the next reasoning step, one step per
line, prompted with worked examples whose solutions are written that way. The examples live in
``rationalyst/prompts/solve/<family>.yaml`` (package data): an ``instruction`` (the system message)
and ``demos``, each ``{question, choices (optional), steps}`` whose last step states the final answer
in the family's form ("The answer is 26.", "The answer is $\\boxed{6}$.", "The answer is B.").

Loading checks what the search relies on: the last step of every demo states an answer that
`rationalyst.data.answers.has_final_answer` recognises, and no earlier step does (else the agent would
learn to stop early, or the demo would teach a form the search cannot read).

Questions are shown the same way for demos and benchmark items (`format_question_text`): the question,
then one line per option, ``A) ...``, ``B) ...``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rationalyst.data.answers import has_final_answer
from rationalyst.data.benchmarks import FAMILIES, LETTERS, BenchmarkItem
from rationalyst.data.prompt_files import read_prompt_yaml
from rationalyst.errors import RationalystError


class Demo(BaseModel):
    """One worked example: the question (and options), and its solution as steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    choices: list[str] | None = None
    steps: list[str] = Field(min_length=1)

    @property
    def question_text(self) -> str:
        """The question as the agent sees it (`format_question_text`)."""
        return format_question_text(self.question, self.choices)


class SolvePrompt(BaseModel):
    """A family's instruction (system message) and demos."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    instruction: str = Field(min_length=1)
    demos: list[Demo]


def format_question_text(question: str, choices: list[str] | None = None) -> str:
    """The question, then one line per option (``A) ...``), as the agent and the scorer read it."""
    lines = [question.strip()]
    lines += [f"{LETTERS[i]}) {choice.strip()}" for i, choice in enumerate(choices or [])]
    return "\n".join(lines)


def format_question(item: BenchmarkItem) -> str:
    """`format_question_text` of a benchmark item."""
    return format_question_text(item.question, item.choices)


def load_solve_prompt(family: str, prompts_dir: str | Path | None = None) -> SolvePrompt:
    """The family's prompt from ``<prompts_dir>/<family>.yaml``, else the packaged one (cached, and read
    again once the user's file changes: a long-lived process sees an edit as a new process would)."""
    if family not in FAMILIES:
        raise RationalystError(f"no solve prompt for family {family!r} (families: {', '.join(FAMILIES)})")
    if prompts_dir is None:
        return _load(family, None, None)
    try:
        stat = (Path(prompts_dir) / f"{family}.yaml").stat()
        version = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        version = None  # reading it raises the error that names the file
    return _load(family, str(prompts_dir), version)


@lru_cache(maxsize=32)
def _load(family: str, prompts_dir: str | None, version: tuple[int, int] | None) -> SolvePrompt:
    source, data = read_prompt_yaml("solve", f"{family}.yaml", prompts_dir, what="solve prompt")
    if not isinstance(data, dict):
        raise RationalystError(f"{source}: expected a mapping with 'instruction' and 'demos'")
    try:
        prompt = SolvePrompt(family=family, instruction=str(data.get("instruction", "")).strip(), demos=data.get("demos") or [])
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RationalystError(f"{source}: field {loc}: {first['msg']}") from None
    for n, demo in enumerate(prompt.demos, 1):
        _check_demo(source, n, family, demo)
    return prompt


def _check_demo(source: Any, n: int, family: str, demo: Demo) -> None:
    options = len(demo.choices) if demo.choices else None
    if family in ("multiple_choice", "logic") and not demo.choices:
        raise RationalystError(f"{source}: demo {n} needs choices (family {family})")
    if not has_final_answer(demo.steps[-1], family, n_choices=options):
        raise RationalystError(f"{source}: demo {n}: the last step states no final answer the search can read")
    for i, step in enumerate(demo.steps[:-1], 1):
        if "\n" in step.strip():
            raise RationalystError(f"{source}: demo {n}, step {i} spans several lines (one step per line)")
        if has_final_answer(step, family, n_choices=options):
            raise RationalystError(f"{source}: demo {n}, step {i} already states a final answer")
