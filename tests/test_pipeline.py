"""`rationalyst run`: one recipe runs every stage; unchanged stages are skipped, changed ones re-run with
everything after them; a killed run resumes to exactly the uninterrupted result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rationalyst import pipeline
from rationalyst.config import config_hash, content_digest, load_config
from rationalyst.errors import RationalystError
from rationalyst.runs import RunDir, read_records, run_info, shard_paths
from rationalyst.stages import eval as eval_stage
from rationalyst.stages import extract as extract_stage
from tests.killing import kill_when

FIXTURES = Path(__file__).parent / "fixtures"


def write_recipe(tmp_path: Path, output: Path, **changes) -> Path:
    """A tiny but complete recipe on the test fixtures and the default model."""
    recipe = {
        "output": str(output),
        "select": {
            "corpus": [{"path": str(FIXTURES / "select" / "corpus.jsonl")}],
            "benchmarks": [str(FIXTURES / "select" / "questions.jsonl")],
            "threshold": 0.2,
        },
        "extract": {"max_rationales_per_doc": 2, "max_new_tokens": 24, "min_preceding_chars": 20},
        "filter": {"tau": -100.0},  # keep everything: the tiny run needs training records
        "train": {"max_steps": 2, "per_device_batch_size": 2, "max_length": 192, "dev_fraction": 0.0,
                  "logging_steps": 1, "save_steps": 1},
        "eval": {
            "benchmarks": [{"name": "gsm8k", "source": str(FIXTURES / "benchmarks" / "gsm8k.jsonl"), "limit": 2}],
            "methods": ["cot", "implicit"],
            "search": {"max_steps": 2, "max_step_tokens": 12, "max_rationale_tokens": 10, "max_solution_tokens": 30},
            "shard_size": 1,
        },
    }
    for dotted, value in changes.items():
        node = recipe
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / f"recipe-{len(list(tmp_path.glob('recipe-*')))}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def statuses(result: pipeline.PipelineResult) -> dict[str, str]:
    return {s.stage: s.status for s in result.stages}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    recipe = write_recipe(tmp, tmp / "run")
    config = load_config(pipeline.PipelineConfig, recipe)
    result = pipeline.run(config)
    # Later tests re-run stages of this run with changed settings (tau, eval): the kill tests compare with
    # the mining outputs as the first, uninterrupted run wrote them.
    mined = {stage: list(read_records(tmp / "run" / stage)) for stage in ("select", "extract", "filter")}
    return tmp, config, result, mined


def test_one_recipe_runs_every_stage_and_wires_outputs(first_run):
    tmp, config, result, _ = first_run
    assert statuses(result) == {s: "ran" for s in ("select", "extract", "filter", "train", "eval", "report")}
    assert config.extract.input == config.select.output == tmp / "run" / "select"
    assert config.eval.rationalist.spec == f"hf:{tmp / 'run' / 'train' / 'merged'}"
    assert (tmp / "run" / "train" / "merged" / "config.json").exists()
    traces = list(read_records(tmp / "run" / "eval" / "gsm8k" / "implicit"))
    assert len(traces) == 2 and all(t["steps"][0]["rationale"] is not None for t in traces)
    assert (tmp / "run" / "report" / "report.html").exists() and (tmp / "run" / "report" / "report.md").exists()
    rows = dict(pipeline.summary(config))
    assert {"documents selected", "rationales extracted", "rationales kept", "training loss",
            "gsm8k cot", "gsm8k implicit"} <= set(rows)
    state = json.loads((tmp / "run" / "pipeline.json").read_text())
    assert all(state["stages"][s]["complete"] for s in ("select", "extract", "filter", "train", "eval"))


def test_rerun_skips_finished_stages_and_a_change_reruns_only_what_follows(first_run):
    tmp, config, _, _ = first_run
    again = pipeline.run(config)
    assert statuses(again) == {**{s: "skipped" for s in ("select", "extract", "filter", "train", "eval")}, "report": "ran"}
    before = list(read_records(tmp / "run" / "eval" / "gsm8k" / "cot"))
    changed = load_config(pipeline.PipelineConfig, write_recipe(tmp, tmp / "run", **{"eval.search.max_step_tokens": 10}))
    result = pipeline.run(changed)
    assert statuses(result) == {**{s: "skipped" for s in ("select", "extract", "filter", "train")}, "eval": "ran", "report": "ran"}
    assert [t["id"] for t in read_records(tmp / "run" / "eval" / "gsm8k" / "cot")] == [t["id"] for t in before]


def test_an_added_method_runs_alone_and_finished_eval_runs_stay(first_run):
    """An edit of the eval section alone reruns only the (benchmark, method) runs whose own config
    changed: the finished cot and implicit runs are not wiped when a method is added."""
    tmp, _, _, _ = first_run
    pipeline.run(load_config(pipeline.PipelineConfig, write_recipe(tmp, tmp / "run")))
    runs = {m: tmp / "run" / "eval" / "gsm8k" / m for m in ("cot", "implicit", "random")}
    before = {m: {p.name: p.stat().st_mtime_ns for p in shard_paths(runs[m])} for m in ("cot", "implicit")}
    added = write_recipe(tmp, tmp / "run", **{"eval.methods": ["cot", "implicit", "random"]})
    result = pipeline.run(load_config(pipeline.PipelineConfig, added))
    assert statuses(result)["eval"] == "ran"
    after = {m: {p.name: p.stat().st_mtime_ns for p in shard_paths(runs[m])} for m in ("cot", "implicit")}
    assert after == before and all(before.values())
    assert len(list(read_records(runs["random"]))) == 2


def test_an_edited_solve_prompt_file_reruns_the_eval_runs_it_decides(first_run):
    """The recipe names the agent's prompt by its folder: an edit of the file re-runs the eval runs
    (not the stages before), a direct eval refuses to resume them, and an unchanged file skips eval."""
    tmp, _, _, _ = first_run
    prompts = tmp / "solve-prompts"
    prompts.mkdir(exist_ok=True)
    packaged = Path(eval_stage.__file__).parent.parent / "prompts" / "solve" / "arithmetic.yaml"
    (prompts / "arithmetic.yaml").write_text(packaged.read_text())
    bench = {"name": "gsm8k", "source": str(FIXTURES / "benchmarks" / "gsm8k.jsonl"), "limit": 2, "solve_prompts": str(prompts)}
    recipe = write_recipe(tmp, tmp / "run", **{"eval.benchmarks": [bench], "eval.methods": ["cot"]})
    assert statuses(pipeline.run(load_config(pipeline.PipelineConfig, recipe)))["eval"] == "ran"
    assert statuses(pipeline.run(load_config(pipeline.PipelineConfig, recipe)))["eval"] == "skipped"
    cot = tmp / "run" / "eval" / "gsm8k" / "cot"
    before = json.loads((cot / "config.json").read_text())["inputs"]

    edited = packaged.read_text().replace("Solve the problem step by step.", "Solve the problem carefully, step by step.")
    (prompts / "arithmetic.yaml").write_text(edited)
    config = load_config(pipeline.PipelineConfig, recipe)
    with pytest.raises(RationalystError, match="the agent's prompt changed since the run"):
        eval_stage.run(config.eval)
    result = pipeline.run(config)
    assert statuses(result) == {**{s: "skipped" for s in ("select", "extract", "filter", "train")}, "eval": "ran", "report": "ran"}
    after = json.loads((cot / "config.json").read_text())["inputs"]
    assert set(after) == set(before) == {"the agent's prompt"} and after != before
    assert len(list(read_records(cot))) == 2 and (cot / "manifest.json").exists()
    pipeline.run(load_config(pipeline.PipelineConfig, write_recipe(tmp, tmp / "run")))  # as the other tests expect


def test_an_extract_prompt_folder_is_part_of_the_extract_fingerprint(tmp_path):
    """Extract's fingerprint is its config hash alone with the packaged prompts (a recipe's fingerprint
    stays across an upgrade), and changes with the content of a prompt folder's files."""
    from rationalyst.config import config_hash
    from rationalyst.stages.extract import ExtractConfig

    packaged = ExtractConfig(input=tmp_path, output=tmp_path / "out")
    assert pipeline._section_hash("extract", packaged) == config_hash(packaged)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "math.yaml").write_text("boundary: {}\n")
    folder = packaged.model_copy(update={"prompts_dir": prompts})
    first = pipeline._section_hash("extract", folder)
    assert first != config_hash(folder) and pipeline._section_hash("extract", folder) == first
    (prompts / "math.yaml").write_text("boundary: {system: x}\n")
    assert pipeline._section_hash("extract", folder) != first


