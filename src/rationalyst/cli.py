"""The `rationalyst` command line: it parses arguments, calls one module, and prints the result.

Errors the user can fix (`RationalystError`, invalid options) are printed as one clear message with
exit code 2; no traceback unless --verbose.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from rationalyst import __version__
from rationalyst.console import setup_logging, stderr, stdout
from rationalyst.errors import RationalystError
from rationalyst.lm.builtin import BUILTINS, DEFAULT_LM, installed_parts

app = typer.Typer(
    help="RATIONALYST: mine implicit rationales from text and use them to supervise LLM reasoning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("rationalyst")

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model spec: builtin:NAME, hf:DIR, gguf:FILE, llamacpp:FILE.")]
ChatOption = Annotated[bool, typer.Option("--chat/--raw", help="Wrap the text as a user turn in the model's chat template, or use it as raw text.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.callback()
def _global(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors; no progress bars.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging and tracebacks.")] = False,
) -> None:
    setup_logging(quiet=quiet, verbose=verbose)


@app.command()
def version() -> None:
    """Print the version."""
    stdout.print(__version__)


@app.command()
def models() -> None:
    """List the builtin models (shipped in PyPI packages), installed or not, with their paths."""
    table = Table(title="builtin models")
    table.add_column("spec", no_wrap=True)
    for column in ("kind", "installed", "path / install command", "description"):
        table.add_column(column, overflow="fold")
    for model in BUILTINS.values():
        parts = installed_parts(model)
        present = sum(p is not None for p in parts)
        if present == len(parts):
            where, state = str(parts[0] if len(parts) == 1 else f"{len(parts)} parts, e.g. {parts[0]}"), "yes"
        else:
            where, state = model.install_command, "no" if present == 0 else f"{present}/{len(parts)} parts"
        spec = f"builtin:{model.name}" + (" (default)" if f"builtin:{model.name}" == DEFAULT_LM else "")
        table.add_row(spec, model.kind, state, where, model.description)
    stdout.print(table)


def _prompt(text: str, chat: bool):
    return [{"role": "user", "content": text}] if chat else text


@app.command()
def generate(
    prompts: Annotated[list[str], typer.Argument(help="One or more prompts.")],
    model: ModelOption = DEFAULT_LM,
    n: Annotated[int, typer.Option(help="Completions per prompt.")] = 1,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Most new tokens per completion.")] = 128,
    stop: Annotated[Optional[list[str]], typer.Option(help="Stop string (repeatable; \\n and \\t are escapes).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for reproducible sampling.")] = None,
    chat: ChatOption = True,
    as_json: JsonOption = False,
) -> None:
    """Sample completions; shows text, finish reason and per-token log-probs."""
    from rationalyst.lm import SamplingParams, load_model

    params = SamplingParams(
        n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
        stop=tuple(s.replace("\\n", "\n").replace("\\t", "\t") for s in stop or ()), seed=seed,
    )
    lm = load_model(model)
    results = lm.generate([_prompt(p, chat) for p in prompts], params)
    if as_json:
        rows = [
            {"prompt": p, "completions": [c.__dict__ for c in completions]}
            for p, completions in zip(prompts, results)
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"{lm.name}: {params.n} completion(s) per prompt")
    for column in ("prompt", "#", "completion", "finish", "tokens", "mean logprob"):
        table.add_column(column, overflow="fold")
    for p, completions in zip(prompts, results):
        for i, c in enumerate(completions):
            mean = sum(c.logprobs) / len(c.logprobs) if c.logprobs else 0.0
            table.add_row(p if i == 0 else "", str(i), c.text, c.finish_reason, str(len(c.token_ids)), f"{mean:.3f}")
    stdout.print(table)


@app.command()
def score(
    context: Annotated[str, typer.Option("--context", "-c", help="The context every continuation follows.")],
    continuations: Annotated[list[str], typer.Argument(help="Continuations to score.")],
    model: ModelOption = DEFAULT_LM,
    chat: ChatOption = False,
    tokens: Annotated[bool, typer.Option("--tokens", help="Also show every token's log-prob.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Log-probability of each continuation after the context (sum, mean, per token)."""
    from rationalyst.lm import load_model

    lm = load_model(model)
    scores = lm.score(_prompt(context, chat), continuations)
    if as_json:
        rows = [
            {"continuation": text, "sum": s.sum, "mean": s.mean, "tokens": s.tokens, "logprobs": s.logprobs}
            for text, s in zip(continuations, scores)
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"{lm.name}: log p(continuation | context)")
    for column in ("continuation", "tokens", "sum", "mean") + (("per token",) if tokens else ()):
        table.add_column(column, overflow="fold")
    for text, s in zip(continuations, scores):
        row = [repr(text), str(len(s.token_ids)), f"{s.sum:.3f}", f"{s.mean:.3f}"]
        if tokens:
            row.append(" ".join(f"{t}:{lp:.2f}" for t, lp in zip(s.tokens, s.logprobs)))
        table.add_row(*row)
    stdout.print(table)


ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="Stage config YAML (a recipe).")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config field: key.path=value.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Start over instead of resuming.")]
ExecutorOption = Annotated[Optional[str], typer.Option("--executor", help="local (default) or ray.")]
RayAddressOption = Annotated[Optional[str], typer.Option("--ray-address", help="An existing Ray cluster (default: start one locally).")]


