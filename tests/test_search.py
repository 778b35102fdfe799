"""Stage 5 on the real default model: traces, heuristics over the same candidates, scores checked
against a plain recomputation, resume, verify, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from importlib.resources import files

from rationalyst.data.benchmarks import load_benchmark
from rationalyst.lm import SamplingParams
from rationalyst.runs import read_records, shard_paths
from rationalyst.search import prompts
from rationalyst.search.heuristics import HEURISTICS, RATIONALE_STOP, parse_judge_rating
from rationalyst.search.methods import METHOD_ROLES, METHODS, split_steps
from rationalyst.search.pool import ModelPool
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings
from rationalyst.search.verify import aggregate, verify_steps
from rationalyst.stages import eval as eval_stage

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
# Small enough for CPU tests, big enough that heuristics have real choices to make.
SETTINGS = SearchSettings(
    n_candidates=3, max_steps=2, max_step_tokens=14, max_rationale_tokens=12, max_solution_tokens=40,
    self_consistency_samples=3, best_of_n=2, beam_width=2,
)
TRACE_FIELDS = {
    "id", "benchmark", "method", "question", "choices", "gold", "steps", "solution", "prediction", "parsed",
    "correct", "stop_reason", "tokens", "seconds",
}


@pytest.fixture(scope="module")
def items():
    return load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl", limit=3)


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory, default_model):
    """A seeded eval of 3 problems with cot, random and implicit, written through the eval stage."""
    output = tmp_path_factory.mktemp("eval")
    config = eval_stage.EvalConfig(
        benchmarks=[{"name": "gsm8k", "source": str(FIXTURES / "gsm8k.jsonl"), "limit": 3}],
        methods=["cot", "random", "implicit"], output=output, search=SETTINGS, seed=7,
    )
    pool = ModelPool()
    pool.add(default_model)
    summaries = eval_stage.run(config, pool)
    return config, summaries, {s.method: list(read_records(s.path)) for s in summaries}


def test_traces_have_every_field_and_consistent_answers(eval_run, items):
    _, summaries, traces = eval_run
    assert [s.method for s in summaries] == ["cot", "random", "implicit"]
    for method, records in traces.items():
        # Problems run in a batch and are written as each finishes: every id once, in any order.
        assert sorted(r["id"] for r in records) == sorted(item.id for item in items)
        by_id = {r["id"]: r for r in records}
        for record, item in ((by_id[item.id], item) for item in items):
            assert TRACE_FIELDS <= set(record)
            assert record["method"] == method and record["gold"] == item.answer
            assert record["parsed"] == (record["prediction"] is not None)
            assert record["correct"] is False or record["parsed"]
            assert record["stop_reason"] in {"answer", "max_steps", "no_candidates", "max_tokens"}
            assert set(record["seconds"]) >= {"agent", "rationalist", "scorer", "total"}
            assert record["tokens"]["agent"] > 0
            assert record["solution"] == "\n".join(s["candidates"][s["chosen"]]["text"] for s in record["steps"])
            for step in record["steps"]:
                assert 0 <= step["chosen"] < len(step["candidates"])
                assert all(c["text"] for c in step["candidates"])
    for summary in summaries:
        assert summary.problems == 3 and summary.correct == sum(r["correct"] for r in traces[summary.method])
        manifest = json.loads((summary.path / "manifest.json").read_text())
        assert manifest["counts"]["problems"] == 3 and manifest["stage"] == "eval"
    # Who pays: supervision only where there is a rationalist and a scorer.
    assert all(r["tokens"]["rationalist"] == 0 and r["tokens"]["scorer"] == 0 for r in traces["random"])
    assert all(r["tokens"]["rationalist"] > 0 and r["tokens"]["scorer"] > 0 for r in traces["implicit"])


def test_random_and_implicit_choose_among_the_same_candidates(eval_run):
    _, _, traces = eval_run
    implicit_by_id = {t["id"]: t for t in traces["implicit"]}
    for random_trace in traces["random"]:
        implicit_trace = implicit_by_id[random_trace["id"]]
        first_random, first_implicit = random_trace["steps"][0], implicit_trace["steps"][0]
        assert [c["text"] for c in first_random["candidates"]] == [c["text"] for c in first_implicit["candidates"]]
        assert first_random["rationale"] is None and first_implicit["rationale"]
        assert all(c["score"] is None for c in first_random["candidates"])


def check_implicit_scores(traces, items, model, separator: str, max_rationale_tokens: int) -> int:
    """Every implicit score = mean log-prob of the candidate after trajectory + rationale, by full passes,
    with the texts written out by hand: the question, each step so far followed by ``separator`` (a line
    break, or a blank line between paragraphs), the rationale as a line (paragraph) of its own. Returns
    the number of steps checked."""
    by_id = {t["id"]: t for t in traces}
    instruction = (files("rationalyst") / "prompts" / "train" / "instruction.txt").read_text("utf-8").strip()
    params = SamplingParams(max_new_tokens=max_rationale_tokens, stop=RATIONALE_STOP)
    checked = 0
    for trace, item in ((by_id[item.id], item) for item in items):
        steps_so_far: list[str] = []
        for step in trace["steps"]:
            trajectory = item.question + separator + "".join(s + separator for s in steps_so_far)
            context = trajectory + step["rationale"] + separator
            texts = [c["text"] for c in step["candidates"]]
            reference = [s.mean for s in model.score_full_passes(context, texts)]
            assert [c["score"] for c in step["candidates"]] == pytest.approx(reference, abs=1e-4)
            assert step["chosen"] == max(range(len(texts)), key=lambda j: (reference[j], -j))
            # The rationale is the rationalist's greedy output for that trajectory.
            prompt = [{"role": "user", "content": instruction + "\n\n" + trajectory.rstrip()}]
            assert model.generate([prompt], params)[0][0].text.strip() == step["rationale"]
            steps_so_far.append(texts[step["chosen"]])
            checked += 1
    return checked


def test_implicit_scores_equal_a_plain_recomputation(eval_run, items, default_model):
    _, _, traces = eval_run
    assert check_implicit_scores(traces["implicit"], items, default_model, "\n", SETTINGS.max_rationale_tokens) >= 3


def test_a_resumed_eval_redoes_only_missing_problems(eval_run, default_model):
    config, summaries, traces = eval_run
    run_path = summaries[1].path  # random
    (run_path / "manifest.json").unlink()
    shards = shard_paths(run_path)
    lines = shards[-1].read_text().splitlines()
    shards[-1].write_text("\n".join(lines[:-1]) + "\n" if len(lines) > 1 else "")
    if len(lines) == 1:
        shards[-1].unlink()
    pool = ModelPool()
    pool.add(default_model)
    again = eval_stage.run(config.model_copy(update={"methods": ["random"]}), pool)
    records = list(read_records(run_path))
    assert [r["id"] for r in records] == [r["id"] for r in traces["random"]]  # nothing lost or duplicated
    redone = records[-1]
    assert redone["steps"] == traces["random"][-1]["steps"]  # seeded: the same choices again
    assert again[0].problems == 3


@pytest.mark.parametrize("method", ["explicit", "self-ppl", "llm-judge", "self-consistency", "beam", "best-of-n"])
def test_other_methods_produce_valid_traces(items, default_model, method):
    roles = Roles.of(default_model)
    item = items[0]
    trace = METHODS[method](item, roles, SETTINGS.model_copy(update={"max_steps": 1}), 3)
    assert TRACE_FIELDS <= set(trace), method
    assert trace["method"] == method
    if method == "llm-judge":
        # Every reply the judge gave that did not parse is a candidate without a score, and only those.
        unscored = sum(c["score"] is None for step in trace["steps"] for c in step["candidates"])
        assert trace["judge_parse_failures"] == unscored
        assert trace["tokens"]["judge"] > 0
    if method == "self-consistency":
        (step,) = trace["steps"]
        answers = [prompts_answer(c["text"], item) for c in step["candidates"]]
        votes = [c["score"] for c in step["candidates"]]
        for answer, vote in zip(answers, votes):
            assert vote == (None if answer is None else float(answers.count(answer)))
        if any(v is not None for v in votes):
            assert votes[step["chosen"]] == max(v for v in votes if v is not None)
    if method == "best-of-n":
        (step,) = trace["steps"]
        for candidate, step_scores in zip(step["candidates"], step["step_scores"]):
            assert candidate["score"] == pytest.approx(aggregate(step_scores, "min"), abs=1e-5)


def prompts_answer(text, item):
    from rationalyst.data.answers import extract_answer

    return extract_answer(text, item)


def test_verify_scores_each_step_like_the_search_does(items, default_model):
    item = items[0]
    steps = ["She sold 48 / 2 = 24 clips in May.", "Altogether she sold 48 + 24 = 72 clips.", "The answer is 72."]
    verdicts = verify_steps(item, steps, Roles.of(default_model), SETTINGS, without=True)
    assert len(verdicts) == 3
    for i, verdict in enumerate(verdicts):
        context = prompts.scorer_context(item, steps[:i], verdict.rationale)
        assert verdict.score == pytest.approx(default_model.score_full_passes(context, [steps[i]])[0].mean, abs=1e-4)
        plain = prompts.scorer_context(item, steps[:i], None)
        assert verdict.score_without == pytest.approx(default_model.score_full_passes(plain, [steps[i]])[0].mean, abs=1e-4)


def test_judge_ratings_and_aggregates():
    assert parse_judge_rating("3") == 3
    assert parse_judge_rating("Rating: 2/3") == 2
    assert parse_judge_rating("I think it is good") is None
    assert parse_judge_rating("7") is None
    assert aggregate([-1.0, -3.0, -2.0], "min") == -3.0
    assert aggregate([-1.0, -3.0, -2.0], "mean") == -2.0
    assert aggregate([-1.0, -3.0, -2.0], "last") == -2.0
    assert aggregate([-1.0, -3.0, -2.0], "product") == -6.0
    assert aggregate([], "min") == float("-inf")


def test_split_steps_stops_at_the_first_final_answer(items):
    steps, stop = split_steps("A = 1.\n\nB = 2.\nThe answer is 2.\nMore text.", items[0], 15)
    assert steps == ["A = 1.", "B = 2.", "The answer is 2."] and stop == "answer"
    steps, stop = split_steps("a\nb\nc", items[0], 2)
    assert steps == ["a", "b"] and stop == "max_steps"


def test_split_steps_drops_the_unfinished_last_piece_of_a_cut_text(items):
    """A text cut by the token limit loses what follows its last line break (blank line): "= 1" may be the
    start of "= 18"; it stopped at the token limit unless an answer or max_steps came first."""
    item = items[0]
    assert split_steps("She has 3 boxes.\n3 * 6 = 1", item, 15, cut=True) == (["She has 3 boxes."], "max_tokens")
    assert split_steps("3 * 6 = 18.\nThe answer is 1", item, 15, cut=True) == (["3 * 6 = 18."], "max_tokens")
    assert split_steps("3 * 6 = 18.\nThe answer is 1", item, 15) == (["3 * 6 = 18.", "The answer is 1"], "answer")
    # cut right after a line break: every line is finished
    assert split_steps("3 * 6 = 18.\nThe answer is 18.\n", item, 15, cut=True) == (
        ["3 * 6 = 18.", "The answer is 18."], "answer")
    assert split_steps("The answer is 18.\nSo she", item, 15, cut=True) == (["The answer is 18."], "answer")
    assert split_steps("a\nb\nc", item, 2, cut=True) == (["a", "b"], "max_steps")
    assert split_steps("a\nb", item, 2, cut=True) == (["a"], "max_tokens")
    assert split_steps("The answer", item, 2, cut=True) == ([], "max_tokens")
    assert split_steps("A.\n\nThe answer is 1\n", item, None, "paragraphs", cut=True) == (["A."], "max_tokens")
    assert split_steps("A.\n\nThe answer is 18.\n\n", item, None, "paragraphs", cut=True) == (
        ["A.", "The answer is 18."], "answer")


def test_every_method_declares_the_roles_its_results_depend_on():
    assert set(METHOD_ROLES) == set(METHODS) and set(HEURISTICS) <= set(METHODS)


def test_unknown_method_is_a_clear_config_error(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        eval_stage.EvalConfig(benchmarks=["gsm8k"], methods=["nope"], output=tmp_path)


def test_a_multiple_choice_question_is_solved_without_a_gold_answer(default_model):
    """`rationalyst solve "..." --choice cat --choice dog`: no answer to check, no correctness reported."""
    from rationalyst.errors import InputError
    from rationalyst.search.solve import SolveConfig, solve

    pool = ModelPool()
    pool.add(default_model)
    config = SolveConfig(method="cot", family="multiple_choice", search=SETTINGS.model_copy(update={"max_solution_tokens": 8}))
    trace = solve(config, "Which animal barks?", ["cat", "dog"], pool=pool)
    assert trace["gold"] is None and trace["correct"] is None and trace["choices"] == ["cat", "dog"]
    with pytest.raises(InputError, match="choices: a arithmetic item has no options"):
        solve(config.model_copy(update={"family": "arithmetic"}), "Which animal barks?", ["cat", "dog"], pool=pool)


def test_verify_command_scores_each_step_and_counts_bad_records(tmp_path, default_model):
    from typer.testing import CliRunner

    from rationalyst.cli import app

    solutions = tmp_path / "solutions.jsonl"
    good = {"id": "s1", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "The answer is 5."]}
    bad = [{"id": "s2", "question": "q", "steps": []}, good, {**good, "id": 3}, {**good, "id": "s4", "choices": ["5", "6"]}]
    solutions.write_text(json.dumps(good) + "\nnot json\n" + "".join(json.dumps(r) + "\n" for r in bad))
    result = CliRunner().invoke(app, ["verify", "--input", str(solutions), "--output", str(tmp_path / "out"),
                                      "--family", "arithmetic", "--set", "search.max_rationale_tokens=12"])
    assert result.exit_code == 0, result.output
    (record,) = list(read_records(tmp_path / "out"))
    assert record["id"] == "s1" and len(record["scores"]) == len(record["rationales"]) == 2
    item = eval_stage.BenchmarkItem(id="s1", benchmark="verify", family="arithmetic", question=good["question"], answer="?")
    for i, (score, rationale) in enumerate(zip(record["scores"], record["rationales"])):
        context = prompts.scorer_context(item, good["steps"][:i], rationale)
        assert score == pytest.approx(default_model.score_full_passes(context, [good["steps"][i]])[0].mean, abs=1e-4)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == {
        "malformed JSON": 1, "steps must be a non-empty list of non-empty strings": 1, "repeated id": 1,
        "missing id": 1, "choices: a arithmetic item has no options": 1,
    }
    lines = {e["reason"]: e["line"] for e in manifest["skipped_examples"]}
    assert lines["repeated id"] == 4 and lines["choices: a arithmetic item has no options"] == 6


def test_verify_skips_and_counts_a_solution_whose_score_is_not_finite(tmp_path, monkeypatch):
    """A scorer overflowing (float16) gives NaN, which JSON cannot hold: that solution is skipped and
    counted, the others written."""
    from rationalyst.search.verify import StepVerdict
    from rationalyst.stages import verify

    def fake_verify(item, steps, roles, settings, without, verifier):
        bad = math.nan if "overflow" in item.question else -0.5
        return [StepVerdict("r", bad, -1.0) for _ in steps]

    monkeypatch.setattr(verify, "verify_steps", fake_verify)
    monkeypatch.setattr(verify.ModelPool, "roles", lambda self, config, method: None)
    solutions = tmp_path / "solutions.jsonl"
    rows = [{"id": "a", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5."]},
            {"id": "b", "question": "An overflow?", "steps": ["1 + 1 = 2."]}]
    solutions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = verify.run(verify.VerifyConfig(input=solutions, output=tmp_path / "out", family="arithmetic"))
    assert [r["id"] for r in read_records(tmp_path / "out")] == ["a"]
    assert counts["skipped"] == {"score not finite": 1}


def test_zero_shot_demos_give_the_agent_only_the_instruction_and_the_question(tmp_path, default_model, items, monkeypatch):
    from rationalyst.data.solve_prompts import format_question, load_solve_prompt

    from rationalyst.lm.hf_stream import HFStream

    seen = []
    add = HFStream.add
    monkeypatch.setattr(HFStream, "add", lambda self, p, *a: seen.extend(p) or add(self, p, *a))
    config = eval_stage.EvalConfig(
        benchmarks=[{"name": "gsm8k", "source": str(FIXTURES / "gsm8k.jsonl"), "limit": 1, "demos": "zero-shot"}],
        methods=["cot"], output=tmp_path, search=SETTINGS.model_copy(update={"max_solution_tokens": 8}), seed=7,
    )
    pool = ModelPool()
    pool.add(default_model)
    (summary,) = eval_stage.run(config, pool)
    assert summary.problems == 1
    # One user turn, instruction then question: how chat models are prompted zero-shot.
    expected = default_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": load_solve_prompt(items[0].family).instruction + "\n\n" + format_question(items[0])}],
        add_generation_prompt=True, tokenize=False,
    )
    assert seen and seen[0] == expected


def test_an_agent_s_own_prompt_file_replaces_the_packaged_one(tmp_path, default_model, items, monkeypatch):
    from rationalyst.data.solve_prompts import format_question
    from rationalyst.errors import RationalystError
    from rationalyst.lm.hf_stream import HFStream

    seen = []
    add = HFStream.add
    monkeypatch.setattr(HFStream, "add", lambda self, p, *a: seen.extend(p) or add(self, p, *a))
    own = "Please reason step by step, and put your final answer within \\boxed{}."
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "arithmetic.yaml").write_text(f"instruction: '{own}'\ndemos: []\n")
    pool = ModelPool()
    pool.add(default_model)

    def config(folder, methods=("cot",)):
        return eval_stage.EvalConfig(
            benchmarks=[{"name": "gsm8k", "source": str(FIXTURES / "gsm8k.jsonl"), "limit": 1, "demos": "zero-shot",
                         "solve_prompts": str(folder)}],
            methods=list(methods), output=tmp_path / "out", search=SETTINGS.model_copy(update={"max_solution_tokens": 8}), seed=7,
        )

    (summary,) = eval_stage.run(config(tmp_path / "prompts"), pool)
    assert summary.problems == 1
    assert seen[0] == default_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": own + "\n\n" + format_question(items[0])}], add_generation_prompt=True, tokenize=False,
    )
    seen.clear()
    with pytest.raises(RationalystError, match="elsewhere.arithmetic.yaml"):
        eval_stage.run(config(tmp_path / "elsewhere", methods=("cot", "implicit")), pool)
    assert seen == []  # failed before any problem was solved


# A chat model's zero-shot answer: paragraphs set apart by blank lines, an equation over three lines.
CHAT_SOLUTION = "First, 2 + 3 = 5.\n\n1. Then\n\\[\n5 \\times 4 = 20\n\\]\n" + "\n".join(f"{i}." for i in range(2, 20)) + "\nThe answer is \\(\\boxed{20}\\)."


@pytest.mark.parametrize("zero_shot", [True, False])
def test_cot_reads_a_zero_shot_answer_to_the_end_of_the_turn(items, default_model, zero_shot):
    from rationalyst.data.solve_prompts import load_solve_prompt
    from rationalyst.lm.base import Completion
    from rationalyst.search.methods import chain_of_thought

    solve = load_solve_prompt("arithmetic")
    roles = Roles.of(default_model, solve_prompt=solve.model_copy(update={"demos": []}) if zero_shot else solve)
    item = items[0].model_copy(update={"answer": "20"})
    program = chain_of_thought(item, roles, SETTINGS, 3)
    (call,) = program.send(None)
    with pytest.raises(StopIteration) as done:
        program.send([[Completion(CHAT_SOLUTION, [1] * 9, [0.0] * 9, "stop")]])
    trace = done.value.value
    if zero_shot:  # the whole turn, however many lines and blank lines, up to its answer
        assert call.params.stop == ()
        assert trace["correct"] and trace["prediction"] == "20" and len(trace["steps"]) == 24
    else:  # after demos a solution is one block of at most max_steps lines
        assert call.params.stop == ("\n\n",)
        assert not trace["correct"] and len(trace["steps"]) == SETTINGS.max_steps


def test_split_steps_as_paragraphs_keeps_an_equation_over_several_lines_in_one_step(items):
    item = items[0].model_copy(update={"answer": "20"})
    text = "First, 2 + 3 = 5.\n\n1. Then\n\\[\n5 \\times 4 = 20\n\\]\n  \nSo the answer is \\(\\boxed{20}\\).\n\nMore."
    steps, stop = split_steps(text, item, None, "paragraphs")
    assert steps == ["First, 2 + 3 = 5.", "1. Then\n\\[\n5 \\times 4 = 20\n\\]", "So the answer is \\(\\boxed{20}\\)."]
    assert stop == "answer"
    assert split_steps("a\nb\n\nc\n\nd", item, 2, "paragraphs") == (["a\nb", "c"], "max_steps")


PARAGRAPHS = SETTINGS.model_copy(update={"step_format": "paragraphs", "max_step_tokens": 20})


@pytest.fixture(scope="module")
def paragraph_run(tmp_path_factory, default_model):
    """Implicit with the agent zero-shot and paragraph steps, 2 problems, through the eval stage."""
    config = eval_stage.EvalConfig(
        benchmarks=[{"name": "gsm8k", "source": str(FIXTURES / "gsm8k.jsonl"), "limit": 2, "demos": "zero-shot"}],
        methods=["implicit"], output=tmp_path_factory.mktemp("paragraphs"), search=PARAGRAPHS, seed=7,
    )
    pool = ModelPool()
    pool.add(default_model)
    (summary,) = eval_stage.run(config, pool)
    return list(read_records(summary.path))


def test_paragraph_steps_are_sampled_until_a_blank_line_and_set_apart_by_one(items, default_model):
    from rationalyst.data.solve_prompts import format_question, load_solve_prompt
    from rationalyst.search.heuristics import StepContext

    solve = load_solve_prompt("arithmetic").model_copy(update={"demos": []})
    roles = Roles.of(default_model, solve_prompt=solve)
    done = ["First, 2 + 3 = 5.", "Then\n\\[\n5 \\times 4 = 20\n\\]"]
    program = StepContext(items[0], done, roles, PARAGRAPHS, 3).propose()
    (call,) = program.send(None)
    # Written out by hand: the user turn, then each step followed by a blank line.
    turn = default_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": solve.instruction + "\n\n" + format_question(items[0])}],
        add_generation_prompt=True, tokenize=False,
    )
    assert call.params.stop == ("\n\n",)
    assert call.prompt == turn + "First, 2 + 3 = 5.\n\nThen\n\\[\n5 \\times 4 = 20\n\\]\n\n"
    assert call.role == "agent"


def test_paragraph_implicit_scores_equal_a_plain_recomputation(paragraph_run, items, default_model):
    checked = check_implicit_scores(paragraph_run, items[:2], default_model, "\n\n", PARAGRAPHS.max_rationale_tokens)
    assert checked >= 2


def test_paragraph_steps_need_a_zero_shot_prompt(tmp_path):
    from rationalyst.search.solve import SolveConfig

    with pytest.raises(ValueError, match="demos: zero-shot on gsm8k"):
        eval_stage.EvalConfig(benchmarks=["gsm8k"], output=tmp_path, search={"step_format": "paragraphs"})
    with pytest.raises(ValueError, match="step_format"):
        SolveConfig(search={"step_format": "paragraphs"})
    eval_stage.EvalConfig(benchmarks=[{"name": "gsm8k", "demos": "zero-shot"}], output=tmp_path, search={"step_format": "paragraphs"})


class _OverflowsOnFirst:
    """A real scorer whose first continuation of every request scores NaN (a float16 scorer overflowing
    on it), to see where the search ranks such a candidate."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def score_many(self, requests):
        import dataclasses

        return [[dataclasses.replace(s, logprobs=[math.nan] * len(s.logprobs)) if i == 0 else s for i, s in enumerate(scores)]
                for scores in self.model.score_many(requests)]


def test_a_candidate_whose_score_is_nan_is_never_chosen_over_a_scored_one(items, default_model):
    """NaN compares false with everything, so as the first candidate it used to win every comparison's
    tie-break: it ranks below every number now, and the highest real score is chosen."""
    from rationalyst.search.batch import run_one
    from rationalyst.search.heuristics import StepContext

    settings = SearchSettings(n_candidates=3, temperature=1.0, max_step_tokens=12)
    for heuristic in ("implicit", "self-ppl"):
        roles = Roles.of(default_model, rationalist=_OverflowsOnFirst(default_model), scorer=_OverflowsOnFirst(default_model))
        decision = run_one(HEURISTICS[heuristic](StepContext(items[0], [], roles, settings, 0)), roles)
        texts = list(dict.fromkeys(c.text for c in decision.candidates))
        assert len(texts) >= 2, "the sampled candidates must differ for the test to mean anything"
        nan_text = texts[0]
        assert all(math.isnan(s) for c, s in zip(decision.candidates, decision.scores) if c.text == nan_text)
        real = [s for c, s in zip(decision.candidates, decision.scores) if c.text != nan_text]
        assert decision.candidates[decision.chosen].text != nan_text
        assert decision.scores[decision.chosen] == max(real)
