"""Problems in lockstep (issue 13): the scheduler's engine calls on a scripted model, a problem's trace
whatever the batch on the real default model, hf's per-row seeded sampling, and a batched eval killed
mid-run that resumes with nothing lost or twice."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from rationalyst.data.benchmarks import BenchmarkItem, load_benchmark
from rationalyst.lm.base import Completion, ContinuationScore, LanguageModel, SamplingParams
from rationalyst.runs import read_records
from rationalyst.search.methods import METHODS, PROGRAMS, solve_many
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings
from rationalyst.stages import eval as eval_stage
from tests.killing import kill_when
from tests.references import trace_without_timings

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
SETTINGS = SearchSettings(
    n_candidates=3, max_steps=2, max_step_tokens=14, max_rationale_tokens=12, max_solution_tokens=40,
    self_consistency_samples=3, best_of_n=2, beam_width=2,
)


class Scripted(LanguageModel):
    """A model whose every call is logged: problem ``pK`` answers at step K (steps counted in the prompt)."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def generate(self, prompts, params):
        return self.generate_seeded(prompts, params, [params.seed] * len(prompts))

    def generate_seeded(self, prompts, params, seeds):  # a backend that seeds each row of one call
        self.calls.append(("generate", len(prompts)))
        out = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            problem = int(re.search(r"problem (\d+)", text).group(1))
            done = text.count("Step ")
            line = "The answer is 1." if done >= problem else f"Step {done} of {problem}."
            out.append([Completion(line, [1] * (1 + i), [-0.1] * (1 + i), "stop") for i in range(params.n)])
        return out

    def score_many(self, requests):
        self.calls.append(("score", len(requests)))
        return [[ContinuationScore([1] * len(c), [-0.1] * len(c)) for c in r.continuations] for r in requests]


def _problems(n: int) -> list[BenchmarkItem]:
    return [
        BenchmarkItem(id=f"p{i}", benchmark="t", family="arithmetic", question=f"problem {i % 3 + 1}: how much?",
                      choices=None, answer="1", solution=None, meta={})
        for i in range(n)
    ]


def test_each_round_is_one_engine_call_for_every_active_problem():
    items = _problems(7)  # answers after 1, 2 or 3 steps: problems finish at different rounds
    alone, together = Scripted(), Scripted()
    one = {item.id: METHODS["implicit"](item, Roles.of(alone), SETTINGS.model_copy(update={"max_steps": 5}), 0) for item in items}
    many = dict(
        (item.id, trace) for item, trace in
        solve_many("implicit", items, Roles.of(together), SETTINGS.model_copy(update={"max_steps": 5}), 0, batch_problems=4)
    )
    assert set(many) == set(one)
    for key in one:
        a, b = dict(one[key]), dict(many[key])
        a.pop("seconds"), b.pop("seconds")
        assert a == b  # every per-problem count (tokens per role included) as when it ran alone
    steps = sum(len(t["steps"]) for t in one.values())
    assert len(alone.calls) == 3 * steps  # rationale, candidates, score per step
    assert len(together.calls) < len(alone.calls) / 2.5
    assert max(rows for _, rows in together.calls) == 4  # a call carries every active problem
    assert sum(rows for kind, rows in together.calls if kind == "score") == steps


class Mixing(Scripted):
    """A backend that decodes prompts of different params in one call: its mixed calls are logged."""

    def generate_mixed(self, prompts, params):
        self.calls.append(("mixed", tuple(sorted({(p.n, p.max_new_tokens) for p in params}))))
        out = []
        for prompt, p in zip(prompts, params):
            self.calls, calls = [], self.calls
            out.extend(self.generate_seeded([prompt], p, [p.seed]))
            self.calls = calls
        return out


