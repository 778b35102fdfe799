"""`rationalyst run RECIPE`: the whole method from one recipe, select → extract → filter → train → eval → report.

A recipe is one YAML file with a section per stage; each section is that stage's own config (the same
fields as ``rationalyst <stage> --config``) without the inputs and outputs, which the pipeline wires
under ``output``::

    <output>/corpus/      generated corpus documents and target questions (optional)
    <output>/select/  <output>/extract/  <output>/filter/  <output>/train/  <output>/eval/
    <output>/report/      report.md, plots, report.html
    <output>/pipeline.json which stage finished with which fingerprint

Re-running a recipe skips every stage whose output is complete and whose fingerprint is unchanged;
a stage's fingerprint hashes its own config hash with the previous stage's fingerprint, so a changed
stage re-runs together with everything after it, and nothing else. A stage that was interrupted
resumes its own partial work (same fingerprint) and starts over otherwise. Eval is kept per
(benchmark, method): after an edit of the eval section alone (a method added, a search setting
changed) only the runs whose own config changed start over, and the others stay as they are. The
rationalist of the eval section defaults to the model the train section produces.

Each finished stage also keeps a stamp of its output and of the output it read (`_stage_output`), so
that a change the fingerprints cannot see is followed: a stage whose output changed outside the
pipeline (a standalone ``rationalyst extract`` tried refused documents again, a trained model was
deleted on a new machine) runs again on what is there, and the stages after it run again only when
what they read is not what they read before (a model trained again to the same fingerprint leaves the
eval runs as they are).

A failure stops the pipeline with a message naming the stage; every finished stage (and every
finished shard of the failed one) stays on disk.

Contamination guard (`stages.guard`): before select runs, the evaluation items are loaded (a missing
evaluation split or a train split without ``allow_train_split`` fails here, in seconds) and checked for
13-gram overlap with the corpus inputs that are benchmark files; after select, with every selected
document. Either overlap stops the run before extraction unless ``allow_contamination: true``; the
result is in ``<output>/select/contamination.json`` and the eval manifests.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from rationalyst.config import StrictModel, config_hash, content_digest
from rationalyst.data.benchmarks.generated import write_generated_corpus
from rationalyst.errors import RationalystError
from rationalyst.lm.memory import release_memory
from rationalyst.runs import atomic_write, dumps, output_stamp, read_json, read_records, run_info
from rationalyst.stages.eval import EvalConfig, run_inputs
from rationalyst.stages.extract import DOCUMENTS_DIR, ExtractConfig, prompt_inputs, refused_in_another_window
from rationalyst.stages.filter import FilterConfig
from rationalyst.stages.select import SelectConfig
from rationalyst.stages.train import TrainConfig, finished_fingerprint

log = logging.getLogger(__name__)

STATE_FILE = "pipeline.json"
STAGES = ("corpus", "select", "extract", "filter", "train", "eval", "report")


class GeneratedCorpus(StrictModel):
    """Corpus documents generated offline (problems with worked solutions) and target questions for selection."""

    documents: dict[str, int] = Field(
        default_factory=lambda: {"gsm_symbolic": 20, "word_problems": 20},
        description="Documents per generator (gsm_symbolic: reasoning-gym; word_problems: rationalyst's own).",
    )
    questions: dict[str, int] = Field(
        default_factory=lambda: {"word_problems": 40}, description="Target questions per generator, for select."
    )
    seed: int = Field(
        1_000_000,
        description="Generator seed of the documents (item i comes from seed + i); the questions use seed + 500,000. "
        "Keep both ranges apart from the eval set's seed.",
    )
    general_text: bool = Field(True, description="Add the packaged paragraphs of general text (source: general).")


def _listed(value: Any) -> list:
    """A section's list field as a list: absent is empty, one entry (``corpus: docs.jsonl``) a list of one."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def wire_sections(data: Any) -> Any:
    """Fill each section's input and output from ``output`` unless the recipe sets them.

    A section that is not a mapping (``select: 5``) is left as written, for its field's validation to
    report with its line.
    """
    if not isinstance(data, dict) or "output" not in data:
        return data
    out = Path(str(data["output"]))
    wired = {
        name: dict(data.get(name) or {})
        for name in ("select", "extract", "filter", "train", "eval")
        if isinstance(data.get(name) or {}, dict)
    }
    if "select" in wired:
        wired["select"].setdefault("output", out / "select")
    for name, previous in (("extract", "select"), ("filter", "extract"), ("train", "filter")):
        if name in wired:
            wired[name].setdefault("input", out / previous)
            wired[name].setdefault("output", out / name)
    if "eval" in wired:
        wired["eval"].setdefault("output", out / "eval")
        wired["eval"].setdefault("training_data", [out / "select"])
        wired["eval"].setdefault("allow_contamination", bool(data.get("allow_contamination", False)))
        rationalist = wired["eval"].setdefault("rationalist", {})
        if isinstance(rationalist, dict):  # a mapping without a spec: the model the train section makes
            rationalist.setdefault("spec", f"hf:{out / 'train' / 'merged'}")
    generated = data.get("generate_corpus")
    if generated is not None and "select" in wired:
        try:
            spec = GeneratedCorpus.model_validate(generated)
        except ValidationError:  # reported with its line by the field's own validation
            return {**data, **wired}
        corpus_dir = out / "corpus"
        corpus = [{"path": str(corpus_dir / f"{name}.jsonl"), "source": name} for name in spec.documents]
        if spec.general_text:
            corpus.append({"path": str(corpus_dir / "general.jsonl"), "source": "general"})
        select = wired["select"]
        select["corpus"] = [*_listed(select.get("corpus")), *corpus]
        if spec.questions:
            select["benchmarks"] = [*_listed(select.get("benchmarks")), str(corpus_dir / "questions.jsonl")]
    return {**data, **wired}


