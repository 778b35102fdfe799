"""Stage 5 over benchmarks: run each method on each benchmark and write one trace per problem.

Output (docs/traces.md): ``<output>/<benchmark>/<method>/`` is one run directory per pair, holding
trace records and, once every problem is done, a manifest with accuracy, unparsed answers, and tokens
and seconds per problem. Each pair's config hash covers only what decides its results (its benchmark,
its method, the models of the roles that method uses, the search settings and seed), so naming
another rationalist re-runs ``implicit`` but not ``cot`` (a model retrained in place keeps its spec:
`rationalyst run` re-runs the eval stage after a train stage re-ran); a killed run resumes with the
problems not yet written.

Problems run ``batch_problems`` at a time (`search.batch`): their scores go out in one engine call
per round, their generations in one call per round or, on hf, streamed into one decode loop that
they join as they come (continuous batching); a finished problem's trace is written at once (so traces come in finishing order) while the next problem takes its place. Models
are loaded once per distinct spec and shared by the roles that name it.

A problem that fails with a user-facing error (e.g. its prompt is over the model's context) is
recorded with ``error`` and counted wrong; the run goes on.

Evaluation data must be evaluation data: a source whose split is named ``train`` is refused unless the
benchmark says ``allow_train_split: true`` (its manifest then says ``train_split: true``), and with
``training_data`` (the rationalist's documents or records; `rationalyst run` passes the select stage's
output) every item is checked for a 13-gram overlap with it first (`stages.guard`): the count and ids go
into each run's manifest and ``<output>/contamination.json``, and an overlap stops the stage unless
``allow_contamination``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rationalyst.config import StrictModel, config_hash, content_digest
from rationalyst.console import progress
from rationalyst.data.benchmarks import BenchmarkItem, benchmark_split, load_benchmark
from rationalyst.errors import ConfigError, InputError, RationalystError
from rationalyst.lm.registry import ModelConfig
from rationalyst.runs import RunDir, changed_inputs, run_info
from rationalyst.lm.prm import PrmConfig
from rationalyst.search.methods import METHOD_ROLES, METHODS, check_methods, solve_many
from rationalyst.search.pool import ModelPool, RolesConfig, require_prm
from rationalyst.search.roles import SUPERVISION_ROLES, Roles
from rationalyst.search.trace import Trace
from rationalyst.search.settings import SearchSettings

log = logging.getLogger(__name__)


class BenchmarkRef(StrictModel):
    """A benchmark to evaluate on. In YAML a name (``gsm8k``) or a mapping with these fields."""

    name: str = Field(description="Benchmark name: gsm8k, math, math500, ecqa, hellaswag, proofwriter, arc_challenge, mmlu_pro, gsm_symbolic.")
    source: str | None = Field(None, description="File (normalized or original format) or hf:<dataset>; default: the benchmark's evaluation split.")
    limit: int | None = Field(None, ge=1, description="Evaluate on the first N problems only.")
    ids: list[str] | None = Field(
        None, description="Evaluate on these problems only, in this order (e.g. train problems held out from mining)."
    )
    demos: Literal["packaged", "train", "zero-shot"] = Field(
        "packaged",
        description="The agent's few-shot demos: the 'packaged' hand-written ones of the family, 'train': "
        "search.demo_count worked solutions drawn (seeded) from the benchmark's train split, one step per line "
        "(the paper's), or 'zero-shot': none, only the family's instruction and the question as one user turn of the "
        "agent's own chat template, a whole solution being the agent's whole turn (some instruction-tuned models "
        "solve better so than after demos).",
    )
    solve_prompts: Path | None = Field(
        None,
        description="A folder of the agent's prompt files, <family>.yaml (instruction and demos, as the packaged "
        "rationalyst/prompts/solve/ ones), read in place of the packaged one for 'packaged' and 'zero-shot' demos: "
        "e.g. an agent model's own zero-shot instruction.",
    )
    # Runs made before solve_prompts existed stay finished (or resumable) while it is unset.
    added_fields = frozenset({"solve_prompts"})

    train_source: str | None = Field(
        None, description="The benchmark's train split, for demos: train (default: its train file in the benchmarks folder)."
    )
    allow_train_split: bool = Field(
        False,
        description="Allow evaluating on a split named train (e.g. problems held out from mining); the report says so.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("ids")
    @classmethod
    def _ids_once_each(cls, ids: list[str] | None) -> list[str] | None:
        repeated = sorted(i for i, n in Counter(ids or ()).items() if n > 1)
        if repeated:
            raise ValueError(f"each problem once; repeated: {', '.join(repeated[:5])}")
        return ids


class EvalConfig(RolesConfig):
    """`rationalyst eval`: methods × benchmarks, one trace per problem."""

    benchmarks: list[BenchmarkRef] = Field(min_length=1, description="Benchmarks to evaluate on.")
    methods: list[str] = Field(["cot", "implicit"], min_length=1, description="Heuristics and baselines: " + ", ".join(METHODS) + ".")
    output: Path = Field(description="Directory for the run directories <benchmark>/<method>/.")
    overwrite: bool = Field(False, description="Start every run over instead of resuming.")
    shard_size: int = Field(10, ge=1, description="Traces per shard (a kill loses at most this many, or 30 s of work).")
    training_data: list[Path] = Field(
        default_factory=list,
        description="The rationalist's training text (run directories or JSONL of documents or records), checked for "
        "13-gram overlap with the evaluation questions before any problem is solved.",
    )
    allow_contamination: bool = Field(False, description="Go on when evaluation items overlap the training data.")
    batch_problems: int | None = Field(
        None, ge=1,
        description="Problems solved side by side, their calls batched into shared engine calls (default: by "
        "the agent's backend, `default_batch_problems`). Changes speed, not results, where every engine is "
        "batch-invariant (float32 hf, llamacpp, per-request seeds); eval warns where one is not (half-precision "
        "hf weights, vLLM without VLLM_BATCH_INVARIANT=1).",
    )

    execution_fields = frozenset({"overwrite", "shard_size", "training_data", "allow_contamination", "batch_problems"})

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        return check_methods(methods)

    @model_validator(mode="after")
    def _prm_given_when_used(self) -> EvalConfig:
        require_prm(self, self.methods)
        return self

    @model_validator(mode="after")
    def _paragraphs_only_zero_shot(self) -> EvalConfig:
        # Demos teach one step per line: after them an agent never writes the blank line a paragraph ends at.
        if self.search.step_format == "paragraphs":
            few_shot = [b.name for b in self.benchmarks if b.demos != "zero-shot"]
            if few_shot:
                raise ValueError(
                    "search.step_format: paragraphs is the zero-shot chat format; set demos: zero-shot on "
                    f"{', '.join(few_shot)} (their demos have one step per line), or use step_format: lines"
                )
        return self


class EvalRunConfig(StrictModel):
    """What decides one (benchmark, method) run's results: its config hash covers exactly this."""

    benchmark: BenchmarkRef
    method: str
    agent: ModelConfig
    rationalist: ModelConfig | None = None
    scorer: ModelConfig | None = None
    judge: ModelConfig | None = None
    prm: PrmConfig | None = None
    #: The rationalist's instruction as resolved (a model retrained with another one re-runs).
    rationalist_instruction: str | None = None
    search: SearchSettings
    seed: int

    added_fields = frozenset({"prm"})