def test_one_engine_in_both_roles_writes_rationale_and_candidates_in_one_call():
    items = _problems(5)
    settings = SETTINGS.model_copy(update={"max_steps": 5})
    shared = Mixing()
    plain = {item.id: METHODS["implicit"](item, Roles.of(Scripted()), settings, 0) for item in items}
    for batch in (1, 3):
        shared.calls = []
        traces = {item.id: t for item, t in solve_many("implicit", items, Roles.of(shared), settings, 0, batch_problems=batch)}
        for key, trace in plain.items():
            assert {**traces[key], "seconds": None} == {**trace, "seconds": None}
        kinds = Counter(kind for kind, _ in shared.calls)
        rationale_and_candidates = ((1, settings.max_rationale_tokens), (3, settings.max_step_tokens))
        assert set(kinds) == {"mixed", "score"} and kinds["mixed"] == kinds["score"]  # 2 calls a round, not 3
        assert all(rows == rationale_and_candidates for kind, rows in shared.calls if kind == "mixed")
        if batch == 1:
            assert kinds["score"] == sum(len(t["steps"]) for t in plain.values())
    # Two engines: the agent's candidates and the rationalist's rationale are separate calls, as before.
    agent, rationalist = Mixing(), Mixing()
    traces = {item.id: t for item, t in solve_many("implicit", items, Roles.of(agent, rationalist=rationalist), settings, 0, batch_problems=3)}
    assert all({**traces[k], "seconds": None} == {**plain[k], "seconds": None} for k in plain)
    assert not any(kind == "mixed" for kind, _ in agent.calls + rationalist.calls)


class FailsOnProblem3(Scripted):
    """Raises ``error`` for any call holding problem 3 (p2 and p5 of `_problems`)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def generate_seeded(self, prompts, params, seeds):
        if any("problem 3" in (p if isinstance(p, str) else p[-1]["content"]) for p in prompts):
            raise self.error
        return super().generate_seeded(prompts, params, seeds)


def test_a_problem_whose_prompt_is_too_long_fails_alone():
    from rationalyst.errors import PromptTooLongError

    engine = FailsOnProblem3(PromptTooLongError("prompt over the context"))
    results = dict((item.id, t) for item, t in solve_many("random", _problems(6), Roles.of(engine), SETTINGS, 0, 3))
    failed = {k for k, t in results.items() if isinstance(t, Exception)}
    assert failed == {"p2", "p5"} and all(isinstance(results[k], dict) for k in set(results) - failed)


def test_an_engine_error_that_is_not_a_prompt_too_long_ends_the_batch():
    """A server down is no problem's fault: it propagates instead of failing the problems it hit."""
    from rationalyst.lm.openai_compat import ServerError

    engine = FailsOnProblem3(ServerError("cannot reach http://localhost:8000/v1 (after 4 tries)"))
    finished = []
    with pytest.raises(ServerError):
        for item, trace in solve_many("random", _problems(6), Roles.of(engine), SETTINGS, 0, 3):
            finished.append(item.id)
    assert "p2" not in finished and "p5" not in finished


class Outage:
    """The default model, but a server down (`ServerError`) for any prompt holding ``marker``."""

    def __init__(self, model, marker: str) -> None:
        self.model, self.marker = model, marker

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _check(self, prompts):
        from rationalyst.lm.openai_compat import ServerError

        if any(self.marker in str(p) for p in prompts):
            raise ServerError("http://localhost:8000/v1: HTTP 401: invalid API key")

    def generate(self, prompts, params):
        self._check(prompts)
        return self.model.generate(prompts, params)

    def generate_seeded(self, prompts, params, seeds):
        self._check(prompts)
        return self.model.generate_seeded(prompts, params, seeds)


def test_an_eval_stopped_by_a_server_down_keeps_its_traces_and_resumes_without_errors(default_model, tmp_path):
    """No problem is written as an error trace (and counted done) for an outage: the run stops with the
    finished traces saved, and a rerun solves exactly the rest."""
    from rationalyst.lm.openai_compat import ServerError
    from rationalyst.search.pool import ModelPool

    items = load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl", limit=3)
    config = eval_stage.EvalConfig(
        benchmarks=[{"name": "gsm8k", "source": str(FIXTURES / "gsm8k.jsonl"), "limit": 3, "demos": "zero-shot"}],
        methods=["cot"], output=tmp_path, search=SETTINGS.model_copy(update={"max_solution_tokens": 8}), seed=7,
        shard_size=1, batch_problems=1,
    )
    down = ModelPool()
    down.add(Outage(default_model, items[1].question[:40]))
    with pytest.raises(ServerError):
        eval_stage.run(config, down)
    written = list(read_records(tmp_path / "gsm8k" / "cot"))
    assert [t["id"] for t in written] == [items[0].id] and "error" not in written[0]
    pool = ModelPool()
    pool.add(default_model)
    (summary,) = eval_stage.run(config, pool)
    assert summary.problems == 3 and summary.errors == 0
    assert sorted(t["id"] for t in read_records(tmp_path / "gsm8k" / "cot")) == sorted(i.id for i in items)


