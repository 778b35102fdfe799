"""`rationalyst check` (preflight): a too-small machine, a missing data path and a planted contamination
are each found in seconds without loading a model; a recipe that fits passes; `rationalyst run` stops
on a problem before any stage starts."""

from __future__ import annotations

import re
import time
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rationalyst import preflight
from rationalyst.cli import app
from tests.test_pipeline import FIXTURES, write_recipe

RECIPES = Path(str(resources.files("rationalyst").joinpath("recipes")))
runner = CliRunner()


def problems(report: preflight.Report, stage: str | None = None, what: str | None = None) -> list[preflight.Row]:
    return [r for r in report.problems if (stage is None or r.stage == stage) and (what is None or r.what == what)]


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """Preflight must never load a model: any load fails the test."""
    import rationalyst.lm.registry as registry

    def refuse(*args, **kwargs):
        raise AssertionError("preflight loaded a model")

    monkeypatch.setattr(registry, "load_model", refuse)
    monkeypatch.setattr(registry, "load_embedder", refuse)
    monkeypatch.setenv("HF_TOKEN", "hf_test")  # gated hub models: a token is there, so only resources are judged


def test_one_small_gpu_is_too_small_for_the_paper_vllm_recipe():
    start = time.perf_counter()
    report = preflight.check_recipe(RECIPES / "paper-llama3-8b-vllm.yaml", gpus=1, gpu_memory_gb=24)
    assert time.perf_counter() - start < 10
    memory = problems(report, "eval", "GPU memory")
    assert len(memory) == 1
    # Two vLLM engines at 0.3 of 24 GB cannot hold 8B bf16 weights (~15 GB) each.
    assert "gpu_memory_utilization 0.3 x 24 GB" in memory[0].fix and "agent" in memory[0].fix
    # In one process a LoRA on 8B float32 weights does not fit a 24 GB card either.
    assert problems(report, "train", "GPU memory")


def test_gpu_count_and_memory_are_judged_against_what_is_given():
    vllm = RECIPES / "paper-llama3-8b-vllm.yaml"
    big = preflight.check_recipe(vllm, gpus=1, gpu_memory_gb=80)
    assert not [r for r in big.problems if "GPU" in r.what]  # an 80 GB card holds every stage's engines
    none = preflight.check_recipe(vllm, gpus=0)
    assert {r.stage for r in problems(none) if "GPUs" in r.what} >= {"extract", "filter"}
    assert "executor.min_gpus" in problems(none, "extract")[0].fix
    unknown = preflight.check_recipe(vllm, gpus=2)  # count given, memory not: said, not guessed
    assert any("--gpu-memory" in r.fix for r in problems(unknown, "eval", "GPU memory"))


def test_lora_memory_follows_the_gpu_s_precision_and_a_refused_precision_is_a_problem():
    """A LoRA on the 8B base (8e9 parameters from its name) with one 24 GB GPU and the precision left to
    the GPU: a T4-class GPU (7.5) trains it in fp16 over float16 weights (8e9 x 2 B x 1.2 = 17.9 GiB:
    fits); an A100-class one (8.0) in bf16 over float32 master weights (35.8 GiB: does not); an unknown
    capability is judged at float32, the most, and says so. The recipe's bf16: true asked of the 7.5
    GPU is a precision problem row before anything runs."""
    recipe = RECIPES / "paper-llama3-8b-vllm.yaml"

    def train_memory(**given):
        overrides = given.pop("overrides", ["train.bf16=null"])
        report = preflight.check_recipe(recipe, overrides, gpus=1, gpu_memory_gb=24, **given)
        (row,) = [r for r in report.rows if (r.stage, r.what) == ("train", "GPU memory")]
        return row, report

    t4, _ = train_memory(gpu_capability=(7, 5))
    assert t4.ok and t4.needs.startswith("~18 GB LoRA (frozen weights), float16 weights")
    a100, _ = train_memory(gpu_capability=(8, 0))
    assert not a100.ok and a100.needs.startswith("~36 GB LoRA (frozen weights), float32 weights,")
    unknown, _ = train_memory()
    assert not unknown.ok and "--gpu-capability" in unknown.needs and unknown.needs.startswith("~36 GB")
    _, refused = train_memory(gpu_capability=(7, 5), overrides=[])
    (row,) = problems(refused, "train", "precision")
    assert row.there == "compute capability 7.5" and "does not compute bfloat16 natively" in row.fix