class PipelineConfig(StrictModel):
    """A whole run of the method. Section inputs and outputs are filled in from ``output``."""

    output: Path = Field(description="Directory holding every stage's output.")
    generate_corpus: GeneratedCorpus | None = Field(None, description="Generate extra corpus documents first.")
    select: SelectConfig
    extract: ExtractConfig
    filter: FilterConfig
    train: TrainConfig
    eval: EvalConfig
    report: bool = Field(True, description="Write the report (Markdown, plots, HTML) at the end.")
    allow_contamination: bool = Field(
        False, description="Go on when evaluation questions share a 13-gram with the mined documents (the guard warns)."
    )

    @model_validator(mode="before")
    @classmethod
    def _wire(cls, data: Any) -> Any:
        return wire_sections(data)


@dataclass
class StageOutcome:
    """What happened to one stage in this invocation."""

    stage: str
    status: str  # "ran", "resumed", "skipped"
    seconds: float
    result: Any = None


@dataclass
class PipelineResult:
    """Every stage's outcome, in order, and the run's output directory."""

    output: Path
    stages: list[StageOutcome] = field(default_factory=list)

    def outcome(self, stage: str) -> StageOutcome | None:
        return next((s for s in self.stages if s.stage == stage), None)


def _fingerprint(previous: str, own: str) -> str:
    return hashlib.sha256(f"{previous}:{own}".encode()).hexdigest()[:16]


def _section_hash(stage: str, section: Any) -> str:
    """A stage section's config hash, and the contents of the prompt files it reads from a folder of the
    user's (extract's prompts_dir, a benchmark's solve_prompts): an edited prompt re-runs the stage (eval:
    only the runs it decides). The packaged prompts are left out, as the code is: a recipe's fingerprint
    stays the same across an upgrade."""
    own = config_hash(section)
    if stage == "extract" and section.prompts_dir is not None:
        return content_digest([own, prompt_inputs(section)])
    if stage == "eval" and any(ref.solve_prompts is not None for ref in section.benchmarks):
        return content_digest([own, [run_inputs(ref) for ref in section.benchmarks if ref.solve_prompts is not None]])
    return own


def _work_left(stage: str, section: Any) -> bool:
    """Whether a finished stage has work its fingerprint cannot see: extract's documents refused as too
    long in another context window (``max_model_len``, not part of the config's hash, was raised). It
    then resumes, and the stages after it run again on its new output. (A server's window is not known
    here: `rationalyst extract` tries those again, but `rationalyst run` would redo every stage after
    extract each time.)"""
    if stage != "extract":
        return False
    return bool(refused_in_another_window(read_records(Path(section.output) / DOCUMENTS_DIR), section, servers=False))