def test_every_method_is_a_program():
    assert set(PROGRAMS) == set(METHODS)


@pytest.mark.parametrize("method", ["implicit", "self-consistency", "beam"])
def test_a_problem_s_trace_does_not_depend_on_its_batch(default_model, method):
    """hf seeds each row: batch 1 and batch 3 make the same samples, rationales and choices; scores agree
    to float rounding between batch shapes."""
    items = load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl", limit=3)
    settings = SETTINGS.model_copy(update={"max_steps": 2 if method != "beam" else 1})
    runs = {}
    for batch in (1, 3):
        runs[batch] = {i.id: t for i, t in solve_many(method, items, Roles.of(default_model), settings, 7, batch)}
    for item in items:
        one, three = runs[1][item.id], runs[3][item.id]
        assert trace_without_timings(one) == trace_without_timings(three)
        for a, b in zip(one["steps"], three["steps"]):
            assert [c.get("score") for c in a["candidates"]] == pytest.approx([c.get("score") for c in b["candidates"]], abs=1e-4)


def test_on_hf_a_problem_s_next_step_joins_while_others_decode(default_model, monkeypatch):
    """Continuous batching: a problem scored while the others still decode sends its next step into the
    running decode loop (`HFStream.add` with other problems' prompts live), and nothing waits for a
    round; the traces are those of batch 1 (the test above)."""
    from rationalyst.lm.hf_stream import HFStream

    joins = []
    add = HFStream.add

    def spy(self, prompts, params, tags):
        live = {tag[0] for tag in self.tags}
        joins.append((live, {tag[0] for tag in tags}))
        return add(self, prompts, params, tags)

    monkeypatch.setattr(HFStream, "add", spy)
    items = load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl", limit=3)
    traces = [t for _, t in solve_many("implicit", items, Roles.of(default_model), SETTINGS, 7, batch_problems=3)]
    assert len(traces) == 3 and all(isinstance(t, dict) and t["steps"] for t in traces)
    assert joins[0] == (set(), {0, 1, 2})  # the first steps of all three join together
    assert any(live and not live & joining for live, joining in joins)  # a later step joined mid-decode


def test_on_hf_a_prompt_over_the_context_fails_its_problem_alone(default_model):
    """A streamed join that one problem's prompt sinks (over the model's context) is retried problem by
    problem: that problem ends with the error, the others run on."""
    items = load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl", limit=3)
    items[1] = items[1].model_copy(update={"question": "How many? " * 3000})  # ~9,000 tokens: over 8,192
    results = {item.id: t for item, t in solve_many("implicit", items, Roles.of(default_model), SETTINGS, 7, 3)}
    assert isinstance(results[items[1].id], Exception) and "over the model's limit" in str(results[items[1].id])
    assert all(isinstance(results[i.id], dict) and results[i.id]["steps"] for i in (items[0], items[2]))


def test_hf_rows_sample_from_their_own_seed(default_model):
    prompts = ["Count: 1, 2,", "The sky is", "Once upon a time"]
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=8)
    seeds = [11, 22, 33]
    together = default_model.generate_seeded(prompts, params, seeds)
    for prompt, seed, row in zip(prompts, seeds, together):
        alone = default_model.generate([prompt], params.model_copy(update={"seed": seed}))[0]
        assert [c.token_ids for c in row] == [c.token_ids for c in alone]
    reordered = default_model.generate_seeded(prompts[::-1], params, seeds[::-1])
    assert [[c.token_ids for c in r] for r in reordered[::-1]] == [[c.token_ids for c in r] for r in together]


