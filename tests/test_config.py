"""Configs: YAML + overrides, and errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rationalyst.config import config_hash, load_config
from rationalyst.errors import ConfigError
from rationalyst.search.solve import SolveConfig
from rationalyst.stages.eval import EvalConfig

RECIPES = sorted((Path(__file__).parents[1] / "src" / "rationalyst" / "recipes").glob("*.yaml"))


def _recipe_class(name: str):
    """The config each shipped recipe is for (None: an accelerate config, plain YAML)."""
    from rationalyst.pipeline import PipelineConfig
    from rationalyst.stages.train import TrainConfig

    known = {"cpu-demo.yaml": PipelineConfig, "cpu-gsm8k.yaml": PipelineConfig, "paper-llama3-8b.yaml": PipelineConfig,
             "paper-llama3-8b-vllm.yaml": PipelineConfig, "paper-train-llama3-8b.yaml": TrainConfig,
             "accelerate-fsdp.yaml": None, "accelerate-deepspeed-zero3.yaml": None}
    assert name in known, f"new recipe {name}: say here which config it is for"
    return known[name]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_every_shipped_recipe_validates(recipe):
    cls = _recipe_class(recipe.name)
    if cls is None:
        import yaml

        assert isinstance(yaml.safe_load(recipe.read_text()), dict)
    else:
        # Stage recipes leave the run's input and output to the command line.
        paths = {"input": "runs/in", "output": "runs/out"} if "input" in cls.model_fields else None
        load_config(cls, recipe, values=paths)


def test_overrides_parse_yaml_scalars_and_win_over_the_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("method: random\nsearch:\n  n_candidates: 2\n  temperature: 0.5\n")
    config = load_config(SolveConfig, path, ["search.n_candidates=5", "search.top_p=0.9", "agent.batch_size=3"])
    assert config.search.n_candidates == 5 and config.search.temperature == 0.5 and config.search.top_p == 0.9
    assert config.method == "random"
    assert config.agent.batch_size == 3 and config.agent.spec == "builtin:smollm2-135m"


def test_model_may_be_a_spec_string_or_a_mapping(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("agent: hf:/some/dir\n")
    assert load_config(SolveConfig, path).agent.spec == "hf:/some/dir"
    path.write_text("agent:\n  spec: hf:/x\n  batch_size: 2\n")
    assert load_config(SolveConfig, path).agent.batch_size == 2


def test_bad_value_names_file_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: implicit\nfamily: math\nsearch:\n  n_candidates: 2\n  temperature: hot\n")
    with pytest.raises(ConfigError) as err:
        load_config(SolveConfig, path)
    assert f"{path}, line 5, field search.temperature" in str(err.value)


def test_unknown_field_is_an_error_not_ignored(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("method: implicit\nfamily: math\nsearch:\n  temprature: 0.5\n")
    with pytest.raises(ConfigError, match=r"line 4, field search.temprature: Extra inputs"):
        load_config(SolveConfig, path)


def test_missing_field_and_bad_override_and_bad_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("output: runs/x\n")
    with pytest.raises(ConfigError, match="field benchmarks: Field required"):
        load_config(EvalConfig, path)
    with pytest.raises(ConfigError, match="command-line override, field search.n_candidates"):
        load_config(EvalConfig, path, ["benchmarks=[gsm8k]", "search.n_candidates=zero"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(EvalConfig, path, ["nonsense"])
    path.write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(SolveConfig, path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(SolveConfig, path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(SolveConfig, tmp_path / "missing.yaml")


def test_an_override_reaches_into_a_list_item(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("output: runs/x\nbenchmarks:\n  - name: gsm8k\n    limit: 5\n  - name: math\n")
    config = load_config(EvalConfig, path, ["benchmarks.1.limit=7", "benchmarks.0.demos=zero-shot"])
    assert [(b.name, b.limit, b.demos) for b in config.benchmarks] == [("gsm8k", 5, "zero-shot"), ("math", 7, "packaged")]
    with pytest.raises(ConfigError, match=r"'2' is not an index of a list of 2"):
        load_config(EvalConfig, path, ["benchmarks.2.limit=1"])
    with pytest.raises(ConfigError, match="command-line override, field benchmarks.0.limit"):
        load_config(EvalConfig, path, ["benchmarks.0.limit=0"])
    path.write_text("output: runs/x\nbenchmarks: [gsm8k]\n")
    with pytest.raises(ConfigError, match="item 0 is 'gsm8k' in the config, not a mapping"):
        load_config(EvalConfig, path, ["benchmarks.0.limit=1"])


PIPELINE_RECIPE = """output: runs/whole
select: {corpus: [{path: corpus.jsonl}], benchmarks: [questions.jsonl]}
extract: {max_new_tokens: 24}
filter: {tau: 0.5}
train: {max_steps: 2}
eval:
  benchmarks: [{name: gsm8k, limit: 4}]
  methods: [cot, implicit]
  search: {n_candidates: 2}
