"""The contamination guard (13-gram overlap of evaluation questions with training text) and the
evaluation-split rules: planted overlaps are caught, disjoint data passes, a recipe that mines its own
evaluation file is refused in seconds before any model loads."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rationalyst import pipeline
from rationalyst.config import load_config
from rationalyst.data.benchmarks import BenchmarkItem, load_benchmark
from rationalyst.data.contamination import EvalNgrams
from rationalyst.errors import ConfigError, InputError
from rationalyst.stages import guard
from rationalyst.stages.eval import BenchmarkRef, _load_items, check_split
from tests.test_pipeline import write_recipe

FIXTURES = Path(__file__).parent / "fixtures"
GSM8K = FIXTURES / "benchmarks" / "gsm8k.jsonl"

LONG = (
    "A farmer has 17 sheep and buys 5 more every spring for three years, then sells a third of the flock "
    "to a neighbour. How many sheep are left?"
)


def item(id_: str, question: str) -> BenchmarkItem:
    return BenchmarkItem(id=id_, benchmark="t", family="arithmetic", question=question, answer="1")


def test_planted_overlap_is_found_despite_case_punctuation_and_spacing():
    index = EvalNgrams([item("q1", LONG), item("q2", "What is 2 + 2?")])
    words = LONG.split()
    planted = "Forum post:   " + " ".join(words[5:18]).upper().replace(",", " ;") + " ... thanks!"
    result = index.scan([("doc-a", "Nothing to see here."), ("doc-b", planted), ("doc-c", planted)])
    assert result.overlapping == {"q1": "doc-b"} and result.texts_scanned == 3
    assert result.to_json()["ids"] == ["q1"]


def test_twelve_shared_words_are_not_an_overlap_and_short_questions_match_whole():
    index = EvalNgrams([item("q1", LONG), item("short", "What is 2 + 2?")])
    twelve = " ".join(LONG.split()[:12])
    assert index.matches(f"intro {twelve} outro") == set()
    assert index.matches("Quiz: what is 2+2? Easy.") == {"short"}
    assert index.matches("what is 2 + 3") == set()


def test_disjoint_data_reports_zero(tmp_path):
    items = load_benchmark("gsm8k", GSM8K)
    texts = [("d1", "Water boils at 100 degrees Celsius at sea level."), ("d2", "The cat sat on the mat.")]
    results = guard.check({"gsm8k": items}, texts, where="docs", allow=False, report=tmp_path / "c.json")
    assert results["gsm8k"].overlapping == {} and results["gsm8k"].items_checked == len(items)
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["benchmarks"]["gsm8k"]["overlapping"] == 0


def test_overlap_refuses_unless_allowed_and_names_the_items(tmp_path):
    items = load_benchmark("gsm8k", GSM8K)
    texts = [("mined-7", "Copied from the test: " + items[1].question)]
    with pytest.raises(guard.ContaminationError, match=rf"gsm8k: 1 of {len(items)} items \(e.g. {items[1].id} in mined-7\)"):
        guard.check({"gsm8k": items}, texts, where="docs", allow=False, report=tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["benchmarks"]["gsm8k"]["ids"] == [items[1].id]
    results = guard.check({"gsm8k": items}, texts, where="docs", allow=True)
    assert set(results["gsm8k"].overlapping) == {items[1].id}


def test_a_recipe_that_mines_its_evaluation_file_is_refused_before_any_model_loads(tmp_path):
    corpus = [{"path": str(GSM8K), "benchmark": "gsm8k"}]
    recipe = write_recipe(tmp_path, tmp_path / "run", **{"select.corpus": corpus})
    config = load_config(pipeline.PipelineConfig, recipe)
    start = time.perf_counter()
    with pytest.raises(guard.ContaminationError, match="share a 13-gram with the corpus inputs"):
        pipeline.run(config)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "run" / "select").exists()  # refused before the select stage started
    report = json.loads((tmp_path / "run" / "corpus-contamination.json").read_text())
    assert report["benchmarks"]["gsm8k"]["overlapping"] == report["benchmarks"]["gsm8k"]["items_checked"] > 0


def test_train_split_is_refused_unless_allowed(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(GSM8K.read_text())
    with pytest.raises(ConfigError, match="train split, which is mined, not evaluated on"):
        check_split(BenchmarkRef(name="gsm8k", source=str(train)))
    assert check_split(BenchmarkRef(name="gsm8k", source=str(train), allow_train_split=True)) == "train"
    assert check_split(BenchmarkRef(name="gsm8k", source="hf:openai/gsm8k")) == "test"


def test_gsm8k_default_is_the_test_split_with_a_clear_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("RATIONALYST_BENCHMARKS", str(tmp_path))
    with pytest.raises(Exception, match="hf:openai/gsm8k .*allow_train_split: true"):
        load_benchmark("gsm8k")


def test_a_benchmark_with_nothing_to_evaluate_is_an_error(tmp_path):
    empty = tmp_path / "test.jsonl"
    empty.write_text('{"id": "x", "question": "", "choices": null, "answer": "1"}\n')
    with pytest.raises(InputError, match="nothing to evaluate"):
        _load_items(BenchmarkRef(name="gsm8k", source=str(empty)))


@pytest.mark.parametrize("recipe", ["paper-llama3-8b.yaml", "paper-llama3-8b-vllm.yaml"])
def test_paper_recipes_mine_train_splits_and_evaluate_evaluation_splits(recipe):
    from importlib.resources import files

    from rationalyst.data.benchmarks import benchmark_split

    config = load_config(pipeline.PipelineConfig, Path(str(files("rationalyst") / "recipes" / recipe)))
    mined = [c for c in config.select.corpus if c.benchmark is not None]
    assert mined and all(benchmark_split(c.benchmark, c.path) == "train" for c in mined)
    assert all(benchmark_split(Path(q).parent.name, q) == "train" for q in config.select.benchmarks)
    splits = {ref.name: benchmark_split(ref.name, ref.source) for ref in config.eval.benchmarks}
    assert splits["gsm8k"] == "test" and splits["ecqa"] == "val"
    assert all(split not in (None, "train") for split in splits.values())
    assert not any(ref.allow_train_split for ref in config.eval.benchmarks) and not config.allow_contamination


def test_held_out_ids_are_evaluated_and_left_out_of_the_corpus(tmp_path):
    items = load_benchmark("gsm8k", GSM8K)
    held_out = [items[2].id, items[0].id]
    train = tmp_path / "train.jsonl"
    train.write_text(GSM8K.read_text())
    corpus = [{"path": str(train), "benchmark": "gsm8k", "exclude_ids": held_out}]
    bench = [{"name": "gsm8k", "source": str(train), "ids": held_out, "allow_train_split": True}]
    recipe = write_recipe(tmp_path, tmp_path / "run", **{"select.corpus": corpus, "eval.benchmarks": bench})
    config = load_config(pipeline.PipelineConfig, recipe)
    loaded, _ = _load_items(config.eval.benchmarks[0])
    assert [i.id for i in loaded] == held_out  # the given problems, in the given order
    pipeline._guard_corpus_inputs(config)  # the held-out problems are not mined: no overlap, no error
    report = json.loads((tmp_path / "run" / "corpus-contamination.json").read_text())
    assert report["benchmarks"]["gsm8k"]["overlapping"] == 0 and report["benchmarks"]["gsm8k"]["items_checked"] == 2
    # Without the exclusion the same recipe mines its own evaluation problems and is refused.
    leaky = write_recipe(tmp_path, tmp_path / "run", **{"select.corpus": [{"path": str(train), "benchmark": "gsm8k"}],
                                                        "eval.benchmarks": bench})
    with pytest.raises(guard.ContaminationError):
        pipeline._guard_corpus_inputs(load_config(pipeline.PipelineConfig, leaky))
    with pytest.raises(InputError, match="not in"):
        _load_items(BenchmarkRef(name="gsm8k", source=str(train), ids=["nope"], allow_train_split=True))


def test_cpu_gsm8k_recipe_holds_its_evaluation_problems_out_of_mining():
    from importlib.resources import files

    config = load_config(pipeline.PipelineConfig, Path(str(files("rationalyst") / "recipes" / "cpu-gsm8k.yaml")))
    (gsm8k,) = [c for c in config.select.corpus if c.benchmark == "gsm8k"]
    (ref,) = config.eval.benchmarks
    assert len(ref.ids) == 200 and len(set(gsm8k.exclude_ids)) == 300
    assert set(ref.ids) <= set(gsm8k.exclude_ids)
    # The dev slice (tau and settings are chosen on it): the other 100 held out, none of them reported.
    text = (files("rationalyst") / "recipes" / "cpu-gsm8k.dev-ids.txt").read_text("utf-8")
    dev = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(set(dev)) == 100 and set(dev) <= set(gsm8k.exclude_ids) and not set(dev) & set(ref.ids)


def test_a_copy_in_another_unicode_form_is_still_an_overlap():
    """é written as e + a combining accent (NFD), or fullwidth digits, are the same words."""
    import unicodedata

    question = "Le café coûte trois euros et le thé coûte deux euros de plus que prévu hier soir"
    index = EvalNgrams([BenchmarkItem(id="q1", benchmark="b", family="math", question=question, answer="x")])
    assert index.matches(unicodedata.normalize("NFD", question)) == {"q1"}
    digits = "What is the value of x if 2x + 3 = 11 and x is a positive integer number here today"
    index = EvalNgrams([BenchmarkItem(id="q2", benchmark="b", family="math", question=digits, answer="x")])
    assert index.matches(digits.replace("11", "１１")) == {"q2"}
    assert not index.matches("What is the value of y if 2y + 3 = 11 and y is a negative integer number here")