_CHILD = """
import sys
from pathlib import Path
from rationalyst.stages import eval as eval_stage
from rationalyst.search.settings import SearchSettings
eval_stage.run(eval_stage.EvalConfig(
    benchmarks=[{"name": "gsm8k", "source": sys.argv[1], "limit": 4}], methods=["random"], output=Path(sys.argv[2]),
    search=SearchSettings(n_candidates=2, max_steps=2, max_step_tokens=10), seed=3, shard_size=1, batch_problems=3,
))
"""


@pytest.mark.slow
def test_a_killed_batched_eval_resumes_with_nothing_lost_or_twice(tmp_path):
    out = tmp_path / "eval"
    source = str(FIXTURES / "gsm8k.jsonl")
    kill_when(_CHILD, [source, str(out)], out / "gsm8k" / "random" / "shards", count=1)
    config = eval_stage.EvalConfig(
        benchmarks=[{"name": "gsm8k", "source": source, "limit": 4}], methods=["random"], output=out,
        search=SearchSettings(n_candidates=2, max_steps=2, max_step_tokens=10), seed=3, shard_size=1,
        batch_problems=2,  # an execution field: the run resumes under another batch size
    )
    (summary,) = eval_stage.run(config)
    records = list(read_records(summary.path))
    ids = Counter(r["id"] for r in records)
    assert sorted(ids) == sorted(i.id for i in load_benchmark("gsm8k", source, limit=4)) and set(ids.values()) == {1}
    assert summary.problems == 4
    fresh = eval_stage.run(config.model_copy(update={"output": tmp_path / "fresh", "batch_problems": 4}))
    again = {r["id"]: trace_without_timings(r) for r in read_records(fresh[0].path)}
    assert {r["id"]: trace_without_timings(r) for r in records} == again


def test_engines_too_narrow_for_a_round_are_named(default_model):
    from rationalyst.lm.hf import HFModel

    eight = HFModel(default_model.model, default_model.tokenizer, name="eight", batch_size=8)
    one_engine = Roles.of(eight)
    # One engine in every role: a rationale and 2 candidates a problem in one call; scoring 2 a problem.
    assert eval_stage.narrow_engines(one_engine, 4, 2, ("rationalist", "scorer")) == [("agent+rationalist+scorer", 8, 12)]
    assert eval_stage.narrow_engines(one_engine, 4, 2, ()) == []  # random: the 8 candidates fit
    assert eval_stage.narrow_engines(one_engine, 2, 3, ("rationalist", "scorer")) == []
    apart = Roles.of(eight, rationalist=HFModel(default_model.model, default_model.tokenizer, batch_size=4))
    assert eval_stage.narrow_engines(apart, 4, 2, ("rationalist", "scorer")) == []  # 8 rows fit 8, 4 rationales fit 4
    assert eval_stage.narrow_engines(apart, 5, 2, ("rationalist", "scorer")) == [("agent+scorer", 8, 10), ("rationalist", 4, 5)]


def test_engines_whose_numbers_depend_on_the_batch_are_named(default_model):
    """bfloat16 weights round a batched matmul per batch shape (an AMX CPU: 2.32 steps a problem at batch 1,
    2.50 at 8), so eval names such an engine; float32 ones (the traces tests above) are not named."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rationalyst.lm.hf import HFModel

    tok = default_model.tokenizer
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    half = HFModel(LlamaForCausalLM(config).to(torch.bfloat16), tok, name="half")
    assert eval_stage.batch_dependent_engines(Roles.of(default_model), ("rationalist", "scorer")) == []
    mixed = Roles.of(default_model, rationalist=half)
    (named,) = eval_stage.batch_dependent_engines(mixed, ("rationalist", "scorer"))
    assert named[0] == "rationalist" and "bfloat16" in named[1]
    assert eval_stage.batch_dependent_engines(mixed, ()) == []  # random: the rationalist plays no part


@pytest.mark.slow
def test_on_the_openai_backend_a_problem_s_trace_does_not_depend_on_its_batch(default_model):
    """Against the project's own server: the openai backend seeds each request, so batch 1 and 3 agree."""
    uvicorn = pytest.importorskip("uvicorn")
    import socket
    import threading
    import time

    from rationalyst.lm import load_model
    from rationalyst.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app({"m": default_model}), port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        agent = load_model(f"openai:http://127.0.0.1:{port}/v1#m")
        items = load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl", limit=3)
        settings = SETTINGS.model_copy(update={"max_steps": 2})
        runs = {
            batch: {i.id: trace_without_timings(t) for i, t in solve_many("random", items, Roles.of(agent), settings, 5, batch)}
            for batch in (1, 3)
        }
        assert runs[1] == runs[3]
        assert all(t["steps"] and t["steps"][0]["candidates"] for t in runs[1].values())
    finally:
        server.should_exit = True
        thread.join(10)