"""


def test_a_stage_reads_its_section_of_a_whole_run_recipe_as_the_run_wires_it(tmp_path):
    from rationalyst.cli import _stage_config
    from rationalyst.stages.filter import FilterConfig
    from rationalyst.stages.train import TrainConfig

    path = tmp_path / "run.yaml"
    path.write_text(PIPELINE_RECIPE)
    config = _stage_config(EvalConfig, path, ["output=runs/other", "benchmarks.0.limit=2"], section="eval")
    assert str(config.output) == "runs/other" and config.benchmarks[0].limit == 2
    assert config.rationalist.spec == "hf:runs/whole/train/merged"  # the model the train section makes
    assert [str(p) for p in config.training_data] == ["runs/whole/select"]  # the contamination guard's input
    assert config.methods == ["cot", "implicit"] and config.search.n_candidates == 2
    filter_config = _stage_config(FilterConfig, path, [], section="filter")
    assert (str(filter_config.input), str(filter_config.output), filter_config.tau) == ("runs/whole/extract", "runs/whole/filter", 0.5)
    assert str(_stage_config(TrainConfig, path, [], section="train").input) == "runs/whole/filter"
    path.write_text(PIPELINE_RECIPE.replace("n_candidates: 2", "n_candidates: many"))
    with pytest.raises(ConfigError, match=rf"{path} \(section eval\), line 9, field search.n_candidates"):
        _stage_config(EvalConfig, path, [], section="eval")
    # A section that is not a mapping is named as such, not read as a stage config of unknown fields.
    path.write_text(PIPELINE_RECIPE.replace("train: {max_steps: 2}", "train: runs/train-settings.yaml"))
    with pytest.raises(ConfigError, match=rf"^{path}, line 5, section train: must be a mapping of the train stage's fields, not str$"):
        _stage_config(TrainConfig, path, [], section="train")
    path.write_text(PIPELINE_RECIPE.replace("train: {max_steps: 2}", "train:"))  # empty: the defaults, as `run` reads it
    assert str(_stage_config(TrainConfig, path, [], section="train").input) == "runs/whole/filter"


def test_config_hash_changes_with_any_value():
    a = SolveConfig(method="implicit")
    assert config_hash(a) == config_hash(SolveConfig(method="implicit"))
    assert config_hash(a) != config_hash(SolveConfig(method="random"))


def test_execution_settings_do_not_change_the_hash():
    """Batch sizes and devices say how to run, not what to compute: a run stays resumable."""
    from rationalyst.stages.filter import FilterConfig

    base = FilterConfig(input="in", output="out")
    assert config_hash(base) == config_hash(FilterConfig(input="in", output="elsewhere", documents_per_batch=3, shard_size=7))
    assert config_hash(base) == config_hash(FilterConfig(input="in", output="out", scorer={"spec": "builtin:smollm2-135m", "batch_size": 2}))
    assert config_hash(base) != config_hash(FilterConfig(input="in", output="out", gamma=0.8))
    assert config_hash(base) != config_hash(FilterConfig(input="in", output="out", scorer="hf:/other"))


def test_fields_added_later_leave_the_hash_of_earlier_runs_alone_while_at_their_default():
    """A run made before `dvts_budget`, `implicit_prm_beta` and `step_format` existed keeps its hash after
    the upgrade (reference: the payload hashed by hand without them); setting one changes it."""
    import hashlib
    import json

    from rationalyst.config import config_hash
    from rationalyst.search.settings import SearchSettings

    before = {k: v for k, v in SearchSettings().model_dump().items() if k not in ("dvts_budget", "implicit_prm_beta", "step_format")}
    payload = json.dumps(before, sort_keys=True, separators=(",", ":"), default=str)
    assert config_hash(SearchSettings()) == hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert config_hash(SearchSettings(dvts_budget=12)) != config_hash(SearchSettings())
    assert config_hash(SearchSettings(implicit_prm_beta=1.0)) != config_hash(SearchSettings())
    assert config_hash(SearchSettings(step_format="paragraphs")) != config_hash(SearchSettings())


def test_an_eval_run_made_before_solve_prompts_existed_keeps_its_hash():
    """The literal was computed by the code before the field was added (commit 527f3f3): finished and
    half-done runs stay finished and resumable across the upgrade while the field is unset."""
    from rationalyst.config import config_hash
    from rationalyst.stages.eval import EvalRunConfig

    values = {"benchmark": {"name": "gsm8k", "limit": 5, "demos": "zero-shot"}, "method": "cot",
              "agent": {"spec": "builtin:smollm2-135m"}, "search": {}, "seed": 3}
    assert config_hash(EvalRunConfig.model_validate(values)) == "a02dc17a1fcd3161"
    values["benchmark"]["solve_prompts"] = "my-prompts"
    assert config_hash(EvalRunConfig.model_validate(values)) != "a02dc17a1fcd3161"


def test_a_llamacpp_window_from_512_up_hashes_as_the_default():
    """llama.cpp computes the same numbers at any n_ctx from 512 up (tests/test_llamacpp.py): raising it
    keeps a run resumable, and a run made at the default keeps the hash the code before this rule gave
    it (the literal, computed by that code at commit 533ce63); a window under 512 changes the chunks
    llama.cpp's kernels round by, and the hash."""
    from rationalyst.lm.registry import ModelConfig

    default = config_hash(ModelConfig(spec="llamacpp:builtin:qwen2.5-coder-1.5b"))
    assert default == "9f732ce2965486c5"
    for n_ctx in (512, 2048, 32768):
        assert config_hash(ModelConfig(spec="llamacpp:builtin:qwen2.5-coder-1.5b", n_ctx=n_ctx)) == default
    assert config_hash(ModelConfig(spec="llamacpp:builtin:qwen2.5-coder-1.5b", n_ctx=256)) != default