def _stage_output(stage: str, section: Any, output: Path) -> str | None:
    """A stamp of what a stage's output holds now (`runs.output_stamp`; train: its training's fingerprint;
    the generated corpus: its files' names and sizes), None when it holds no finished output. A stage
    whose output changed since the pipeline recorded it (a standalone ``rationalyst extract`` tried refused
    documents again, a model deleted or trained elsewhere) makes the stages after it run again."""
    if stage == "corpus":
        folder = output / "corpus"
        files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
        return content_digest(files) if files else None
    if stage == "train":
        return finished_fingerprint(section.output)
    if stage == "extract":
        stamps = [output_stamp(section.output), output_stamp(Path(section.output) / DOCUMENTS_DIR)]
    elif stage == "eval":
        stamps = [output_stamp(Path(section.output) / ref.name / method)
                  for ref in section.benchmarks for method in section.methods]
    else:
        stamps = [output_stamp(section.output)]
    return None if None in stamps else content_digest(stamps)


class PipelineState:
    """``pipeline.json``: per stage, the fingerprint it ran with and whether it completed."""

    def __init__(self, output: Path) -> None:
        self.path = output / STATE_FILE
        stored = read_json(self.path)
        self.stages: dict[str, dict[str, Any]] = stored.get("stages", {}) if isinstance(stored, dict) else {}

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, dumps({"stages": self.stages}))
        except OSError as exc:
            raise RationalystError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def is_done(self, stage: str, fingerprint: str) -> bool:
        entry = self.stages.get(stage, {})
        return entry.get("fingerprint") == fingerprint and entry.get("complete") is True

    def own_partial_work(self, stage: str, fingerprint: str) -> bool:
        return self.stages.get(stage, {}).get("fingerprint") == fingerprint

    def same_inputs(self, stage: str, upstream: str) -> bool:
        """Whether the stage last ran on what the stages before it make now (its own section changed)."""
        return self.stages.get(stage, {}).get("upstream") == upstream

    def changed(self, stage: str, key: Literal["input", "output"], stamp: str | None) -> bool:
        """Whether the stage's input (the output of the stage before it) or its own output is not what it
        was when the stage last finished. A state written before stamps were kept has none: unchanged."""
        entry = self.stages.get(stage, {})
        return key in entry and entry[key] != stamp

    def stamp(self, stage: str, *, input: str | None, output: str | None) -> None:
        """Keep the stamps of a finished stage that has none (a state of an older version), as found."""
        entry = self.stages[stage]
        if "input" not in entry or "output" not in entry:
            entry.update(input=input, output=output)
            self.save()

    def start(self, stage: str, fingerprint: str, upstream: str, input: str | None) -> None:
        # The stages after this one see its new output by their input stamps; an entry of an older
        # version has none and was computed from the old output: forget it before changing that.
        for later in STAGES[STAGES.index(stage) + 1 :]:
            if "input" not in self.stages.get(later, {}):
                self.stages.pop(later, None)
        self.stages[stage] = {"fingerprint": fingerprint, "upstream": upstream, "input": input, "complete": False}
        self.save()

    def complete(self, stage: str, output: str | None) -> None:
        self.stages[stage]["output"] = output
        self.stages[stage]["complete"] = True
        self.stages[stage]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.save()


#: How a stage starts: on its own earlier partial work, over it, or (eval) over only its changed runs.
StartMode = Literal["resume", "overwrite", "refresh"]