class Canned(LanguageModel):
    """Samples ``texts`` (cycling over a call's n samples), each ended as ``finish`` says (``length``: cut by
    the token limit); scores a continuation ``score_of(text)`` a token."""

    name = "canned"

    def __init__(self, texts, score_of=lambda text: -1.0, finish="stop") -> None:
        self.texts, self.score_of, self.finish = texts, score_of, finish

    def generate(self, prompts, params):
        return self.generate_seeded(prompts, params, [params.seed] * len(prompts))

    def generate_seeded(self, prompts, params, seeds):
        return [[Completion(self.texts[i % len(self.texts)], [1], [-0.1], self.finish) for i in range(params.n)] for _ in prompts]

    def score_many(self, requests):
        return [[ContinuationScore([1] * 3, [self.score_of(c)] * 3) for c in r.continuations] for r in requests]


def _item(family: str, answer: str) -> BenchmarkItem:
    return BenchmarkItem(id="x", benchmark="t", family=family, question="How much?", answer=answer)


@pytest.mark.parametrize(("family", "gold", "solutions", "votes", "chosen"), [
    ("arithmetic", "18", ["The answer is 18.", "The answer is $18.00.", "The answer is 18.0", "The answer is 20.",
                          "The answer is 20."], [3, 3, 3, 2, 2], 0),
    ("math", "\\frac{1}{2}", ["The answer is $\\frac{1}{2}$.", "The answer is $0.5$.", "The answer is \\boxed{\\dfrac{1}{2}}",
                              "The answer is $3$.", "The answer is $3$."], [3, 3, 3, 2, 2], 0),
    ("arithmetic", "7", ["No idea.", "The answer is 7.", "The answer is 9.", "The answer is 9.", "The answer is 7."], [None, 2, 2, 2, 2], 1),
])
def test_self_consistency_counts_answers_the_grader_holds_equal_as_one(family, gold, solutions, votes, chosen):
    """18, $18.00 and 18.0 are one answer with three votes (not three answers of one vote against 20's
    two); on a tie the answer seen first wins."""
    settings = SearchSettings(self_consistency_samples=5)
    trace = METHODS["self-consistency"](_item(family, gold), Roles.of(Canned(solutions)), settings, 0)
    assert [c["score"] for c in trace["steps"][0]["candidates"]] == votes
    assert trace["correct"] and trace["steps"][0]["chosen"] == chosen


@pytest.mark.parametrize("how", ["min", "mean", "product"])
def test_best_of_n_prefers_a_solution_that_reached_an_answer(how):
    """A solution cut short before its answer scores high on min and product (fewer steps): the one that
    answered goes first, as in beam search and DVTS."""
    solutions = ["She has 3 boxes of 6 eggs.", "She has 3 boxes of 6 eggs.\n3 * 6 = 18.\nThe answer is 18."]
    model = Canned(solutions, lambda text: -0.5 if text.startswith("She") else -1.0)
    settings = SearchSettings(best_of_n=2, aggregate=how)
    trace = METHODS["best-of-n"](_item("arithmetic", "18"), Roles.of(model), settings, 0)
    step = trace["steps"][0]
    assert step["candidates"][0]["score"] > step["candidates"][1]["score"]  # the unanswered one scores higher
    assert step["chosen"] == 1 and trace["prediction"] == "18" and trace["stop_reason"] == "answer"


