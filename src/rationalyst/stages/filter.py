"""Stage 3: keep the rationales that make the text after them more predictable.

Exactly the method (METHOD.md, Stage 3): for a record ``{preceding, rationale, following}``,

    score(context) = sum_i gamma**i * log p(f_i | context)      over the tokens f_i of ``following``
    delta          = score(preceding + rationale) - score(preceding)

and the rationale is kept when ``delta >= tau`` (tau per source, default 0). Where the rationale goes
and which tokens count as "following" is `rationalyst.data.rationale_text.scoring_texts`, the same
insertion the search's scorer uses: the whitespace at the boundary belongs to the context, so the tokens
of ``following`` are the same in both passes (each record says so in ``same_tokens``).

Efficiency is part of the design, not an afterthought. The records of one document are scored
together as one `DocumentScoreRequest`: every without-rationale score is a slice of a single forward
pass over the document (``preceding + following`` is always a prefix of it), and every
with-rationale pass reuses the document's KV cache for its ``preceding`` and runs only the rationale
and its following segment. Several documents share a batch. The authors' code ran two full forward
passes per rationale instead; `benchmarks/filter_throughput.py` measures both.

Input: the extract stage's run directory (or a JSONL file of such records); records of one document
are expected to be contiguous, as extract writes them (if they are not, the result is the same, only
less work is shared). Output: every scored record with ``score_without``, ``score_with``, ``delta``,
``tau`` and ``kept``; the manifest counts kept and dropped per source; ``deltas.png`` shows the
histogram of deltas with tau marked.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field

from rationalyst.config import StrictModel
from rationalyst.console import progress
from rationalyst.errors import PromptTooLongError
from rationalyst.executor import ExecutorConfig, map_batches, write_records
from rationalyst.lm import DocumentScoreRequest, LanguageModel, load_model
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.registry import ModelConfig
from rationalyst.plots import histogram
from rationalyst.data.rationale_text import scoring_texts
from rationalyst.runs import RunDir, read_json_lines

log = logging.getLogger(__name__)

REQUIRED_TEXT_FIELDS = ("doc_id", "preceding", "rationale", "following")


class FilterConfig(StrictModel):
    """`rationalyst filter`: score every extracted rationale and keep those that help."""

    input: Path = Field(description="The extract stage's run directory, or a JSONL file of its records.")
    output: Path = Field(description="Run directory to write the scored records to.")
    scorer: ModelConfig = Field(
        default_factory=lambda: ModelConfig(spec=DEFAULT_LM),
        description="The scorer: the rationalist's base model before fine-tuning.",
    )
    gamma: float = Field(0.9, gt=0, le=1, description="Discount over the following segment's tokens.")
    tau: float = Field(0.0, description="Keep when delta >= tau (sources not in tau_by_source).")
    tau_by_source: dict[str, float] = Field(
        default_factory=dict, description="tau per source; the paper used gsm8k 1.2, ecqa 0.5, pile 0."
    )
    max_context_chars: int = Field(
        6000, ge=100, description="Longer preceding text is cut from the left (counted) to fit the scorer."
    )
    documents_per_batch: int = Field(8, ge=1, description="Documents scored in one call.")
    shard_size: int = Field(200, ge=1, description="Records per output shard.")
    overwrite: bool = Field(False, description="Start over instead of resuming an earlier run.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="local, or ray.")

    execution_fields = frozenset({"output", "documents_per_batch", "shard_size", "overwrite", "executor"})

    def tau_for(self, source: str) -> float:
        return self.tau_by_source.get(source, self.tau)


@dataclass
class FilterSummary:
    """What a filter run did: per-source kept/dropped counts and the deltas of all records."""

    kept: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    deltas: list[float] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    boundary_mismatches: int = 0
    histogram: Path | None = None


def _validate(record: Any) -> str | None:
    """Why a record cannot be scored (naming the field), or None when it can."""
    for name in REQUIRED_TEXT_FIELDS:
        if not isinstance(record.get(name), str):
            return f"field {name!r} missing or not a string"
    if "id" in record and (not isinstance(record["id"], str) or not record["id"]):
        return "field 'id' not a non-empty string"
    if not isinstance(record.get("position"), int) or isinstance(record.get("position"), bool):
        return "field 'position' missing or not an integer"
    if not record["following"].strip():
        return "field 'following' is empty"
    if not record["rationale"].strip():
        return "field 'rationale' is empty"
    return None


def read_rationale_records(path: Path, run: RunDir) -> Iterator[dict]:
    """Stream valid records from the input; bad lines and repeated ids are skipped and counted with file
    and line. A record without a source (or a null one) counts under ``unknown``."""
    seen: set[str] = set()
    for file, line_no, record in read_json_lines(path, run.report_skip, stage="extract"):
        problem = _validate(record)
        if problem:
            run.skip(problem, file=file, line=line_no)
            continue
        if not isinstance(record.get("source"), str) or not record["source"]:
            record["source"] = "unknown"
        record.setdefault("id", f"{record['doc_id']}:{record['position']}")
        if record["id"] in seen:
            run.skip("repeated record id", file=file, line=line_no)
            continue
        seen.add(record["id"])
        yield record


def _documents(records: Iterator[dict]) -> Iterator[list[dict]]:
    """Group consecutive records of the same document."""
    group: list[dict] = []
    for record in records:
        if group and record["doc_id"] != group[0]["doc_id"]:
            yield group
            group = []
        group.append(record)
    if group:
        yield group


class FilterWorker:
    """Scores batches of documents' records; holds one scorer model (one per Ray worker)."""

    def __init__(self, config: FilterConfig, model: LanguageModel | None = None) -> None:
        self.config = config
        self.model = model or load_model(config.scorer)

    def __call__(self, batch: list[list[dict]]) -> list[dict]:
        """Scored records, plus skip notices for records the scorer cannot take."""
        requests = [self._request(doc) for doc in batch]
        try:
            results = self.model.score_in_documents(requests)
        except PromptTooLongError as exc:  # only that: any other model error stops the run, work kept
            if len(batch) == 1:
                return [{"_skip": "too long for the scorer", "id": r["id"], "detail": str(exc)} for r in batch[0]]
            return [out for doc in batch for out in self([doc])]  # isolate the document that fails
        out = []
        for records, scores in zip(batch, results):
            for record, without, with_rationale in zip(records, scores[::2], scores[1::2]):
                out.append(self._scored(record, without, with_rationale))
        return out

    def _request(self, records: list[dict]) -> DocumentScoreRequest:
        pairs = []
        for r in records:
            preceding = r["preceding"]
            if len(preceding) > self.config.max_context_chars:
                preceding = preceding[-self.config.max_context_chars :]
                r["truncated"] = True
            texts = scoring_texts(preceding, r["rationale"], r["following"])
            pairs += [(texts.without, texts.following), (texts.with_rationale, texts.following)]
        # The document as far as these records reach: the longest preceding + following.
        document = max((p + f for p, f in pairs[::2]), key=len)
        return DocumentScoreRequest(document, pairs)

    def _scored(self, record: dict, without, with_rationale) -> dict:
        gamma = self.config.gamma
        score_without, score_with = without.discounted(gamma), with_rationale.discounted(gamma)
        if not (math.isfinite(score_without) and math.isfinite(score_with)):
            # A scorer overflowing (float16 on some GPUs) gives NaN or inf: no delta to keep or drop by,
            # and not JSON. The record is skipped and counted; the run goes on.
            return {"_skip": "score not finite", "id": record["id"], "doc_id": record["doc_id"],
                    "detail": f"score without {score_without}, with {score_with}"}
        delta = score_with - score_without
        tau = self.config.tau_for(record["source"])
        return {
            **record,
            "score_without": score_without,
            "score_with": score_with,
            "delta": delta,
            "tau": tau,
            "kept": delta >= tau,
            "following_tokens": len(without.token_ids),
            # False where the scorer's tokenizer merged the boundary differently in the two passes
            # (only possible at a boundary without whitespace; see scoring_texts).
            "same_tokens": list(without.token_ids) == list(with_rationale.token_ids),
        }


