"""`rationalyst verify`: step scores for given solutions by a step verifier (see `search.verify`): implicit
supervision (the default), a process reward model (``verifier: prm``) or PRIME's implicit reward.

Input: JSONL records ``{"id", "question", "steps": [..], "choices"?}`` (bad lines are skipped and
counted). Output: a run directory whose records are ``{"id", "scores", "scores_without",
"rationales"}``, one score per step (higher = the rationale makes the step likelier), resumable.
``scores_without`` (the scorer without a rationale; implicit only, null otherwise) is there to show what
the rationale adds.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rationalyst.console import progress
from rationalyst.data.benchmarks import BenchmarkItem, Family, unlabeled_item
from rationalyst.errors import InputError
from rationalyst.runs import RunDir, read_json_lines
from rationalyst.search.verify import verify_steps
from rationalyst.search.pool import ModelPool, RolesConfig, require_prm


class VerifyConfig(RolesConfig):
    """Score the steps of given solutions."""

    input: Path = Field(description="JSONL of {id, question, steps, choices?} records.")
    output: Path = Field(description="Run directory for the step scores.")
    family: Family = Field("math", description="Task family of the questions (how the question is written).")
    verifier: Literal["implicit", "prm", "implicit-prm"] = Field(
        "implicit", description="implicit (rationale, then the step's log-prob), prm (P(good) by the prm model) or "
        "implicit-prm (beta * log rationalist/scorer over the step's tokens).",
    )
    overwrite: bool = Field(False, description="Start over instead of resuming.")

    execution_fields = frozenset({"overwrite"})
    added_fields = frozenset({"prm", "verifier"})

    @model_validator(mode="after")
    def _prm_given_when_used(self) -> VerifyConfig:
        require_prm(self, [self.verifier])
        return self


def _item(record: dict[str, Any], family: str) -> BenchmarkItem | str:
    """The record's question as an item, or why it cannot be verified."""
    if not isinstance(record.get("id"), str) or not record["id"]:
        return "missing id"
    if not isinstance(record.get("question"), str):
        return "missing question"
    steps = record.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        return "steps must be a non-empty list of non-empty strings"
    choices = record.get("choices")
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        return "choices must be a list of strings"
    try:
        return unlabeled_item(family, record["question"], choices, id=record["id"], benchmark="verify")
    except InputError as exc:  # e.g. choices for a math question, none for a multiple-choice one
        return str(exc)


def run(config: VerifyConfig, pool: ModelPool | None = None) -> dict[str, Any]:
    """Score every step of every input solution; returns the manifest's counts."""
    run_dir = RunDir(config.output, config, stage="verify", mode="overwrite" if config.overwrite else "resume")
    if run_dir.is_complete():
        return run_dir.manifest()["counts"]
    records, items = [], {}
    for file, line, record in read_json_lines(config.input, run_dir.report_skip, stage="verify"):
        item = _item(record, config.family)
        if isinstance(item, str):
            run_dir.skip(item, file=file, line=line)
        elif item.id in items:
            run_dir.skip("repeated id", file=file, line=line)
        else:
            records.append(record)
            items[item.id] = item
    pending = list(run_dir.pending(records))
    if pending:
        roles = (pool or ModelPool()).roles(config, config.verifier)  # the step search of that heuristic
        with run_dir.writer(shard_size=20) as writer:
            for record in progress(pending, total=len(pending), description="verify"):
                item = items[record["id"]]
                steps = [s.strip() for s in record["steps"]]
                verdicts = verify_steps(
                    item, steps, roles, config.search, without=config.verifier == "implicit", verifier=config.verifier
                )
                numbers = [v.score for v in verdicts] + ([v.score_without for v in verdicts] if config.verifier == "implicit" else [])
                if not all(math.isfinite(x) for x in numbers):  # a scorer overflowing (float16): not JSON
                    run_dir.skip("score not finite", id=record["id"])
                    continue
                writer.write({
                    "id": record["id"],
                    "scores": [round(v.score, 6) for v in verdicts],
                    "scores_without": [round(v.score_without, 6) for v in verdicts] if config.verifier == "implicit" else None,
                    "rationales": [v.rationale for v in verdicts],
                })
    return run_dir.finish()["counts"]