def test_the_check_command_reads_a_compute_capability_and_refuses_a_malformed_one():
    recipe = str(RECIPES / "paper-llama3-8b-vllm.yaml")
    plan = ["check", recipe, "--gpus", "1", "--gpu-memory", "24", "--gpu-capability"]
    result = runner.invoke(app, [*plan, "seven"])
    assert result.exit_code == 2 and "--gpu-capability" in result.output and "7.5" in result.output
    # The recipe's bf16: true is one problem more on a 7.5 GPU than on an 8.0 one (its precision row).
    counts = {}
    for capability in ("7.5", "8.0"):
        result = runner.invoke(app, [*plan, capability], terminal_width=200)
        assert result.exit_code == 1
        counts[capability] = int(re.search(r"(\d+) problem\(s\)", result.output).group(1))
    assert counts["7.5"] == counts["8.0"] + 1


def test_a_missing_data_path_is_one_line_saying_what_to_change(tmp_path):
    missing = tmp_path / "nowhere" / "corpus.jsonl"
    recipe = write_recipe(tmp_path, tmp_path / "run", **{"select.corpus": [{"path": str(missing)}]})
    start = time.perf_counter()
    report = preflight.check_recipe(recipe)
    assert time.perf_counter() - start < 10
    [row] = report.problems
    assert (row.stage, row.what, row.needs) == ("select", "corpus", str(missing))
    assert f"select.corpus: {missing} does not exist" in row.fix and "\n" not in row.fix