class FakeStages:
    """Stage runs that write real run directories in milliseconds, so that the pipeline's output stamps
    are real: select writes two records, filter one per record read, extract those and one per document
    extracted (its document summaries: `documents`), each eval run one, train a summary whose fingerprint is the digest of the
    records it read. As the real stages, a complete run of the same config is left as it is, and extract
    tries again the documents refused in another window (here: they succeed)."""

    def __init__(self, monkeypatch):
        from rationalyst.stages import extract, select, train
        from rationalyst.stages import filter as filter_stage

        self.calls: list[tuple[str, bool]] = []
        self.documents = [{"id": "doc-1", "status": "ok"}]
        for name, module in (("select", select), ("extract", extract), ("filter", filter_stage), ("train", train),
                             ("eval", eval_stage)):
            monkeypatch.setattr(module, "run", lambda config, *a, name=name, **k: self.run(name, config, **k))

    def run(self, name, config, refresh=False):
        from rationalyst.stages.extract import DOCUMENTS_DIR, refused_in_another_window

        self.calls.append((name, config.overwrite))
        if name == "select":
            self.write(config.output, config, [{"id": "a"}, {"id": "b"}])
        elif name == "extract":
            documents = Path(config.output) / DOCUMENTS_DIR
            if not config.overwrite and refused_in_another_window(read_records(documents), config, servers=False):
                self.documents = [{**d, "status": "ok"} for d in self.documents]
                config = config.model_copy(update={"overwrite": True})
            rationales = [*read_records(config.input), *({"id": d["id"]} for d in self.documents if d["status"] == "ok")]
            self.write(config.output, config, rationales)
            self.write(documents, config, self.documents)
        elif name == "train":
            done = Path(config.output) / "summary.json"
            if config.overwrite or not done.exists():
                (Path(config.output) / "merged").mkdir(parents=True, exist_ok=True)
                (Path(config.output) / "merged" / "config.json").write_text("{}")
                fingerprint = content_digest(list(read_records(config.input)))
                done.write_text(json.dumps({"fingerprint": fingerprint, "merged": str(Path(config.output) / "merged")}))
        elif name == "eval":
            for ref in config.benchmarks:
                for method in config.methods:
                    self.write(Path(config.output) / ref.name / method, config, [{"id": "p1"}])
        else:
            self.write(config.output, config, list(read_records(config.input)))

    @staticmethod
    def write(path, config, records):
        info = run_info(path)
        if not config.overwrite and info is not None and info[1] and info[0]["config_hash"] == config_hash(config):
            return
        run = RunDir(path, config, stage="fake", mode="overwrite")
        with run.writer() as writer:
            for record in records:
                writer.write(record)
        run.finish()