def _wire_pipeline(data: dict) -> dict:
    from rationalyst.pipeline import wire_sections

    return wire_sections(data)


def _stage_config(cls, config: Optional[Path], overrides: Optional[list[str]], section: str | None = None, **options):
    """The stage's config from ``--config`` (a stage config, or a `rationalyst run` recipe whose
    ``section`` is taken as that run would wire it), command-line options and ``--set`` overrides."""
    from rationalyst.config import load_config

    # Unset options are None (flags False, lists empty); 0 is a value (`--tau 0`, `--seed 0`).
    values = {key: value for key, value in options.items() if value is not None and value is not False and value != []}
    return load_config(cls, config, overrides or (), values, section=section, wire=_wire_pipeline)


def _counts_table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    return table


def _skipped_line(skipped: dict[str, int]) -> None:
    if skipped:
        stdout.print("skipped input: " + ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items())))


@app.command("select")
def select_command(
    config: ConfigOption = None,
    overrides: SetOption = None,
    corpus: Annotated[Optional[list[str]], typer.Option(help="Corpus file, folder, glob or hf:<name> (repeatable).")] = None,
    benchmark: Annotated[Optional[list[str]], typer.Option(help="Benchmark JSONL whose questions define the target (repeatable).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output run directory.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Cosine similarity threshold (default 0.3).")] = None,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Stage 1: keep the corpus documents most similar to the benchmark questions."""
    from rationalyst.stages import select

    cfg = _stage_config(
        select.SelectConfig, config, overrides, section="select",
        corpus=corpus, benchmarks=benchmark, output=output, threshold=threshold, overwrite=overwrite,
        **{"executor.kind": executor, "executor.ray_address": ray_address},
    )
    summary = select.run(cfg)
    sources = sorted(set(summary.selected) | set(summary.rejected) | set(summary.too_long))
    rows = [(s, summary.selected[s], summary.rejected[s], summary.too_long[s]) for s in sources]
    stdout.print(_counts_table(f"select: {summary.read} documents", ("source", "selected", "below threshold", "too long"), rows))
    _skipped_line(summary.skipped)
    stdout.print(f"output: {cfg.output}  histogram: {summary.histogram}", soft_wrap=True)


@app.command("extract")
def extract_command(
    config: ConfigOption = None,
    overrides: SetOption = None,
    input: Annotated[Optional[Path], typer.Option("--input", help="The select stage's run directory or a JSONL file of documents.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output run directory.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Extraction model spec (default builtin:smollm2-135m).")] = None,
    mode: Annotated[Optional[str], typer.Option(help="boundary (one rationale per sentence boundary) or rewrite (the paper's).")] = None,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Stage 2: write the implicit rationales of each document."""
    from rationalyst.stages import extract

    cfg = _stage_config(
        extract.ExtractConfig, config, overrides, section="extract", input=input, output=output, **{"model.spec": model}, mode=mode,
        overwrite=overwrite, **{"executor.kind": executor, "executor.ray_address": ray_address},
    )
    counts = extract.run(cfg)
    per_source = counts.get("per_source", {})
    rows = [(s, c.get("documents", 0), c.get("rationales", 0)) for s, c in sorted(per_source.items())]
    stdout.print(_counts_table(
        f"extract ({cfg.mode}): {counts.get('documents_extracted', 0)} documents, {counts.get('rationales', 0)} rationales",
        ("source", "documents", "rationales"), rows,
    ))
    dropped = counts.get("rationales_dropped", {})
    if dropped:
        stdout.print("rationales dropped: " + ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())))
    _skipped_line(counts.get("skipped", {}))
    stdout.print(f"output: {cfg.output}", soft_wrap=True)


