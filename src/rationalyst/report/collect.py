"""Read eval and mining runs into plain summaries: accuracy with Wilson intervals, cost, choices, deltas.

Runs are found by their ``config.json`` (written first by `rationalyst.runs.RunDir`): stage ``eval``
for the traces of one benchmark and method (``docs/traces.md``), stage ``filter`` for scored
rationales, stage ``extract`` for the rationales before scoring. A run without a complete manifest is
read too and marked incomplete; its numbers cover the records written so far.

Trace records are checked as they are read (pydantic), so a malformed one is reported with its file,
line and field instead of breaking the report later.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rationalyst.errors import InputError, RationalystError
from rationalyst.report.answer_steps import AnswerSteps, all_answer_steps
from rationalyst.report.paired import PairedOutcome, benchmark_pairs, paired_outcomes
from rationalyst.search.methods import METHODS
from rationalyst.search.roles import ROLES, SUPERVISION_ROLES
from rationalyst.search.trace import StepRecord, Trace
from rationalyst.runs import CONFIG_FILE, MANIFEST_FILE, SHARDS_DIR, read_json, run_info, shard_lines, shard_paths

#: Display order of methods: the paper's heuristics, its baselines, then search strategies (registry order).
METHOD_ORDER = tuple(METHODS)
Z_95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval for a binomial proportion (95% by default); None when n is 0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible for 0/n and n/n.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, {n}], not {successes}")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def method_sort_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


# ============================================================================ trace records


def _field_path(loc: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def read_traces(run_path: Path) -> Iterator[Trace]:
    """The trace records of an eval run, checked; a bad one raises InputError naming file, line, field."""
    for shard, line_no, line in shard_lines(run_path):
        try:
            yield Trace.model_validate_json(line)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = _field_path(err["loc"])
            if err["type"].startswith("json"):
                raise InputError(f"{shard}, line {line_no}: corrupt trace record: {err['msg']}") from None
            raise InputError(f"{shard}, line {line_no}, field {where or '(record)'}: {err['msg']}") from None


# ============================================================================ runs


@dataclass
class RunInfo:
    """A run directory found below the report's root."""

    path: Path
    rel: str  # path relative to the root, "." for the root itself
    stage: str
    config: dict[str, Any]
    complete: bool


def find_runs(root: Path, skip: Iterable[Path] = ()) -> list[RunInfo]:
    """Every run directory at or below ``root`` (by its config.json), in path order; ``skip`` folders are not entered."""
    root = Path(root)
    if not root.is_dir():
        raise RationalystError(f"not a directory: {root}")
    skipped = {Path(p).resolve() for p in skip}
    runs = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if d != SHARDS_DIR and not d.startswith(".") and (here / d).resolve() not in skipped)
        found = run_info(here) if CONFIG_FILE in files else None
        if found is None:
            continue
        info, complete = found
        config = info.get("config") if isinstance(info.get("config"), dict) else {}
        rel = here.relative_to(root).as_posix()
        runs.append(RunInfo(here, rel, info["stage"], config, complete))
    return runs