def fake_recipe(tmp_path, **changes):
    return load_config(pipeline.PipelineConfig, write_recipe(tmp_path, tmp_path / "run", report=False, **changes))


def test_a_stage_output_changed_outside_the_pipeline_reruns_what_reads_it(tmp_path, monkeypatch):
    """The pipeline keeps a stamp of each stage's output: records added to extract's output by a
    standalone run make filter, train and eval run again (extract itself resumes: it is complete);
    another config's run in filter's folder is run over, and what follows stays when that gives back
    what it read; a model deleted (a new machine) is trained again, and the eval runs stay when it
    comes back with the same fingerprint."""
    fake = FakeStages(monkeypatch)
    config = fake_recipe(tmp_path)
    assert statuses(pipeline.run(config)) == {s: "ran" for s in ("select", "extract", "filter", "train", "eval")}
    fake.calls.clear()
    assert statuses(pipeline.run(config)) == {s: "skipped" for s in ("select", "extract", "filter", "train", "eval")}
    assert fake.calls == []

    FakeStages.write(config.extract.output, config.extract.model_copy(update={"overwrite": True}),
                     [*read_records(config.extract.output), {"id": "c"}])
    result = pipeline.run(config)
    assert statuses(result) == {"select": "skipped", "extract": "resumed", "filter": "ran", "train": "ran", "eval": "ran"}
    assert fake.calls == [("extract", False), ("filter", True), ("train", True), ("eval", True)]
    assert len(list(read_records(config.filter.output))) == 4

    fake.calls.clear()
    FakeStages.write(config.filter.output, config.filter.model_copy(update={"tau": 5.0, "overwrite": True}), [{"id": "x"}])
    result = pipeline.run(config)
    # The recipe's filter run is back as it was: what train read is unchanged, so train and eval stay.
    assert fake.calls == [("filter", True)] and statuses(result)["train"] == "skipped"
    assert run_info(config.filter.output)[0]["config_hash"] == config_hash(config.filter)
    assert len(list(read_records(config.filter.output))) == 4

    fake.calls.clear()
    (config.train.output / "summary.json").unlink()
    result = pipeline.run(config)
    assert statuses(result) == {"select": "skipped", "extract": "skipped", "filter": "skipped", "train": "resumed",
                                "eval": "skipped"}
    assert fake.calls == [("train", False)]