@app.command("filter")
def filter_command(
    config: ConfigOption = None,
    overrides: SetOption = None,
    input: Annotated[Optional[Path], typer.Option("--input", help="The extract stage's run directory or a JSONL file.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output run directory.")] = None,
    scorer: Annotated[Optional[str], typer.Option(help="Scorer model spec (default builtin:smollm2-135m).")] = None,
    tau: Annotated[Optional[float], typer.Option(help="Keep rationales with delta >= tau (default 0).")] = None,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Stage 3: keep the rationales that make the following text more predictable."""
    from rationalyst.stages import filter as filter_stage

    cfg = _stage_config(
        filter_stage.FilterConfig, config, overrides, section="filter",
        input=input, output=output, **{"scorer.spec": scorer}, tau=tau, overwrite=overwrite,
        **{"executor.kind": executor, "executor.ray_address": ray_address},
    )
    summary = filter_stage.run(cfg)
    sources = sorted(set(summary.kept) | set(summary.dropped))
    rows = [(s, summary.kept[s], summary.dropped[s], cfg.tau_for(s)) for s in sources]
    stdout.print(_counts_table(f"filter: {len(summary.deltas)} rationales scored", ("source", "kept", "dropped", "tau"), rows))
    _skipped_line(summary.skipped)
    stdout.print(f"output: {cfg.output}  histogram: {summary.histogram}", soft_wrap=True)


@app.command("train")
def train_command(
    config: ConfigOption = None,
    overrides: SetOption = None,
    input: Annotated[Optional[Path], typer.Option("--input", help="The filter stage's run directory or a JSONL file.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output folder (checkpoints, adapter, merged model).")] = None,
    base: Annotated[Optional[str], typer.Option(help="Base model spec (default builtin:smollm2-135m).")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Stage 4: fine-tune the rationalist on the kept rationales (LoRA by default; resumes)."""
    from rationalyst.stages import train

    cfg = _stage_config(train.TrainConfig, config, overrides, section="train", input=input, output=output, **{"base.spec": base}, overwrite=overwrite)
    result = train.run(cfg)
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    rows = [
        ("records (train / dev)", f"{result.train_records} / {result.dev_records}"),
        ("steps", result.global_step),
        ("train loss (first -> last)", f"{fmt(result.first_train_loss)} -> {fmt(result.last_train_loss)}"),
        ("dev loss", fmt(result.dev_loss)),
        ("dev log-likelihood per token (before -> after)", f"{fmt(result.dev_loglik_before)} -> {fmt(result.dev_loglik_after)}"),
    ]
    stdout.print(_counts_table("train", ("", "value"), rows))
    stdout.print(f"merged model: hf:{result.merged}", soft_wrap=True)


@app.command("train-prm")
def train_prm_command(
    config: ConfigOption = None,
    overrides: SetOption = None,
    data: Annotated[Optional[Path], typer.Option(help="JSONL of rated steps (PRM800K's shape).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output folder for the PRM.")] = None,
    base: Annotated[Optional[str], typer.Option(help="Base model spec (default builtin:smollm2-135m).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default 100).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Rated steps to train on (default all).")] = None,
) -> None:
    """A process reward model trained by TRL's PRMTrainer on rated steps (for the prm scorer; extra: prm)."""
    from rationalyst.stages import prm_train

    cfg = _stage_config(prm_train.PrmTrainConfig, config, overrides, data=data, output=output, base=base,
                        max_steps=max_steps, limit=limit)
    summary = prm_train.run(cfg)
    stdout.print(f"trained on {summary['rows']} rated steps ({summary['good']} good), loss {summary['training_loss']:.3f}")
    stdout.print(f"use it with: prm: {{spec: hf:{cfg.output}}}", soft_wrap=True)
    _skipped_line(summary["skipped"])


AgentOption = Annotated[Optional[str], typer.Option("--agent", help="Agent model spec (default builtin:smollm2-135m).")]
RationalistOption = Annotated[Optional[str], typer.Option("--rationalist", help="Rationalist model spec (default: the agent's).")]
ScorerOption = Annotated[Optional[str], typer.Option("--scorer", help="Scorer model spec (default: the agent's).")]
CandidatesOption = Annotated[Optional[int], typer.Option("--candidates", "-n", help="Candidate steps per step (default 3).")]
SeedOption = Annotated[Optional[int], typer.Option("--seed", help="Base seed (default 0).")]


def _role_options(agent, rationalist, scorer, candidates, seed) -> dict:
    return {
        "agent.spec": agent, "rationalist.spec": rationalist, "scorer.spec": scorer,
        "search.n_candidates": candidates, "seed": seed,
    }


def _benchmark_refs(values: Optional[list[str]], limit: Optional[int]) -> Optional[list[dict]]:
    """``NAME`` or ``NAME=SOURCE`` options as benchmark entries."""
    if not values:
        return None
    refs = []
    for value in values:
        name, _, source = value.partition("=")
        refs.append({"name": name, "source": source or None, "limit": limit})
    return refs


@app.command("eval")
def eval_command(
    config: ConfigOption = None,
    overrides: SetOption = None,
    benchmark: Annotated[Optional[list[str]], typer.Option("--benchmark", "-b", help="NAME or NAME=FILE (repeatable): gsm8k, math, math500, ecqa, hellaswag, proofwriter, arc_challenge, mmlu_pro, gsm_symbolic.")] = None,
    method: Annotated[Optional[list[str]], typer.Option("--method", help="Heuristic or baseline (repeatable): implicit, explicit, random, self-ppl, llm-judge, cot, self-consistency, beam, best-of-n.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="First N problems of each benchmark (given here or in the config).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output directory (one run per benchmark and method).")] = None,
    agent: AgentOption = None,
    rationalist: RationalistOption = None,
    scorer: ScorerOption = None,
    candidates: CandidatesOption = None,
    seed: SeedOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Stage 5 on benchmarks: solve every problem with every method; one trace per problem."""
    from rationalyst.stages import eval as eval_stage

    cfg = _stage_config(
        eval_stage.EvalConfig, config, overrides, section="eval", benchmarks=_benchmark_refs(benchmark, limit), methods=method,
        output=output, overwrite=overwrite, **_role_options(agent, rationalist, scorer, candidates, seed),
    )
    if limit is not None and not benchmark:  # the config's benchmarks, each cut to the first `limit`
        cfg = cfg.model_copy(update={"benchmarks": [b.model_copy(update={"limit": limit}) for b in cfg.benchmarks]})
    summaries = eval_stage.run(cfg)
    rows = []
    for s in summaries:
        c = s.counts()
        rows.append((s.benchmark, s.method, f"{s.correct}/{s.problems}", f"{100 * s.accuracy:.1f}", s.unparsed,
                     c["tokens_per_problem"], c["seconds_per_problem"], f"{100 * c['supervision_share']:.0f}%"))
    stdout.print(_counts_table(
        "eval", ("benchmark", "method", "correct", "accuracy %", "unparsed", "tokens/problem", "s/problem", "supervision"), rows,
    ))
    for s in summaries:
        _skipped_line(s.skipped)
    stdout.print(f"traces: {cfg.output}  (rationalyst report {cfg.output})", soft_wrap=True)


@app.command()
def solve(
    question: Annotated[str, typer.Argument(help="The question.")],
    choices: Annotated[Optional[list[str]], typer.Option("--choice", help="An answer option (repeatable; makes it multiple choice).")] = None,
    family: Annotated[Optional[str], typer.Option(help="arithmetic (default), math, multiple_choice or logic.")] = None,
    method: Annotated[Optional[str], typer.Option(help="Heuristic or baseline (default implicit).")] = None,
    answer: Annotated[str, typer.Option(help="The gold answer, to check the result against.")] = "",
    config: ConfigOption = None,
    overrides: SetOption = None,
    agent: AgentOption = None,
    rationalist: RationalistOption = None,
    scorer: ScorerOption = None,
    candidates: CandidatesOption = None,
    seed: SeedOption = None,
    rationalist_format: Annotated[Optional[str], typer.Option(
        "--rationalist-format",
        help="The rationalist's prompt: rationalyst (instruction + text) or paper-release (the text alone, as the "
        "authors' released rationalist); default: as saved beside the model by the train stage.",
    )] = None,
    as_json: JsonOption = False,
) -> None:
    """Solve one question step by step, supervised by the rationalist; show every step's choice."""
    from rationalyst.search.solve import SolveConfig
    from rationalyst.search.solve import solve as solve_question

    if choices and family is None:
        family = "multiple_choice"
    cfg = _stage_config(
        SolveConfig, config, overrides, method=method, family=family, rationalist_format=rationalist_format,
        **_role_options(agent, rationalist, scorer, candidates, seed),
    )
    trace = solve_question(cfg, question, choices, answer)
    if as_json:
        print(json.dumps(trace, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{cfg.method}: {question}", show_lines=True)
    for column in ("step", "rationale", "candidates (score)"):
        table.add_column(column, overflow="fold")
    for i, step in enumerate(trace["steps"], 1):
        lines = []
        for j, c in enumerate(step["candidates"]):
            score = "" if c["score"] is None else f" ({c['score']:.3f})"
            text = escape(c["text"]) + score
            lines.append(f"[bold green]> {text}[/bold green]" if j == step["chosen"] else f"  {text}")
        table.add_row(str(i), escape(step["rationale"] or ""), "\n".join(lines))
    stdout.print(table)
    verdict = "" if not answer else ("  [green]correct[/green]" if trace["correct"] else "  [red]wrong[/red]")
    stdout.print(f"answer: {trace['prediction']}{verdict}  ({trace['stop_reason']}, {trace['seconds']['total']:.1f} s)")


@app.command()
def verify(
    input: Annotated[Optional[Path], typer.Option("--input", help="JSONL of {id, question, steps, choices?}.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output run directory for the step scores.")] = None,
    family: Annotated[Optional[str], typer.Option(help="Task family of the questions (default math).")] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    rationalist: RationalistOption = None,
    scorer: ScorerOption = None,
    verifier: Annotated[Optional[str], typer.Option(help="implicit (default), prm or implicit-prm.")] = None,
    prm: Annotated[Optional[str], typer.Option(help="The process reward model of --verifier prm: hf:<id or folder>.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Score each step of given solutions: implicit supervision (rationale, then the step's log-prob), a
    process reward model, or PRIME's implicit process reward."""
    from rationalyst.stages import verify as verify_stage

    cfg = _stage_config(
        verify_stage.VerifyConfig, config, overrides, input=input, output=output, family=family, overwrite=overwrite,
        verifier=verifier, **{"rationalist.spec": rationalist, "scorer.spec": scorer, "prm.spec": prm},
    )
    counts = verify_stage.run(cfg)
    stdout.print(f"verified {counts['records']} solutions -> {cfg.output}", soft_wrap=True)
    _skipped_line(counts.get("skipped", {}))


@app.command("export")
def export_command(
    input: Annotated[Optional[Path], typer.Option("--input", help="The filter stage's run directory (or a pipeline output folder).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output folder for both corpora and the dataset card.")] = None,
    documents: Annotated[Optional[Path], typer.Option(help="The select run directory or a JSONL of documents (default: found from the filter run).")] = None,
    bot: Annotated[Optional[str], typer.Option(help="Marker before an inline rationale (default <BOT>).")] = None,
    eot: Annotated[Optional[str], typer.Option(help="Marker after an inline rationale (default <EOT>).")] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Export the kept rationales: a chat SFT dataset and documents with rationales inline (JSONL, Parquet, datasets)."""
    from rationalyst.stages import export

    cfg = _stage_config(
        export.ExportConfig, config, overrides, input=input, output=output, documents=documents, bot=bot, eot=eot,
        overwrite=overwrite,
    )
    summary = export.run(cfg)
    sources = sorted(set(summary.kept_by_source) | set(summary.documents_by_source))
    rows = [(s, summary.kept_by_source.get(s, 0), summary.documents_by_source.get(s, 0)) for s in sources]
    stdout.print(_counts_table("export", ("source", "SFT examples", "documents"), rows))
    stdout.print(
        f"{summary.sft_examples} SFT examples, {summary.documents} documents with {summary.inline_rationales} "
        "inline rationales", soft_wrap=True,
    )
    _skipped_line(summary.skipped)
    stdout.print(f"output: {cfg.output}  card: {summary.card}", soft_wrap=True)


def _default_recipe(name: str) -> Path:
    return Path(str(resources.files("rationalyst") / "recipes" / name))


def _run_pipeline(recipe: Path, overrides, start: Optional[str], stop: Optional[str], check: bool = True) -> None:
    from rationalyst import pipeline

    cfg = _stage_config(pipeline.PipelineConfig, recipe, overrides)
    log.info("pipeline: %s -> %s", recipe, cfg.output)
    if check:  # the preflight of `rationalyst check`: seconds, no model loaded; stops on a problem
        from rationalyst import preflight

        checked = preflight.check_config(cfg, start=start, stop=stop)
        if checked.problems:
            stderr.print(preflight.table(checked))
            raise preflight.PreflightError(checked)

    def announce(stage: str, status: str) -> None:
        stderr.print(f"[bold]{stage}[/bold]: {status}", highlight=False)

    result = pipeline.run(cfg, start=start, stop=stop, on_stage=announce)
    table = _counts_table(f"rationalyst run: {cfg.output}", ("", "result"), pipeline.summary(cfg))
    stdout.print(table)
    timings = ", ".join(f"{s.stage} {s.status}" + (f" {s.seconds:.0f} s" if s.status != "skipped" else "") for s in result.stages)
    stdout.print(f"stages: {timings}", soft_wrap=True)
    report = cfg.output / "report" / "report.html"
    if report.exists():
        stdout.print(f"report: {cfg.output / 'report' / 'report.md'}  explorer: {report}  (rationalyst view {cfg.output})", soft_wrap=True)


StartOption = Annotated[Optional[str], typer.Option("--from", help="Start at this stage (corpus, select, extract, filter, train, eval, report).")]
StopOption = Annotated[Optional[str], typer.Option("--until", help="Stop after this stage.")]


@app.command("run")
def run_command(
    recipe: Annotated[Path, typer.Argument(help="Pipeline recipe YAML (e.g. recipes/cpu-demo.yaml).")],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe field: key.path=value.")] = None,
    start: StartOption = None,
    stop: StopOption = None,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the preflight checks of `rationalyst check`.")] = False,
) -> None:
    """The whole method from one recipe: select, extract, filter, train, eval, report (finished stages are skipped)."""
    _run_pipeline(recipe, overrides, start, stop, check=not no_check)


def _compute_capability(text: str) -> tuple[int, int]:
    """``7.5`` as (7, 5); anything else a usage error naming the option."""
    major, dot, minor = text.strip().partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise typer.BadParameter(f"{text!r} is not a compute capability such as 7.5 (T4) or 8.0 (A100)",
                                 param_hint="--gpu-capability")
    return int(major), int(minor)


@app.command("check")
def check_command(
    recipe: Annotated[Path, typer.Argument(help="Pipeline recipe YAML (e.g. recipes/paper-llama3-8b-vllm.yaml).")],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe field: key.path=value.")] = None,
    gpus: Annotated[Optional[int], typer.Option("--gpus", min=0, help="Plan for this many GPUs instead of this machine's.")] = None,
    gpu_memory: Annotated[Optional[float], typer.Option("--gpu-memory", min=0, help="GB of memory per GPU, for planning.")] = None,
    gpu_capability: Annotated[Optional[str], typer.Option(
        "--gpu-capability", help="The GPUs' CUDA compute capability, for planning (7.5: T4, 7.0: V100, 8.0: A100).")] = None,
    start: StartOption = None,
    stop: StopOption = None,
) -> None:
    """Preflight: data paths, models, GPUs and memory, contamination, work per stage; in seconds, no model loaded."""
    from rationalyst import preflight

    capability = _compute_capability(gpu_capability) if gpu_capability is not None else None
    checked = preflight.check_recipe(recipe, overrides or [], gpus=gpus, gpu_memory_gb=gpu_memory,
                                     gpu_capability=capability, start=start, stop=stop)
    stdout.print(preflight.table(checked))
    stdout.print(preflight.estimates_table(checked))
    problems = checked.problems
    stdout.print(f"{len(problems)} problem(s), checked in {checked.seconds:.1f} s", soft_wrap=True)
    if problems:
        raise typer.Exit(1)


@app.command()
def demo(
    recipe: Annotated[Optional[Path], typer.Option(help="Recipe YAML (default: the packaged cpu-demo.yaml).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe field: key.path=value.")] = None,
) -> None:
    """The CPU demo: the whole pipeline on the embedded default model (about 15 minutes on 2 cores)."""
    _run_pipeline(recipe or _default_recipe("cpu-demo.yaml"), overrides, None, None)
    stdout.print(
        "A 135M model on CPU shows the mechanics; the paper used Llama-3-8B-Instruct "
        "(recipes/paper-llama3-8b.yaml), where guided search gained 3.9 points on average."
    )


@app.command()
def serve(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model spec to serve, under its spec as name (repeatable; default builtin:smollm2-135m).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the server local.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", help="Require the key held in this environment variable (Authorization: Bearer KEY).")] = None,
    max_tokens_limit: Annotated[int, typer.Option(help="Most tokens one request may generate.")] = 1024,
    max_request_bytes: Annotated[int, typer.Option(help="Largest request body accepted.")] = 1_000_000,
    guided: Annotated[bool, typer.Option("--guided", help="Also serve the rationale-guided search as the chat model rationalyst-guided.")] = False,
    guided_config: Annotated[Optional[Path], typer.Option("--guided-config", help="Search recipe for --guided.")] = None,
) -> None:
    """Serve models over an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions)."""
    import os

    from rationalyst.lm import load_model
    from rationalyst.serve import ServerLimits, run_server

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise RationalystError(f"--api-key-env {api_key_env}: that environment variable is empty or unset")
    models = {spec: load_model(spec) for spec in model or [DEFAULT_LM]}
    guided_fn = None
    if guided:
        from rationalyst.serve.guided import build_guided

        guided_fn = build_guided(guided_config, models)
    limits = ServerLimits(max_tokens=max_tokens_limit, max_request_bytes=max_request_bytes)
    stderr.print(f"serving {', '.join(models)} on http://{host}:{port}/v1", soft_wrap=True)
    run_server(models, host=host, port=port, api_key=api_key, limits=limits, guided=guided_fn)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Folder holding eval and/or filter runs (searched recursively).")],
    output: Annotated[Optional[Path], typer.Option(help="Where to write report.md, the plots and report.html (default RUN_DIR/report).")] = None,
    max_documents: Annotated[int, typer.Option(help="Documents per filter run shown in the HTML mining view.")] = 1000,
) -> None:
    """Accuracy with 95% intervals, cost per problem and mining counts: Markdown, PNG plots, HTML explorer."""
    from rationalyst.report import build_report
    from rationalyst.report.markdown import ci_text, num, pct

    result = build_report(run_dir, output, max_documents=max_documents)
    rows = [
        (r.benchmark, r.label, r.n, pct(r.accuracy), ci_text(r.ci), num(r.tokens.get("total"), 0),
         num(r.seconds.get("total"), 2), pct(r.supervision_share), "complete" if r.complete else "incomplete")
        for r in result.collection.eval_runs
    ]
    if rows:
        stdout.print(_counts_table("accuracy and cost per problem", (
            "benchmark", "method", "n", "accuracy", "95% CI", "tokens", "seconds", "supervision", "status"), rows))
    for m in result.collection.mining_runs:
        kept = sum(s.kept for s in m.sources.values())
        stdout.print(f"filter run {m.info.rel}: {kept} of {len(m.deltas)} scored rationales kept"
                     + ("" if m.complete else " (incomplete)"), soft_wrap=True)
    stdout.print(f"report: {result.markdown}  explorer: {result.html}", soft_wrap=True)


@app.command()
def view(
    run_dir: Annotated[Path, typer.Argument(help="A folder of runs (or its report folder, or a report.html).")],
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in the default browser.")] = True,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild the report even if it exists.")] = False,
) -> None:
    """Open the HTML report of RUN_DIR (RUN_DIR/report/report.html, built first if missing)."""
    import webbrowser

    from rationalyst.report import ensure_report

    page = ensure_report(run_dir, rebuild=rebuild).resolve()
    stdout.print(str(page), soft_wrap=True)
    if open_browser and not webbrowser.open(page.as_uri()):
        stderr.print("no browser could be started; open the file above by hand")


def main() -> None:
    """Console entry point: run the app, turning user errors into one clear message."""
    verbose = "-v" in sys.argv[1:] or "--verbose" in sys.argv[1:]
    # typer >= 0.2x raises the exceptions of its own copy of click (typer._click), which click's
    # classes do not catch; a usage error then escaped as a traceback with exit status 0.
    usage_errors: tuple[type[Exception], ...] = (click.ClickException,)
    try:
        from typer._click.exceptions import ClickException as TyperClickException

        usage_errors += (TyperClickException,)
    except ImportError:
        pass
    try:
        code = app(standalone_mode=False)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        stderr.print("aborted")
        sys.exit(130)
    except usage_errors as exc:
        exc.show()  # the usage line, "Try ... --help", and the error; status 2 for usage errors
        sys.exit(exc.exit_code)
    except (RationalystError, ValidationError) as exc:
        if verbose:
            raise
        message = str(exc) if isinstance(exc, RationalystError) else _validation_message(exc)
        stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    # Outside standalone mode an explicit exit (ctx.exit(n), typer.Exit(n), Ctrl-C as 130) is returned.
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def _validation_message(exc: ValidationError) -> str:
    return "invalid option: " + "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
