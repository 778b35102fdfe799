"""One problem's trace record (schema: docs/traces.md), built from the steps a method took."""

from __future__ import annotations

import time
from typing import Any

from rationalyst.data.answers import extract_answer, is_correct
from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.search.heuristics import Candidate
from rationalyst.search.roles import Roles


def step_record(
    rationale: str | None, candidates: list[Candidate], scores: list[float | None], chosen: int, **extra: Any
) -> dict[str, Any]:
    """One step: the rationale, every candidate with its score and token count, the chosen index."""
    return {
        "rationale": rationale,
        "candidates": [
            {"text": c.text, "score": None if s is None else round(float(s), 6), "tokens": c.tokens}
            for c, s in zip(candidates, scores)
        ],
        "chosen": chosen,
        **extra,
    }


def trace_record(
    item: BenchmarkItem,
    method: str,
    solution_steps: list[str],
    steps: list[dict[str, Any]],
    stop_reason: str,
    roles: Roles,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    """The trace of one solved problem; the answer is parsed from the solution and checked against the gold."""
    solution = "\n".join(solution_steps)
    prediction = extract_answer(solution, item)
    seconds = roles.seconds()
    seconds["total"] = round(time.perf_counter() - started, 4)
    return {
        "id": item.id,
        "benchmark": item.benchmark,
        "method": method,
        "question": item.question,
        "choices": item.choices,
        "gold": item.answer,
        "steps": steps,
        "solution": solution,
        "prediction": prediction,
        "parsed": prediction is not None,
        "correct": prediction is not None and is_correct(prediction, item),
        "stop_reason": stop_reason,
        "tokens": roles.tokens(),
        "seconds": seconds,
        **extra,
    }