@dataclass
class EvalSummary:
    """One (benchmark, method) run's results."""

    benchmark: str
    method: str
    problems: int = 0
    correct: int = 0
    unparsed: int = 0
    errors: int = 0
    tokens: float = 0.0
    seconds: float = 0.0
    supervision_seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    path: Path | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.problems if self.problems else 0.0

    def counts(self) -> dict[str, Any]:
        n = max(self.problems, 1)
        return {
            "problems": self.problems,
            "correct": self.correct,
            "accuracy": round(self.accuracy, 6),
            "unparsed": self.unparsed,
            "errors": self.errors,
            "tokens_per_problem": round(self.tokens / n, 2),
            "seconds_per_problem": round(self.seconds / n, 4),
            "supervision_share": round(self.supervision_seconds / self.seconds, 4) if self.seconds else 0.0,
        }

    def add(self, trace: dict[str, Any]) -> None:
        self.problems += 1
        self.correct += bool(trace.get("correct"))
        self.unparsed += not trace.get("parsed")
        self.errors += "error" in trace
        self.tokens += sum(trace.get("tokens", {}).values())
        seconds = trace.get("seconds", {})
        self.seconds += seconds.get("total", 0.0)
        self.supervision_seconds += sum(seconds.get(r, 0.0) for r in SUPERVISION_ROLES)