def test_a_generated_corpus_file_deleted_is_generated_again_and_nothing_after_it_runs(tmp_path, monkeypatch):
    fake = FakeStages(monkeypatch)
    config = fake_recipe(tmp_path, generate_corpus={"documents": {"word_problems": 3}, "questions": {"word_problems": 3},
                                                    "general_text": False})
    assert statuses(pipeline.run(config))["corpus"] == "ran"
    corpus = sorted((tmp_path / "run" / "corpus").rglob("*.jsonl"))
    kept = {path: path.read_bytes() for path in corpus}
    corpus[0].unlink()
    fake.calls.clear()
    result = pipeline.run(config)
    assert statuses(result) == {"corpus": "resumed", **{s: "skipped" for s in ("select", "extract", "filter", "train", "eval")}}
    assert {path: path.read_bytes() for path in corpus} == kept and fake.calls == []


def test_a_state_without_stamps_is_taken_as_it_is_and_stamped(tmp_path, monkeypatch):
    """pipeline.json of an older version keeps no stamps: its finished stages stay finished, and their
    stamps are kept from then on."""
    fake = FakeStages(monkeypatch)
    config = fake_recipe(tmp_path)
    pipeline.run(config)
    state_file = tmp_path / "run" / "pipeline.json"
    state = json.loads(state_file.read_text())
    stamped = {stage: (entry.pop("input"), entry.pop("output")) for stage, entry in state["stages"].items()}
    assert all(output is not None for _, output in stamped.values()) and stamped["extract"][0] == stamped["select"][1]
    state_file.write_text(json.dumps(state))
    fake.calls.clear()
    assert set(statuses(pipeline.run(config)).values()) == {"skipped"} and fake.calls == []
    again = json.loads(state_file.read_text())["stages"]
    assert {stage: (entry["input"], entry["output"]) for stage, entry in again.items()} == stamped


def test_eval_starts_over_whole_when_a_stage_before_it_changed(tmp_path, monkeypatch):
    """Refresh (keep the unchanged runs) only after an edit of the eval section alone; a changed stage
    before it (another rationalist at the same path) starts every eval run over."""
    calls = []
    monkeypatch.setattr(eval_stage, "run", lambda config, pool=None, refresh=False: calls.append((config.overwrite, refresh)))
    recipe = lambda **changes: load_config(pipeline.PipelineConfig, write_recipe(tmp_path, tmp_path / "run", report=False, **changes))  # noqa: E731
    pipeline.run(recipe(), start="eval")
    pipeline.run(recipe(**{"eval.methods": ["cot", "random"]}), start="eval")
    pipeline.run(recipe(**{"eval.methods": ["cot", "random"], "filter.tau": -50.0}), start="eval")
    assert calls == [(True, False), (False, True), (True, False)]