def run(config: FilterConfig, model: LanguageModel | None = None) -> FilterSummary:
    """Score every record of the input (resuming an earlier run) and write the scored records."""
    run_dir = RunDir(config.output, config, stage="filter", mode="overwrite" if config.overwrite else "resume")
    summary = FilterSummary()
    if not run_dir.is_complete():
        ray = config.executor.kind == "ray"
        factory = partial(FilterWorker, config, None if ray else model or load_model(config.scorer))
        documents = progress(_documents(run_dir.pending(read_rationale_records(config.input, run_dir))), description="filtering")
        with run_dir.writer(shard_size=config.shard_size) as writer:
            write_records(map_batches(documents, factory, config.documents_per_batch, config.executor), writer, run_dir)
    else:
        log.info("filter: %s is complete for this config; nothing to do", config.output)
    # A finished run opened again skips nothing this time: its skips are those its manifest counted.
    complete = run_dir.manifest() if run_dir.is_complete() else None
    summary.skipped = complete["counts"].get("skipped", {}) if complete else run_dir.skipped
    if not any(True for _ in run_dir.shard_paths()):
        log.warning("%s: no record could be scored (%d skipped); the filter kept nothing", config.input, sum(summary.skipped.values()))
    for record in run_dir.records():
        summary.truncated += bool(record.get("truncated"))
        summary.boundary_mismatches += record.get("same_tokens") is False
        (summary.kept if record["kept"] else summary.dropped)[record["source"]] += 1
        summary.deltas.append(record["delta"])
    summary.histogram = plot_deltas(summary.deltas, config, run_dir.path / "deltas.png")
    if not run_dir.is_complete():
        run_dir.finish(
            counts={
                "kept": sum(summary.kept.values()),
                "dropped": sum(summary.dropped.values()),
                "kept_by_source": dict(summary.kept),
                "dropped_by_source": dict(summary.dropped),
                "truncated": summary.truncated,
                "boundary_mismatches": summary.boundary_mismatches,
            }
        )
    return summary


def plot_deltas(deltas: list[float], config: FilterConfig, path: Path) -> Path | None:
    """Histogram of deltas with tau marked (one line per distinct tau)."""
    taus = defaultdict(list)
    for source, tau in [("default", config.tau), *config.tau_by_source.items()]:
        taus[tau].append(source)
    return histogram(
        deltas, path,
        title=f"{len(deltas)} rationales scored, gamma = {config.gamma:g}",
        xlabel="delta = score with rationale - score without",
        ylabel="rationales",
        markers=[(tau, f"tau = {tau:g} ({', '.join(sources)})") for tau, sources in sorted(taus.items())],
    )