def _stage_runners(config: PipelineConfig) -> list[tuple[str, Any, Callable[[StartMode], Any]]]:
    """(stage, its config or None, a function running it in a `StartMode`), in pipeline order.

    ``refresh`` is for eval when only its own section changed: its runs are per (benchmark, method),
    and only those whose own config changed start over; other stages take it as ``overwrite``."""
    from rationalyst.stages import eval as eval_stage
    from rationalyst.stages import extract, select, train
    from rationalyst.stages import filter as filter_stage

    def started(section, mode: StartMode):
        return section if mode == "resume" else section.model_copy(update={"overwrite": True})

    runners: list[tuple[str, Any, Callable[[StartMode], Any]]] = []
    if config.generate_corpus is not None:
        corpus = config.generate_corpus
        runners.append(("corpus", corpus, lambda mode: write_generated_corpus(
            config.output / "corpus", write=atomic_write, **corpus.model_dump())))
    runners += [
        ("select", config.select, lambda mode: select.run(started(config.select, mode))),
        ("extract", config.extract, lambda mode: extract.run(started(config.extract, mode))),
        ("filter", config.filter, lambda mode: filter_stage.run(started(config.filter, mode))),
        ("train", config.train, lambda mode: train.run(started(config.train, mode))),
        ("eval", config.eval, lambda mode: eval_stage.run(config.eval, refresh=True) if mode == "refresh"
         else eval_stage.run(started(config.eval, mode))),
    ]
    if config.report:
        runners.append(("report", None, lambda mode: _write_report(config.output)))
    return runners


def _write_report(output: Path) -> Any:
    from rationalyst.report import build_report

    return build_report(output, output / "report")


def _mode_for_changed_output(stage: str, section: Any, own: str | None) -> StartMode:
    """How a stage whose output changed outside the pipeline starts again (its config unchanged): on
    what is there (missing work is done again, a complete output with nothing left stays as it is),
    unless it is the output of another config (a standalone run into the pipeline's folder), which the
    recipe's run replaces. Eval keeps every (benchmark, method) run of its own config."""
    if stage == "eval":
        return "refresh"
    if stage == "train":
        other = own is not None  # a finished training, but not the one recorded
    elif stage == "corpus":
        other = False  # generated again whole whatever the mode
    else:
        info = run_info(section.output)
        other = info is not None and info[0].get("config_hash") != config_hash(section)
    if other:
        log.warning("%s: %s holds the output of another config than the recipe's; it is run again over it",
                    stage, section.output)
        return "overwrite"
    return "resume"


