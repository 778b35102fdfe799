"""Bad input never ends in a traceback: fuzzed JSONL, recipes and field types give clear errors or
counted skips; a full disk gives a clear message and leaves no partial shard."""

from __future__ import annotations

import errno
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationalyst import pipeline
from rationalyst.config import StrictModel, load_config
from rationalyst.data.benchmarks import load_benchmark
from rationalyst.data.corpus import read_corpus
from rationalyst.errors import ConfigError, RationalystError
from rationalyst.runs import RunDir, shard_paths
from rationalyst.stages.eval import EvalConfig

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
# Lines that look like benchmark rows with random field values, plus raw garbage.
row_lines = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={"id": json_values, "question": json_values, "answer": json_values, "choices": json_values,
                  "solution": json_values, "meta": json_values},
    ).map(json.dumps),
    st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
    st.binary(max_size=30).map(lambda b: b.decode("latin-1")).filter(lambda s: "\n" not in s and "\r" not in s),
)
GOOD_ROW = {"id": "ok-1", "question": "What is 2 + 2?", "choices": None, "answer": "4", "solution": None, "meta": {}}


@FUZZ
@given(lines=st.lists(row_lines, max_size=8))
def test_benchmark_garbage_is_skipped_and_counted(tmp_path, lines):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join([json.dumps(GOOD_ROW), *lines]) + "\n", encoding="utf-8", errors="surrogatepass")
    skipped = []
    try:
        items = load_benchmark("gsm8k", path, on_skip=lambda reason, file, line: skipped.append((reason, file, line)))
    except RationalystError:
        return  # e.g. the garbage made the file look like another benchmark: a clear, whole-file error
    # The good row is read, or (when the garbage outvotes it on the file's format) counted as skipped.
    good = [item for item in items if item.id == "ok-1"]
    assert (good and good[0].answer == "4") or any(line == 1 for _, _, line in skipped)
    assert all(isinstance(reason, str) and reason and isinstance(line, int) for reason, _, line in skipped)
    assert len(items) + len(skipped) <= 1 + len(lines)


@FUZZ
@given(lines=st.lists(row_lines, max_size=8))
def test_corpus_garbage_is_skipped_and_counted(tmp_path, lines):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join([json.dumps({"id": "d", "text": "Some text."}), *lines]) + "\n")
    skipped = []
    docs = list(read_corpus(path, on_skip=lambda *args: skipped.append(args)))
    assert docs[0].text == "Some text."
    # Every non-blank line is either a document or a counted skip, never both and never lost.
    assert len(docs) + len(skipped) == 1 + sum(bool(line.strip()) for line in "\n".join(lines).split("\n"))


def test_empty_and_huge_inputs(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert load_benchmark("gsm8k", empty) == []
    huge = tmp_path / "huge.jsonl"
    text = "word " * 400_000  # a 2 MB document
    huge.write_text(json.dumps({"id": "big", "text": text}) + "\n" + json.dumps({"id": "small", "text": "ok"}) + "\n")
    docs = list(read_corpus(huge))
    assert [d.id for d in docs] == ["big", "small"] and len(docs[0].text) == len(text)


yaml_text = st.text(alphabet=st.sampled_from(list("abc:{}[]-,'\"#\n\t 0123.")), max_size=60)


@FUZZ
@given(text=yaml_text)
def test_arbitrary_recipe_text_gives_a_config_error_or_a_config(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    try:
        load_config(pipeline.PipelineConfig, path)
    except ConfigError as exc:
        assert str(path) in str(exc)


@FUZZ
@given(field=st.sampled_from(["methods", "seed", "search", "search.n_candidates", "search.temperature",
                              "benchmarks", "agent", "agent.batch_size", "shard_size"]),
       value=json_values)
def test_wrong_field_types_name_the_line_and_field(tmp_path, field, value):
    recipe = {"output": "runs/x", "benchmarks": ["gsm8k"]}
    node = recipe
    *parents, leaf = field.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    try:
        load_config(EvalConfig, path)
    except ConfigError as exc:
        assert f"{path}, line" in str(exc) and "field" in str(exc)


class _Config(StrictModel):
    name: str = "x"


def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_shard(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run", _Config(), stage="test")
    writer = run.writer(shard_size=1000)
    for i in range(50):
        writer.write({"id": str(i), "text": "x" * 100})

    def disk_full(fd):  # the shard's bytes are written, then the disk refuses to make them durable
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(RationalystError, match="No space left on device") as err:
        writer.flush()
    assert "part-00000.jsonl" in str(err.value)
    monkeypatch.undo()
    assert shard_paths(tmp_path / "run") == []
    assert list((tmp_path / "run" / "shards").iterdir()) == []  # no temp file either
    writer.flush()  # space again: the buffered records were kept and now land whole
    assert len(list(run.records())) == 50


def test_an_unwritable_pipeline_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    state = pipeline.PipelineState(blocker / "run")
    with pytest.raises(RationalystError, match="cannot write"):
        state.start("select", "f", "start", None)


def test_missing_benchmark_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATIONALYST_BENCHMARKS", str(tmp_path / "nowhere"))
    with pytest.raises(RationalystError) as err:
        load_benchmark("gsm8k")
    assert "nowhere" in str(err.value)