def run_config(config: EvalConfig, benchmark: BenchmarkRef, method: str) -> EvalRunConfig:
    roles: dict[str, Any] = {role: config.role_model(role) for role in METHOD_ROLES[method]}
    if "rationalist" in roles:
        roles["rationalist_instruction"] = config.rationalist_instruction()
    return EvalRunConfig(
        benchmark=benchmark, method=method, agent=config.agent, search=config.search, seed=config.seed, **roles
    )


def error_trace(item: BenchmarkItem, method: str, message: str) -> dict[str, Any]:
    """The record of a problem that could not be solved: wrong, with the reason."""
    return Trace(
        id=item.id, benchmark=item.benchmark, method=method, question=item.question, choices=item.choices,
        gold=item.answer, steps=[], solution="", prediction=None, parsed=False, correct=False,
        stop_reason="error", error=message, tokens={}, seconds={"total": 0.0},
    ).model_dump(exclude_unset=True)


#: Problems side by side by the agent's backend, when ``batch_problems`` is not set. hf on CPU: 8, by
#: measurement (benchmarks/eval_throughput.py, implicit, SmolLM2-135M, 32 problems on 2 quiet cores,
#: generations streamed: batch 8 ran 1.85x the problems/min of batch 1 and 16 ran 1.71x; the model's
#: own ``batch_size`` caps the rows per forward pass, so set it to about batch x (n_candidates + 1): a
#: problem's rationale and candidates decode together).
#: hf on CUDA: on one H200 with random weights of the default's shape, batch 8 ran 4.69x the problems/min
#: of batch 1 (benchmarks/eval_throughput.py --random-weights; a decode step is launch-bound there, so
#: wider is nearly free); 256 was not measured to its end. Not measured here (no GPU or server on this
#: machine), set by what the engine schedules: vllm 256 (GSM8K's 1,319 problems in 6 waves), an openai
#: server 32 (requests sent one by one unless the backend overrides `generate_seeded`), llama.cpp 1:
#: 8 side by side were only 1.18x as fast on 2 cores with the 1.5B (1.14x with the 0.5B; decode is
#: compute-bound already at a problem's 4 rows, README), and would make a problem's samples depend on
#: the rows decoding beside it (`LlamaCppModel.batch_dependence`); recipes/cpu-gsm8k.yaml runs 8, chosen
#: against 16 on its dev slice by cost a problem.
BATCH_PROBLEMS = {"cpu": 8, "cuda": 256, "vllm": 256, "openai": 32, "llamacpp": 1}