def _strict_json(line: str) -> dict:
    """``line`` read as strict JSON: ``-Infinity``, ``Infinity`` and ``NaN`` are refused."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def _shard_lines(run: Path) -> list[str]:
    return [line for shard in sorted((run / "shards").glob("*.jsonl")) for line in shard.read_text().splitlines()]


def test_a_best_of_n_sample_with_no_steps_is_written_as_json_with_no_score(tmp_path):
    """An empty sample aggregates to -inf, ranked last; its record says null (not -Infinity, which is no
    JSON), so the shard is strict JSON and the report builds from it."""
    from rationalyst.report import build_report
    from tests.report_fixtures import write_eval_run

    roles = Roles.of(Canned(["", "The answer is 18."]))
    trace = METHODS["best-of-n"](_item("arithmetic", "18"), roles, SearchSettings(best_of_n=2), 0)
    assert [c["score"] for c in trace["steps"][0]["candidates"]] == [None, -1.0]
    assert trace["steps"][0]["chosen"] == 1 and trace["correct"]
    run = write_eval_run(tmp_path / "gsm8k" / "best-of-n", "gsm8k", "best-of-n", [trace])
    (line,) = _shard_lines(run)
    assert _strict_json(line)["steps"][0]["candidates"][0]["score"] is None
    assert build_report(tmp_path, tmp_path / "report").html.exists()


def test_a_shard_written_with_minus_infinity_reads_back_with_none(tmp_path):
    """Shards written before scores were checked hold -Infinity (a best-of-n score, a dvts subtree score):
    they read back as None and the report builds from them."""
    from rationalyst.report import build_report
    from rationalyst.report.collect import collect
    from tests.report_fixtures import write_eval_run

    inf = -12345.5  # written as -Infinity below: the writer now refuses it, as old shards hold it
    candidates = [{"text": "", "score": inf, "tokens": 1}, {"text": "The answer is 18.", "score": -1.0, "tokens": 9}]
    record = {"id": "p1", "question": "How much?", "gold": "18", "steps": [{"rationale": None, "candidates": candidates,
              "chosen": 1, "step_scores": [[], [-1.0]]}], "solution": "The answer is 18.", "prediction": "18",
              "parsed": True, "correct": True, "stop_reason": "answer", "subtree_scores": [-1.0, inf]}
    run = write_eval_run(tmp_path / "gsm8k" / "dvts", "gsm8k", "dvts", [record])
    for shard in (run / "shards").glob("part-*.jsonl"):
        shard.write_text(shard.read_text().replace(str(inf), "-Infinity"))
    assert "-Infinity" in _shard_lines(run)[0]  # as json.dumps wrote it
    ((trace,),) = [r.traces for r in collect(tmp_path).eval_runs]
    assert [c.score for c in trace.steps[0].candidates] == [None, -1.0]
    assert trace.subtree_scores == [-1.0, None] and trace.steps[0].step_scores == [[], [-1.0]]
    assert build_report(tmp_path, tmp_path / "report").html.exists()


@pytest.mark.parametrize("method", ["cot", "self-consistency", "best-of-n"])
def test_a_solution_cut_by_the_token_limit_loses_its_unfinished_last_line(method):
    """"The answer is 1" cut by max_solution_tokens may be the start of 12 or 18: it is no answer, the
    solution is its finished lines and it stopped at the token limit."""
    model = Canned(["3 * 6 = 18.\nThe answer is 1"], finish="length")
    trace = METHODS[method](_item("arithmetic", "18"), Roles.of(model), SearchSettings(), 0)
    assert trace["solution"] == "3 * 6 = 18." and trace["stop_reason"] == "max_tokens"
    assert trace["prediction"] is None and not trace["correct"]


@pytest.mark.parametrize("method", ["cot", "self-consistency", "best-of-n"])
def test_an_uncut_solution_is_read_to_its_answer_as_before(method):
    model = Canned(["3 * 6 = 18.\nThe answer is 1"])
    trace = METHODS[method](_item("arithmetic", "18"), Roles.of(model), SearchSettings(), 0)
    assert trace["solution"] == "3 * 6 = 18.\nThe answer is 1" and trace["stop_reason"] == "answer"
    assert trace["prediction"] == "1" and not any("cut" in c for s in trace["steps"] for c in s["candidates"])


def test_sampled_solutions_cut_by_the_token_limit_are_marked_cut():
    model = Canned(["She has 3 boxes.\n3 * 6 = 1"], finish="length")
    trace = METHODS["best-of-n"](_item("arithmetic", "18"), Roles.of(model), SearchSettings(best_of_n=2), 0)
    assert trace["steps"][0]["candidates"] == [{"text": "She has 3 boxes.", "score": -1.0, "tokens": 1, "cut": True}] * 2
    assert trace["solution"] == "She has 3 boxes." and trace["stop_reason"] == "max_tokens"


class CutAnswerFirst(Canned):
    """The agent's first step is "The answer is 1", ended as ``finish`` says (``length``: cut by
    max_step_tokens), its next "The answer is 18."."""

    def generate_seeded(self, prompts, params, seeds):
        out = []
        for prompt in prompts:
            answered = "The answer is 1" in str(prompt).rsplit("How much?", 1)[-1]  # after the demos' answers
            text, finish = ("The answer is 18.", "stop") if answered else ("The answer is 1", self.finish)
            out.append([Completion(text, [1], [-0.1], finish)] * params.n)
        return out


STEP_SEARCHES = ["implicit", "random", "llm-judge", "beam", "dvts"]


@pytest.mark.parametrize("method", STEP_SEARCHES)
def test_a_step_cut_by_the_token_limit_is_chosen_but_does_not_end_the_search(method):
    """A cut "The answer is 1" may be the start of 18: it stays a candidate (here the only one), recorded
    as cut, and the search goes on to the next step's answer."""
    model = CutAnswerFirst([], finish="length")
    trace = METHODS[method](_item("arithmetic", "18"), Roles.of(model), SearchSettings(), 0)
    assert [s["candidates"][s["chosen"]]["text"] for s in trace["steps"]] == ["The answer is 1", "The answer is 18."]
    assert [[c.get("cut") for c in s["candidates"]] for s in trace["steps"]] == [[True] * 3, [None] * 3]
    assert trace["stop_reason"] == "answer" and trace["prediction"] == "18" and trace["correct"]