def test_a_finished_extract_resumes_for_documents_refused_in_another_window(tmp_path, monkeypatch):
    """A raised max_model_len changes no fingerprint: a finished extract whose documents were refused as
    too long in another window resumes (to try them again) and every stage after it runs again on its
    new output; with the same window, or none refused, everything stays finished."""
    fake = FakeStages(monkeypatch)
    fake.documents = [{"id": "doc-9", "status": "too_long_for_model", "window": "max_model_len=None"}]
    recipe = lambda window=None: fake_recipe(  # noqa: E731
        tmp_path, **{"extract.model": {"spec": "builtin:smollm2-135m", "max_model_len": window}})
    pipeline.run(recipe())
    fake.calls.clear()
    assert statuses(pipeline.run(recipe())) == {s: "skipped" for s in ("select", "extract", "filter", "train", "eval")}
    assert fake.calls == []
    result = pipeline.run(recipe(window=16384))
    assert statuses(result) == {"select": "skipped", "extract": "resumed", "filter": "ran", "train": "ran", "eval": "ran"}
    assert fake.calls == [("extract", False), ("filter", True), ("train", True), ("eval", True)]
    assert [d["status"] for d in fake.documents] == ["ok"]
    fake.calls.clear()
    assert set(statuses(pipeline.run(recipe(window=16384))).values()) == {"skipped"}
    # A server's refusal: `rationalyst extract` tries it again on every run, the pipeline never (it would
    # redo every stage after extract each time).
    section = recipe().extract
    served = type(section).model_validate({**section.model_dump(), "model": {"spec": "openai:http://localhost:8000/v1"}})
    summary = {"id": "doc-9", "status": "too_long_for_model", "window": "max_model_len=None"}
    assert extract_stage.refused_in_another_window([summary], served) == {"doc-9"}
    fake.documents = [summary]
    FakeStages.write(Path(section.output) / "documents", section.model_copy(update={"overwrite": True}), [summary])
    assert not pipeline._work_left("extract", served)