def _model_spec(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("spec")
    return value if isinstance(value, str) else None


@dataclass
class EvalRun:
    """One eval run (one benchmark, one method): its traces and the numbers the report shows."""

    info: RunInfo
    benchmark: str
    method: str
    label: str  # the method, made unique within its benchmark when two runs share it
    traces: list[Trace]
    n: int = 0
    correct: int = 0
    accuracy: float | None = None
    ci: tuple[float, float] | None = None
    tokens: dict[str, float] = field(default_factory=dict)  # mean per problem, per role and "total"
    seconds: dict[str, float] = field(default_factory=dict)  # mean per problem, per role and "total"
    supervision_share: float | None = None
    unparsed: int = 0
    errors: int = 0
    stop_reasons: dict[str, int] = field(default_factory=dict)
    #: From the manifest: the split evaluated on, whether it is a train split, and the contamination
    #: guard's result ({overlapping, items_checked, ids, ...}) when the eval stage ran it.
    split: str | None = None
    train_split: bool = False
    contamination: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return self.info.complete

    @property
    def models(self) -> dict[str, str]:
        return {role: spec for role in ROLES if (spec := _model_spec(self.info.config.get(role)))}


def summarize(run: EvalRun) -> EvalRun:
    """Fill in a run's accuracy (with its 95% Wilson interval) and mean cost per problem.

    The supervision share is sum(rationalist + scorer + judge seconds) / sum(total seconds) over all
    problems, i.e. the share of the run's wall time spent supervising.
    """
    traces = run.traces
    run.n = len(traces)
    run.correct = sum(t.right for t in traces)
    run.accuracy = run.correct / run.n if run.n else None
    run.ci = wilson_interval(run.correct, run.n)
    run.unparsed = sum(not t.parsed for t in traces)
    run.errors = sum(bool(t.error) for t in traces)
    run.stop_reasons = dict(Counter(t.stop_reason or "unknown" for t in traces))
    if run.n:
        run.tokens = {role: sum(t.tokens.get(role, 0.0) for t in traces) / run.n for role in ROLES}
        run.tokens["total"] = sum(run.tokens[role] for role in ROLES)
        run.seconds = {role: sum(t.seconds.get(role, 0.0) for t in traces) / run.n for role in ROLES}
        run.seconds["total"] = sum(t.total_seconds() for t in traces) / run.n
        if run.seconds["total"] > 0:
            run.supervision_share = sum(run.seconds[r] for r in SUPERVISION_ROLES) / run.seconds["total"]
    return run


def read_eval_runs(infos: list[RunInfo]) -> list[EvalRun]:
    """The eval runs among ``infos``, read and summarized, ordered by benchmark then method."""
    runs = []
    for info in infos:
        traces = list(read_traces(info.path))
        benchmark = info.config.get("benchmark")
        if isinstance(benchmark, dict):  # the eval stage stores a benchmark reference {name, source, limit}
            benchmark = benchmark.get("name")
        benchmark = benchmark or next((t.benchmark for t in traces if t.benchmark), None)
        method = info.config.get("method") or next((t.method for t in traces if t.method), None)
        benchmark = str(benchmark) if benchmark else info.path.parent.name or "?"
        method = str(method) if method else info.path.name
        extra = (read_json(info.path / MANIFEST_FILE) or {}).get("extra") or {}
        runs.append(EvalRun(
            info, benchmark, method, method, traces, split=extra.get("split"),
            train_split=bool(extra.get("train_split")), contamination=extra.get("contamination"),
        ))
    seen = Counter((r.benchmark, r.method) for r in runs)
    for r in runs:
        if seen[(r.benchmark, r.method)] > 1:
            r.label = f"{r.method} ({r.info.rel})"
    runs.sort(key=lambda r: (r.benchmark, method_sort_key(r.method), r.label))
    return [summarize(r) for r in runs]


# ============================================================================ where methods chose differently


def same_candidates(a: StepRecord, b: StepRecord) -> bool:
    """Whether two steps offered the same candidate list (same texts, same order)."""
    return len(a.candidates) == len(b.candidates) and all(x.text == y.text for x, y in zip(a.candidates, b.candidates))


def differing_steps(a: Trace, b: Trace) -> tuple[bool, list[int]]:
    """(whether some step offered both the same candidates, the indexes of such steps where the choices differ)."""
    comparable, differ = False, []
    for i, (step_a, step_b) in enumerate(zip(a.steps, b.steps)):
        if step_a.candidates and same_candidates(step_a, step_b):
            comparable = True
            if step_a.chosen != step_b.chosen:
                differ.append(i)
    return comparable, differ


@dataclass
class Comparison:
    """Two runs of one benchmark compared problem by problem on identical candidate lists."""

    benchmark: str
    a: str  # labels
    b: str
    both: int  # problems in both runs
    comparable: int  # ... with at least one step of identical candidates
    differ: list[str]  # ... where the two chose differently at such a step (ids, in a's order)
    a_only_right: int  # among ``differ``: a correct and b wrong
    b_only_right: int
    both_right: int
    both_wrong: int


def compare(a: EvalRun, b: EvalRun) -> Comparison:
    others = {t.id: t for t in b.traces}
    both = comparable = 0
    differ: list[str] = []
    outcomes: Counter = Counter()
    for trace in a.traces:
        other = others.get(trace.id)
        if other is None:
            continue
        both += 1
        has_comparable, steps = differing_steps(trace, other)
        comparable += has_comparable
        if steps:
            differ.append(trace.id)
            outcomes[(trace.right, other.right)] += 1
    return Comparison(
        a.benchmark, a.label, b.label, both, comparable, differ,
        outcomes[(True, False)], outcomes[(False, True)], outcomes[(True, True)], outcomes[(False, False)],
    )


def comparisons(runs: list[EvalRun]) -> list[Comparison]:
    """Every pair of runs of the same benchmark that offered identical candidates at least once."""
    return [result for result in (compare(a, b) for a, b in benchmark_pairs(runs)) if result.comparable]


# ============================================================================ mining runs


@dataclass
class SourceCounts:
    """Rationales of one source in a mining run."""

    source: str
    documents: int = 0
    rationales: int = 0  # extracted (scored or not)
    kept: int = 0
    dropped: int = 0
    unscored: int = 0  # extracted but not (yet) scored by the filter
    delta_sum: float = 0.0
    taus: set = field(default_factory=set)

    @property
    def scored(self) -> int:
        return self.kept + self.dropped

    @property
    def mean_delta(self) -> float | None:
        return self.delta_sum / self.scored if self.scored else None

    @property
    def kept_share(self) -> float | None:
        return self.kept / self.scored if self.scored else None


@dataclass
class MiningRun:
    """A filter run (with its extract run when found): counts per source, deltas, and documents to show."""

    info: RunInfo
    extract: RunInfo | None
    sources: dict[str, SourceCounts]
    deltas: list[float]
    tau_sources: dict[float, list[str]]  # each distinct tau and the sources it applies to
    documents: list[dict[str, Any]]  # the first ``max_documents`` documents: id, source, segments
    documents_total: int
    gamma: float | None

    @property
    def complete(self) -> bool:
        return self.info.complete


def _rationale_records(run: RunInfo) -> Iterator[dict[str, Any]]:
    """Records of a filter or extract run that carry a rationale in place; others are passed over."""
    for shard in shard_paths(run.path):
        with open(shard, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise InputError(f"{shard}, line {line_no}: corrupt record: {exc}") from None
                if isinstance(record, dict) and all(
                    isinstance(record.get(k), str) for k in ("doc_id", "preceding", "rationale", "following")
                ):
                    yield record


def document_segments(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A document as text pieces with its rationales inline, from its records.

    Each record holds the document text before its insertion point (``preceding``) and up to the next
    one (``following``), so the text between two rationales is the part of the later ``preceding``
    after the earlier; the last ``following`` ends the document (as far as its rationales reach).
    """
    segments: list[dict[str, Any]] = []
    cursor = 0
    ordered = sorted(records, key=lambda r: (len(r["preceding"]), r.get("position", 0)))
    for record in ordered:
        preceding = record["preceding"]
        if len(preceding) > cursor:
            segments.append({"text": preceding[cursor:]})
        cursor = max(cursor, len(preceding))
        mark = {"id": record.get("id"), "rationale": record["rationale"]}
        if "delta" in record:
            mark.update(delta=record.get("delta"), tau=record.get("tau"), kept=bool(record.get("kept")))
        segments.append(mark)
    if ordered:
        last = ordered[-1]
        segments.append({"text": last["following"]})
    return segments


def read_mining_run(info: RunInfo, extract: RunInfo | None, max_documents: int = 1000) -> MiningRun:
    """Counts per source and all deltas of a filter run; the first ``max_documents`` documents in full.

    Rationales the extract run holds but the filter has not scored are counted and shown as unscored.
    """
    sources: dict[str, SourceCounts] = {}
    deltas: list[float] = []
    tau_sources: dict[float, set[str]] = defaultdict(set)
    docs: dict[str, dict[str, Any]] = {}  # doc_id -> {source, records}, the documents shown
    doc_sources: dict[str, str] = {}
    scored_ids: set[str] = set()

    def counts(source: str) -> SourceCounts:
        return sources.setdefault(source, SourceCounts(source))

    def note_document(record: dict[str, Any], source: str) -> None:
        doc_id = record["doc_id"]
        if doc_id not in doc_sources:
            doc_sources[doc_id] = source
            counts(source).documents += 1
            if len(docs) < max_documents:
                docs[doc_id] = {"id": doc_id, "source": source, "records": []}
        if doc_id in docs:
            docs[doc_id]["records"].append(record)

    for record in _rationale_records(info):
        delta = record.get("delta")
        if not isinstance(delta, (int, float)) or isinstance(delta, bool):
            continue  # not scored: not a filter record
        source = str(record.get("source") or "unknown")
        c = counts(source)
        if extract is not None:  # only needed to tell the extract run's unscored rationales apart
            scored_ids.add(str(record.get("id")))
        c.rationales += 1
        c.kept += bool(record.get("kept"))
        c.dropped += not record.get("kept")
        c.delta_sum += delta
        deltas.append(float(delta))
        if isinstance(record.get("tau"), (int, float)):
            c.taus.add(float(record["tau"]))
            tau_sources[float(record["tau"])].add(source)
        note_document(record, source)
    if extract is not None:
        for record in _rationale_records(extract):
            record_id = str(record.get("id") or f"{record['doc_id']}:{record.get('position')}")
            if record_id in scored_ids:
                continue
            source = str(record.get("source") or "unknown")
            c = counts(source)
            c.rationales += 1
            c.unscored += 1
            note_document(record, source)
    documents = [
        {"id": d["id"], "source": d["source"], "segments": document_segments(d["records"])} for d in docs.values()
    ]
    gamma = info.config.get("gamma")
    return MiningRun(
        info, extract, dict(sorted(sources.items())), deltas,
        {tau: sorted(s) for tau, s in sorted(tau_sources.items())}, documents, len(doc_sources),
        gamma if isinstance(gamma, (int, float)) else None,
    )


def _extract_for(filter_run: RunInfo, extract_runs: list[RunInfo]) -> RunInfo | None:
    """The extract run a filter run read: the one at its ``input`` path, else the only one found."""
    source = filter_run.config.get("input")
    if isinstance(source, str):
        candidates = [Path(source)] if Path(source).is_absolute() else [Path.cwd() / source, filter_run.path.parent / Path(source).name]
        for candidate in candidates:
            for run in extract_runs:
                if candidate.exists() and run.path.resolve() == candidate.resolve():
                    return run
    return extract_runs[0] if len(extract_runs) == 1 else None


# ============================================================================ everything below a folder


@dataclass
class Collection:
    """All runs found below a report's root, read and summarized."""

    root: Path
    eval_runs: list[EvalRun]
    comparisons: list[Comparison]
    mining_runs: list[MiningRun]
    paired: list[PairedOutcome] = field(default_factory=list)
    answer_steps: list[AnswerSteps] = field(default_factory=list)

    @property
    def benchmarks(self) -> list[str]:
        return sorted({r.benchmark for r in self.eval_runs})

    @property
    def incomplete(self) -> list[str]:
        return [r.info.rel for r in [*self.eval_runs, *self.mining_runs] if not r.complete]


def collect(root: Path, *, skip: Iterable[Path] = (), max_documents: int = 1000) -> Collection:
    """Read every eval and filter run below ``root``; raises RationalystError when there is none."""
    root = Path(root)
    if not root.exists():
        raise RationalystError(f"run directory not found: {root}")
    infos = find_runs(root, skip)
    by_stage: dict[str, list[RunInfo]] = defaultdict(list)
    for info in infos:
        by_stage[info.stage].append(info)
    if not by_stage["eval"] and not by_stage["filter"]:
        found = ", ".join(sorted({f"{i.stage} ({i.rel})" for i in infos})) or "no run directories"
        raise RationalystError(
            f"{root}: found no eval or filter run below it (a folder whose {CONFIG_FILE} has stage "
            f"'eval' or 'filter'); found {found}"
        )
    eval_runs = read_eval_runs(by_stage["eval"])
    mining = [read_mining_run(f, _extract_for(f, by_stage["extract"]), max_documents) for f in by_stage["filter"]]
    return Collection(
        root, eval_runs, comparisons(eval_runs), mining, paired_outcomes(eval_runs), all_answer_steps(eval_runs)
    )