def run(
    config: PipelineConfig,
    *,
    start: str | None = None,
    stop: str | None = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> PipelineResult:
    """Run every stage that is not already done with the same fingerprint; see the module docstring.

    ``start`` and ``stop`` (stage names) run only that slice, e.g. to train with ``accelerate launch``
    in between: stages before ``start`` are taken as they are on disk.
    """
    for name in (start, stop):
        if name is not None and name not in STAGES:
            raise RationalystError(f"unknown stage {name!r}: choose from {', '.join(STAGES)}")
    first = STAGES.index(start) if start else 0
    last = STAGES.index(stop) if stop else len(STAGES) - 1
    state = PipelineState(config.output)
    result = PipelineResult(config.output)
    fingerprint = "start"
    previous: str | None = None  # the stamp of the output the next stage reads
    for stage, section, runner in _stage_runners(config):
        if not first <= STAGES.index(stage) <= last:
            if section is not None:
                fingerprint = _fingerprint(fingerprint, _section_hash(stage, section))
                previous = _stage_output(stage, section, config.output)
            continue
        # The report (no section) is cheap and reads every eval run: it is always rewritten.
        upstream = fingerprint
        own, new_input, new_output = None, False, False
        if section is not None:
            fingerprint = _fingerprint(fingerprint, _section_hash(stage, section))
            own = _stage_output(stage, section, config.output)
            new_input, new_output = state.changed(stage, "input", previous), state.changed(stage, "output", own)
            if state.is_done(stage, fingerprint) and not (new_input or new_output or _work_left(stage, section)):
                state.stamp(stage, input=previous, output=own)
                previous = own
                result.stages.append(StageOutcome(stage, "skipped", 0.0))
                if on_stage:
                    on_stage(stage, "skipped")
                continue
        if stage == "select":
            _guard_corpus_inputs(config)
        resume = section is not None and state.own_partial_work(stage, fingerprint) and not new_input
        refresh = not resume and stage == "eval" and state.same_inputs(stage, upstream) and not new_input
        mode: StartMode = "resume" if resume else "refresh" if refresh else "overwrite"
        if resume and new_output:
            mode = _mode_for_changed_output(stage, section, own)
        if on_stage:
            on_stage(stage, "resuming" if mode == "resume" else "running")
        state.start(stage, fingerprint, upstream, previous)
        started = time.perf_counter()
        try:
            outcome = runner(mode)
        except RationalystError as exc:
            raise RationalystError(f"stage {stage} failed: {exc} (finished stages are kept in {config.output})") from None
        finally:
            # Each stage starts on an empty GPU: drop what this one loaded (vLLM refuses to start when
            # free memory is under gpu_memory_utilization x total).
            release_memory()
        if stage == "select":
            _guard_selected(config)
        previous = _stage_output(stage, section, config.output) if section is not None else previous
        state.complete(stage, previous)
        result.stages.append(StageOutcome(stage, "resumed" if mode == "resume" else "ran", time.perf_counter() - started, outcome))
    return result


def _eval_items(config: PipelineConfig) -> dict[str, list]:
    from rationalyst.stages.eval import _load_items

    return {ref.name: _load_items(ref)[0] for ref in config.eval.benchmarks}


def _guard_corpus_inputs(config: PipelineConfig) -> None:
    """Before select: evaluation items against the corpus inputs that are benchmark files (seconds)."""
    from rationalyst.stages import guard
    from rationalyst.stages.select import input_documents

    items = _eval_items(config)
    inputs = [c for c in config.select.corpus if c.benchmark is not None]
    if not inputs:
        return
    texts = ((d.id, d.text) for c in inputs for d in input_documents(c, lambda *_: None))
    where = "the corpus inputs " + ", ".join(c.path for c in inputs)
    guard.check(items, texts, where=where, allow=config.allow_contamination,
                report=config.output / "corpus-contamination.json")


def _guard_selected(config: PipelineConfig) -> None:
    """After select: evaluation items against every selected document, before anything is mined."""
    from rationalyst.stages import guard

    guard.check(
        _eval_items(config), guard.texts_of([config.select.output]), where=f"the selected documents ({config.select.output})",
        allow=config.allow_contamination, report=config.select.output / guard.REPORT_FILE,
    )


def _counts(run_path: Path) -> dict[str, Any]:
    manifest = read_json(run_path / "manifest.json")
    return manifest.get("counts", {}) if isinstance(manifest, dict) else {}


def summary(config: PipelineConfig) -> list[tuple[str, str]]:
    """What the run's stages produced, read from their outputs on disk (so skipped stages count too)."""

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    rows: list[tuple[str, str]] = []
    select = _counts(config.select.output)
    if select:
        by_source = ", ".join(f"{k} {v}" for k, v in sorted(select.get("selected_by_source", {}).items()))
        rows.append(("documents selected", f"{select.get('selected', 0)} of {select.get('documents', 0)} ({by_source})"))
    extract = _counts(config.extract.output)
    if extract:
        rows.append(("rationales extracted", f"{extract.get('rationales', 0)} from {extract.get('documents_extracted', 0)} documents"))
    kept = _counts(config.filter.output)
    if kept:
        rows.append(("rationales kept", f"{kept.get('kept', 0)} of {kept.get('kept', 0) + kept.get('dropped', 0)} (tau {config.filter.tau})"))
    trained = read_json(config.train.output / "summary.json")
    if isinstance(trained, dict):
        loss = f"{fmt(trained.get('first_train_loss'))} -> {fmt(trained.get('last_train_loss'))}"
        rows.append(("training loss", f"{loss} ({trained.get('global_step')} steps, {trained.get('train_records')} records)"))
        rows.append(("dev log-lik per token", f"{fmt(trained.get('dev_loglik_before'))} -> {fmt(trained.get('dev_loglik_after'))}"))
    for ref in config.eval.benchmarks:
        for method in config.eval.methods:
            counts = _counts(config.eval.output / ref.name / method)
            if counts:
                accuracy = f"{counts['correct']}/{counts['problems']} correct ({100 * counts['accuracy']:.1f}%)"
                cost = f"{counts['seconds_per_problem']:.1f} s/problem, supervision {100 * counts['supervision_share']:.0f}% of it"
                rows.append((f"{ref.name} {method}", f"{accuracy}, {cost}"))
    return rows