class CutAnswerThenTalk(Canned):
    """The agent's first step is "The answer is 1" cut by max_step_tokens, every later one a finished step
    stating no answer."""

    def generate_seeded(self, prompts, params, seeds):
        out = []
        for prompt in prompts:
            answered = "The answer is 1" in str(prompt).rsplit("How much?", 1)[-1]
            text, finish = ("She has 3 boxes.", "stop") if answered else ("The answer is 1", "length")
            out.append([Completion(text, [1], [-0.1], finish)] * params.n)
        return out


@pytest.mark.parametrize("method", STEP_SEARCHES)
def test_no_answer_is_read_from_a_step_chosen_while_cut(method):
    """A search that chose a cut "The answer is 1" (it may be the start of 18) and ran to max_steps without
    another answer has no answer: before, 1 was read from the whole solution."""
    trace = METHODS[method](_item("arithmetic", "18"), Roles.of(CutAnswerThenTalk([])), SearchSettings(max_steps=3), 0)
    chosen = [s["candidates"][s["chosen"]] for s in trace["steps"]]
    assert [c["text"] for c in chosen] == ["The answer is 1", "She has 3 boxes.", "She has 3 boxes."]
    assert [c.get("cut") for c in chosen] == [True, None, None]
    assert trace["stop_reason"] == "max_steps" and trace["solution"].startswith("The answer is 1\n")
    assert trace["prediction"] is None and not trace["parsed"] and not trace["correct"]


@pytest.mark.parametrize("method", STEP_SEARCHES)
def test_a_whole_step_that_answers_ends_the_search_as_before(method):
    trace = METHODS[method](_item("arithmetic", "18"), Roles.of(CutAnswerFirst([])), SearchSettings(), 0)
    assert [s["candidates"][s["chosen"]]["text"] for s in trace["steps"]] == ["The answer is 1"]
    assert [list(c) for c in trace["steps"][0]["candidates"]] == [["text", "score", "tokens"]] * 3
    assert trace["stop_reason"] == "answer" and trace["prediction"] == "1" and not trace["correct"]