def narrow_engines(roles: Roles, batch: int, n_candidates: int, used: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """The hf engines whose ``batch_size`` (sequences per forward pass) is below what one round of the
    step search over ``batch`` problems gives them: as agent ``n_candidates`` samples a problem, as
    rationalist one rationale (the two share a call when one engine plays both), as scorer
    ``n_candidates`` sequences; ``used``: the roles the method uses besides the agent (`METHOD_ROLES`).
    Each as (its roles, its batch_size, the rows of a round)."""
    from rationalyst.lm.hf import HFModel

    out = []
    for engine, played in _engines(roles, used):
        generated = (n_candidates if "agent" in played else 0) + (1 if "rationalist" in played else 0)
        rows = batch * max(generated, n_candidates if "scorer" in played else 0)
        if isinstance(engine, HFModel) and engine.batch_size < rows:
            out.append(("+".join(played), engine.batch_size, rows))
    return out


def batch_dependent_engines(roles: Roles, used: tuple[str, ...]) -> list[tuple[str, str]]:
    """The engines whose numbers for a row can depend on the rest of its batch (`batch_dependence`), as
    (their roles, why): with them a problem's trace can change with ``batch_problems``."""
    out = []
    for engine, played in _engines(roles, used):
        why = engine.batch_dependence()
        if why:
            out.append(("+".join(played), why))
    return out


def _engines(roles: Roles, used: tuple[str, ...]) -> list[tuple[Any, list[str]]]:
    """The distinct engines of the agent and of the ``used`` roles among rationalist and scorer, each
    with the roles it plays."""
    engines: dict[int, tuple[Any, list[str]]] = {}
    for role in ("agent", *(r for r in ("rationalist", "scorer") if r in used)):
        engine = getattr(roles, role).model
        engines.setdefault(id(engine), (engine, []))[1].append(role)
    return list(engines.values())


def default_batch_problems(config: EvalConfig, roles: Roles) -> int:
    """``config.batch_problems``, else the default of the agent's backend (`BATCH_PROBLEMS`)."""
    if config.batch_problems is not None:
        return config.batch_problems
    scheme = config.agent.spec.partition(":")[0]
    if scheme in BATCH_PROBLEMS:
        return BATCH_PROBLEMS[scheme]
    device = getattr(roles.agent.model, "device", None)
    return BATCH_PROBLEMS["cuda"] if getattr(device, "type", "cpu") == "cuda" else BATCH_PROBLEMS["cpu"]


def _load_items(ref: BenchmarkRef) -> tuple[list[BenchmarkItem], list[tuple[str, Any, Any]]]:
    check_split(ref)
    skipped: list[tuple[str, Any, Any]] = []
    items = load_benchmark(ref.name, ref.source, limit=None if ref.ids else ref.limit,
                           on_skip=lambda r, f, l: skipped.append((r, f, l)))
    if ref.ids is not None:
        by_id = {item.id: item for item in items}
        missing = [i for i in ref.ids if i not in by_id]
        if missing:
            raise InputError(f"benchmark {ref.name}: {len(missing)} of the given ids are not in {ref.source or 'its default file'} "
                             f"(e.g. {missing[0]!r})")
        items = [by_id[i] for i in ref.ids][: ref.limit]
    if skipped:
        log.warning("%s: skipped %d bad row(s)", ref.name, len(skipped))
    if not items:
        where = ref.source or "its default file"
        raise InputError(f"benchmark {ref.name}: nothing to evaluate, no usable problem in {where} ({len(skipped)} row(s) skipped)")
    return items, skipped


def run(config: EvalConfig, pool: ModelPool | None = None, *, refresh: bool = False) -> list[EvalSummary]:
    """Evaluate every method on every benchmark; returns one summary per (benchmark, method).

    ``refresh`` (the pipeline, after an edit of the eval section alone): start over only the
    (benchmark, method) runs whose own config changed; the others resume or stay finished.
    """
    pool = pool or ModelPool()
    names = [b.name for b in config.benchmarks]
    if len(set(names)) != len(names):
        raise ConfigError(f"benchmarks: each benchmark may appear once, got {names}")
    loaded = {ref.name: _load_items(ref) for ref in config.benchmarks}
    # Every prompt is read before any problem is solved: a bad prompt file fails the run in seconds.
    agent_prompts = {ref.name: _agent_prompt(config, ref, loaded[ref.name][0]) for ref in config.benchmarks}
    overlaps: dict[str, Any] = {}
    if config.training_data:
        from rationalyst.stages import guard

        results = guard.check(
            {name: items for name, (items, _) in loaded.items()}, guard.texts_of(config.training_data),
            where="the training data " + ", ".join(map(str, config.training_data)),
            allow=config.allow_contamination, report=config.output / guard.REPORT_FILE,
        )
        overlaps = {name: result.to_json() for name, result in results.items()}
    summaries = []
    for ref in config.benchmarks:
        items, skipped = loaded[ref.name]
        split = benchmark_split(ref.name, ref.source)
        extra = {"split": split, "train_split": split == "train", "contamination": overlaps.get(ref.name)}
        for method in config.methods:
            summaries.append(_run_one(config, ref, method, items, skipped, pool, extra, agent_prompts[ref.name], refresh))
    return summaries


def _agent_prompt(config: EvalConfig, ref: BenchmarkRef, items: list[BenchmarkItem]):
    """The agent's prompt for ``ref`` (None: the family's packaged one)."""
    if ref.demos == "train":
        return _train_demos(config, ref, items)
    if ref.demos == "zero-shot":
        return _zero_shot(ref)
    return _solve_prompt(ref) if ref.solve_prompts is not None else None


def _train_demos(config: EvalConfig, ref: BenchmarkRef, items: list[BenchmarkItem]):
    """The agent's prompt with worked solutions from the benchmark's train split (``demos: train``)."""
    from rationalyst.data.benchmarks import BENCHMARKS
    from rationalyst.data.rationale_text import train_demo_prompt

    spec = BENCHMARKS[ref.name]
    source = ref.train_source or spec.train_file
    if source is None:
        raise ConfigError(f"benchmark {ref.name}: demos: train needs its train split; set train_source")
    train = load_benchmark(ref.name, source, on_skip=lambda *_: None)
    settings = config.search
    return train_demo_prompt(spec.family, train, settings.demo_count, settings.demo_seed, exclude={i.id for i in items})


def _solve_prompt(ref: BenchmarkRef):
    """The family's prompt: from ``ref.solve_prompts`` when set, else the packaged one."""
    from rationalyst.data.benchmarks import BENCHMARKS
    from rationalyst.data.solve_prompts import load_solve_prompt

    return load_solve_prompt(BENCHMARKS[ref.name].family, ref.solve_prompts)


def _zero_shot(ref: BenchmarkRef):
    """The family's instruction without demos (``demos: zero-shot``)."""
    return _solve_prompt(ref).model_copy(update={"demos": []})


def check_split(ref: BenchmarkRef) -> str | None:
    """The split ``ref`` reads; a train split without ``allow_train_split`` is a `ConfigError`."""
    split = benchmark_split(ref.name, ref.source)
    if split == "train" and not ref.allow_train_split:
        raise ConfigError(
            f"benchmark {ref.name}: {ref.source or 'the default file'} is a train split, which is mined, not evaluated on; "
            "give its evaluation split as source, or set allow_train_split: true for problems held out from mining"
        )
    return split


def run_inputs(ref: BenchmarkRef, solve_prompt=None) -> dict[str, str]:
    """What a (benchmark, method) run reads that its config names only by path (`RunDir` inputs): the
    agent's prompt as resolved (a solve_prompts file, the packaged one, or demos drawn from a train
    split), so that an edited prompt file starts the runs it decides over instead of resuming them."""
    prompt = solve_prompt if solve_prompt is not None else _solve_prompt(ref)
    return {"the agent's prompt": content_digest(prompt.model_dump(mode="json"))}


def _run_one(config, ref, method, items, skipped, pool, extra, solve_prompt=None, refresh=False) -> EvalSummary:
    path, own = config.output / ref.name / method, run_config(config, ref, method)
    inputs = run_inputs(ref, solve_prompt)
    stored = run_info(path)
    changed = stored is not None and (stored[0].get("config_hash") != config_hash(own) or bool(changed_inputs(stored[0], inputs)))
    run_dir = RunDir(path, own, stage="eval", mode="overwrite" if config.overwrite or (refresh and changed) else "resume",
                     inputs=inputs)
    summary = EvalSummary(ref.name, method, path=run_dir.path)
    if not run_dir.is_complete():
        for reason, file, line in skipped:
            run_dir.skip(reason, file=file, line=line)
        pending = list(run_dir.pending(items, key=lambda item: item.id))
        if pending:
            roles = pool.roles(config, method)
            roles.solve_prompt = solve_prompt
            batch = default_batch_problems(config, roles)
            for played, size, rows in narrow_engines(roles, batch, config.search.n_candidates, METHOD_ROLES[method]):
                log.warning(
                    "batch_problems %d gives the %s model rounds of %d sequences, but its batch_size is %d: each "
                    "round runs in several passes one after another; raise %s.batch_size where memory allows",
                    batch, played, rows, size, played.split("+")[0],
                )
            for engine, _ in _engines(roles, METHOD_ROLES[method]):
                reserve = getattr(engine, "reserve_scoring_contexts", None)  # llamacpp: one a problem
                if reserve is not None:
                    reserve(batch)
            if batch > 1:
                for played, why in batch_dependent_engines(roles, METHOD_ROLES[method]):
                    log.warning(
                        "batch_problems %d: a problem's trace can depend on the problems beside it, as the %s "
                        "model's numbers do (%s); at batch_problems 1 runs are comparable problem by problem",
                        batch, played, why,
                    )
            solved = solve_many(method, pending, roles, config.search, config.seed, batch_problems=batch)
            # Traces are written as each problem finishes (not in input order): a kill loses at most
            # the unflushed shard, and a resume solves exactly the ids not yet written.
            with run_dir.writer(shard_size=config.shard_size, flush_seconds=30.0) as writer:
                for item, trace in progress(solved, total=len(pending), description=f"{ref.name} {method}"):
                    if isinstance(trace, RationalystError):
                        log.warning("%s %s: %s", method, item.id, trace)
                        trace = error_trace(item, method, str(trace))
                    writer.write(trace)
        for trace in run_dir.records():
            summary.add(trace)
        run_dir.finish(counts=summary.counts(), extra=extra)
    else:
        for trace in run_dir.records():
            summary.add(trace)
    summary.skipped = (run_dir.manifest() or {}).get("counts", {}).get("skipped", {})
    log.info("%s %s: %d/%d correct", ref.name, method, summary.correct, summary.problems)
    return summary