def test_a_missing_eval_benchmark_and_a_train_split_are_problems(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text((FIXTURES / "benchmarks" / "gsm8k.jsonl").read_text())
    benchmarks = [{"name": "gsm8k", "source": str(tmp_path / "test.jsonl")}, {"name": "math", "source": str(train)}]
    report = preflight.check_recipe(write_recipe(tmp_path, tmp_path / "run", **{"eval.benchmarks": benchmarks}))
    found = {r.what: r for r in problems(report, "eval")}
    assert "not found" in found["benchmark gsm8k"].fix
    assert "is a train split" in found["benchmark math"].fix


def test_a_planted_contamination_is_caught(tmp_path):
    # The eval file is also a corpus input read as benchmark documents: every item overlaps.
    corpus = [{"path": str(FIXTURES / "select" / "corpus.jsonl")},
              {"path": str(FIXTURES / "benchmarks" / "gsm8k.jsonl"), "benchmark": "gsm8k"}]
    recipe = write_recipe(tmp_path, tmp_path / "run", **{"select.corpus": corpus})
    start = time.perf_counter()
    report = preflight.check_recipe(recipe)
    assert time.perf_counter() - start < 10
    [row] = report.problems
    assert (row.stage, row.what) == ("select", "contamination guard")
    assert "share a 13-gram" in row.fix and "allow_contamination" in row.fix
    assert not (tmp_path / "run").exists()  # the check writes nothing
    allowed = preflight.check_recipe(recipe, ["allow_contamination=true"])
    assert not allowed.problems and "overlap (allowed)" in allowed.rows[-1].there


def test_a_clean_recipe_passes_and_estimates_the_work(tmp_path):
    report = preflight.check_recipe(write_recipe(tmp_path, tmp_path / "run"))
    assert report.problems == []
    documents = sum(1 for line in (FIXTURES / "select" / "corpus.jsonl").read_text().splitlines() if line.strip())
    work = dict(report.estimates)
    assert work["select"] == f"{documents} documents to embed"
    assert work["eval"].startswith("2 problems x 2 methods = 4 runs")
    assert "written by the train stage" in next(r.there for r in report.rows if r.what == "rationalist model")
    budget = dict(preflight.check_recipe(write_recipe(tmp_path, tmp_path / "run"), ["extract.sample_documents=2"]).estimates)
    assert budget["extract"].startswith("at most 2 documents (sample_documents of those selected)")
    rationales = [int(re.search(r"<= ([\d,]+) rationales", w["extract"])[1].replace(",", "")) for w in (work, budget)]
    assert rationales[1] * documents == rationales[0] * 2  # the same rationales per document, for 2 documents


def test_gated_hub_models_are_named_when_no_token_is_there(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no token file, empty cache
    info = preflight.model_info("hf:meta-llama/Meta-Llama-3-8B-Instruct")
    assert info.gated and "is gated" in info.problem and info.params == 8e9
    assert preflight.model_info("hf:Qwen/Qwen2.5-0.5B-Instruct").problem == ""
    assert "not found" in preflight.model_info(f"hf:{tmp_path / 'missing'}").problem
    assert "not found" in preflight.model_info("hf:runs/x/train/merged").problem  # more parts than org/name
    single = preflight.model_info("hf:gpt2")  # a hub id without an organisation (gpt2, distilgpt2) is one too
    assert single.where.startswith("hub id") and single.problem == ""


def test_check_command_prints_the_table_and_exits_1_on_a_problem(tmp_path):
    recipe = write_recipe(tmp_path, tmp_path / "run", **{"select.corpus": [{"path": str(tmp_path / "missing.jsonl")}]})
    result = runner.invoke(app, ["check", str(recipe)], terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "problem" in result.output and "1 problem(s)" in result.output
    assert runner.invoke(app, ["check", str(write_recipe(tmp_path, tmp_path / "run"))], terminal_width=200).exit_code == 0


def test_run_stops_on_a_problem_before_any_stage(tmp_path):
    recipe = write_recipe(tmp_path, tmp_path / "run", **{"select.corpus": [{"path": str(tmp_path / "missing.jsonl")}]})
    result = runner.invoke(app, ["run", str(recipe)], terminal_width=200)
    assert result.exit_code != 0
    assert isinstance(result.exception, preflight.PreflightError)
    assert "select.corpus" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_a_benchmark_corpus_input_is_found_in_the_benchmarks_folder(tmp_path, monkeypatch):
    """`benchmark:` inputs resolve like the benchmark loader: relative to the benchmarks folder too."""
    bench = tmp_path / "bench"
    (bench / "gsm8k").mkdir(parents=True)
    (bench / "gsm8k" / "train.jsonl").write_text((FIXTURES / "benchmarks" / "gsm8k.jsonl").read_text())
    monkeypatch.setenv("RATIONALYST_BENCHMARKS", str(bench))
    corpus = [{"path": "gsm8k/train.jsonl", "benchmark": "gsm8k"}]
    report = preflight.check_recipe(write_recipe(tmp_path, tmp_path / "run", **{"select.corpus": corpus}))
    assert not problems(report, "select", "corpus")
    # The same input is mined and evaluated here: the guard, which reads it, reports the overlap.
    assert problems(report, "select", "contamination guard")


def test_corpus_paths_are_found_as_read_corpus_finds_them(tmp_path, monkeypatch):
    """A file whose name holds [ ] is that file, a glob of folders counts the files inside, and ``~``
    is expanded by both preflight and the reader."""
    from rationalyst.data.corpus import read_corpus

    (tmp_path / "shard[1].jsonl").write_text('{"id": "a", "text": "one"}\n')
    (tmp_path / "part-0").mkdir()
    (tmp_path / "part-0" / "docs.jsonl").write_text('{"id": "b", "text": "two"}\n')
    monkeypatch.setenv("HOME", str(tmp_path))
    for spec in (str(tmp_path / "shard[1].jsonl"), str(tmp_path / "part-*"), "~/shard[1].jsonl"):
        found, _, files = preflight._resolve_data(spec)
        assert found and len(files) == 1 and len(list(read_corpus(spec))) == 1, spec


@pytest.mark.parametrize(("workers", "per_worker", "gpus"), [(4, 1, 2), (None, 1, 0), (None, 2, 1)])
def test_a_ray_pool_the_cluster_cannot_hold_is_a_problem_before_the_stage_starts(workers, per_worker, gpus):
    """As `executor.plan_pool` will refuse it when the stage starts: 4 workers of 1 GPU on 2 GPUs, or a
    GPU per worker on a cluster without one."""
    from rationalyst.executor import ExecutorConfig
    from rationalyst.lm.registry import ModelConfig

    machine = preflight.Machine(gpus=gpus, gpu_memory_gb=80, cpu_ram_gb=256, source="given")
    report = preflight.Report(machine)
    executor = ExecutorConfig(kind="ray", workers=workers, gpus_per_worker=per_worker)
    preflight._check_stage_models(report, "extract", [("extractor", ModelConfig(spec="hf:org/model-1B"))], executor, machine, {})
    assert [p.what for p in report.problems] == ["GPUs (Ray)"]
    assert "extract.executor" in report.problems[0].fix


def test_a_mixture_of_experts_name_gives_no_size():
    assert preflight._params_from_name("mistralai/Mixtral-8x7B-Instruct-v0.1") is None
    assert preflight._params_from_name("meta-llama/Meta-Llama-3-8B") == 8e9
    assert preflight._params_from_name("Qwen/Qwen3-30B-A3B") == 30e9