def test_a_section_that_is_not_a_mapping_is_named_with_its_line(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("output: runs\nselect: 5\nextract: {}\nfilter: {}\ntrain: {}\neval: {benchmarks: [gsm8k]}\n")
    with pytest.raises(RationalystError, match="line 2, field select: Input should be a valid dictionary"):
        load_config(pipeline.PipelineConfig, recipe)


def test_one_corpus_file_not_in_a_list_stays_one_input_beside_the_generated_ones(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("output: runs\ngenerate_corpus: {}\nselect: {corpus: mydocs.jsonl, benchmarks: q.jsonl}\n"
                      "extract: {}\nfilter: {}\ntrain: {}\neval: {benchmarks: [gsm8k]}\n")
    config = load_config(pipeline.PipelineConfig, recipe)
    paths = [c.path for c in config.select.corpus]
    assert paths[0] == "mydocs.jsonl" and len(paths) == 4 and all(p.startswith("runs/corpus/") for p in paths[1:])
    assert config.select.benchmarks == ["q.jsonl", "runs/corpus/questions.jsonl"]


def test_unknown_stage_and_failing_stage_are_clear_errors(first_run, tmp_path):
    _, config, _, _ = first_run
    with pytest.raises(RationalystError, match="unknown stage 'nope'"):
        pipeline.run(config, start="nope")
    broken = load_config(pipeline.PipelineConfig, write_recipe(tmp_path, tmp_path / "run", **{"eval.benchmarks": [
        {"name": "gsm8k", "source": str(tmp_path / "missing.jsonl")}]}))
    with pytest.raises(RationalystError, match="stage eval failed") as err:
        pipeline.run(broken, start="eval")
    assert "missing.jsonl" in str(err.value)


@pytest.mark.slow
def test_a_changed_filter_reruns_filter_train_and_eval_only(first_run):
    tmp, _, _, _ = first_run
    changed = load_config(pipeline.PipelineConfig, write_recipe(tmp, tmp / "run", **{"filter.tau": -50.0}))
    result = pipeline.run(changed)
    assert statuses(result) == {"select": "skipped", "extract": "skipped", "filter": "ran", "train": "ran",
                                "eval": "ran", "report": "ran"}


_CHILD = """
from rationalyst import pipeline
from rationalyst.config import load_config
pipeline.run(load_config(pipeline.PipelineConfig, sys.argv[1]))
"""


@pytest.mark.slow
def test_pipeline_killed_in_eval_resumes_to_the_uninterrupted_traces(first_run, tmp_path):
    _, _, _, mined = first_run
    recipe = write_recipe(tmp_path, tmp_path / "killed")
    kill_when(_CHILD, [str(recipe)], tmp_path / "killed" / "eval" / "gsm8k" / "implicit" / "shards", count=1,
              write_delay=2.0, timeout=900)
    state = json.loads((tmp_path / "killed" / "pipeline.json").read_text())
    assert state["stages"]["eval"]["complete"] is False and state["stages"]["train"]["complete"] is True
    config = load_config(pipeline.PipelineConfig, recipe)
    result = pipeline.run(config)
    assert statuses(result)["train"] == "skipped" and statuses(result)["eval"] == "resumed"
    # Mining is deterministic: the same records as the first run's.
    assert list(read_records(tmp_path / "killed" / "extract")) == mined["extract"]
    # The resumed traces equal an uninterrupted eval with the same trained rationalist.
    straight = config.eval.model_copy(update={"output": tmp_path / "straight"})
    eval_stage.run(straight)
    for method in ("cot", "implicit"):
        resumed = list(read_records(tmp_path / "killed" / "eval" / "gsm8k" / method))
        reference = list(read_records(tmp_path / "straight" / "gsm8k" / method))
        # Floats to 1e-4: the resumed session scores in other batches (CPU sums differ in the 6th digit).
        assert _same([without_timing(t) for t in resumed], [without_timing(t) for t in reference]), method


def without_timing(trace: dict) -> dict:
    return {k: v for k, v in trace.items() if k != "seconds"}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["select", "extract", "filter", "train"])
def test_pipeline_killed_in_each_mining_stage_resumes_to_the_uninterrupted_records(first_run, tmp_path, stage):
    """SIGKILL while ``stage`` is writing (its first shard, or its first checkpoint), then `rationalyst run`
    again: that stage resumes its own work, the earlier ones are skipped, and every mining output equals
    the uninterrupted run's."""
    _, _, _, mined = first_run
    small_shards = {"select.shard_size": 1, "extract.shard_size": 1, "filter.shard_size": 1}  # execution fields
    recipe = write_recipe(tmp_path, tmp_path / "killed", **small_shards)
    where = tmp_path / "killed" / stage / ("checkpoints/checkpoint-1" if stage == "train" else "shards")
    if stage == "train":  # the Trainer writes checkpoints, not shards: wait for the first one's state file
        where.parent.mkdir(parents=True, exist_ok=True)
        kill_when(_CHILD, [str(recipe)], where, count=1, write_delay=0.0, timeout=900, pattern="trainer_state.json")
    else:
        kill_when(_CHILD, [str(recipe)], where, count=1, write_delay=1.0, timeout=900)
    state = json.loads((tmp_path / "killed" / "pipeline.json").read_text())
    assert state["stages"][stage]["complete"] is False
    result = pipeline.run(load_config(pipeline.PipelineConfig, recipe), stop="train")  # eval's resume: the test above
    order = ["select", "extract", "filter", "train"]
    assert statuses(result)[stage] == "resumed"
    assert all(statuses(result)[s] == "skipped" for s in order[: order.index(stage)])
    for stage_name in ("select", "extract", "filter"):  # floats to 1e-4: a resumed session batches differently
        resumed = list(read_records(tmp_path / "killed" / stage_name))
        assert _same(resumed, mined[stage_name]), stage_name
    summary = json.loads((tmp_path / "killed" / "train" / "summary.json").read_text())
    assert summary["global_step"] == 2


def _same(a, b) -> bool:
    """Equal records, floats within 1e-4 (scores computed in other batches differ by up to ~1e-5)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-4
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
