"""The server's batcher (issue 13): concurrent generation requests share engine calls, each answered as
if alone, and a full queue is a 503 at once."""

from __future__ import annotations

import threading
import time

import pytest

from rationalyst.errors import RationalystError
from rationalyst.lm.base import Completion, LanguageModel, SamplingParams
from rationalyst.lm.openai_compat import ServerError
from rationalyst.serve.engine import ApiError, Batcher, ServerLimits


class Slow(LanguageModel):
    """Answers each prompt with its own text and seed; every engine call takes a while."""

    name = "slow"

    def __init__(self, delay: float = 0.05) -> None:
        self.delay, self.calls = delay, []

    def generate(self, prompts, params):
        return self.generate_seeded(prompts, params, [params.seed] * len(prompts))

    def generate_seeded(self, prompts, params, seeds):
        self.calls.append(len(prompts))
        time.sleep(self.delay)
        if any(p == "bad" for p in prompts):
            raise RationalystError("prompt over the context")
        if any(p == "upstream" for p in prompts):
            raise ServerError("cannot reach http://localhost:8000/v1 (after 4 tries)")
        return [[Completion(f"{p}/{s}", [1], [0.0], "stop")] * params.n for p, s in zip(prompts, seeds)]

    def score_many(self, requests):
        raise NotImplementedError


def _concurrently(batcher, prompts, params, limits):
    answers: dict[str, object] = {}

    def ask(prompt):
        try:
            answers[prompt] = batcher.generate([prompt], params.model_copy(update={"seed": len(prompt)}), limits)
        except ApiError as exc:
            answers[prompt] = exc

    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return answers


def test_requests_that_arrive_together_share_an_engine_call():
    model = Slow()
    batcher = Batcher(model, threading.Lock())
    prompts = [f"q{i}" * (i + 1) for i in range(8)]
    answers = _concurrently(batcher, prompts + ["bad"], SamplingParams(temperature=1.0), ServerLimits(batch_window_s=0.3))
    for p in prompts:  # each request's own prompt and seed, whatever it was batched with
        assert answers[p][0][0].text == f"{p}/{len(p)}"
    assert isinstance(answers["bad"], ApiError) and answers["bad"].status == 400
    # All nine went out in one engine call; it failed on "bad", so each was retried alone.
    assert model.calls[0] == len(prompts) + 1 and sorted(model.calls[1:]) == [1] * (len(prompts) + 1)
    model.calls.clear()
    answers = _concurrently(batcher, prompts, SamplingParams(temperature=1.0), ServerLimits(batch_window_s=0.3))
    assert model.calls == [len(prompts)] and all(answers[p][0][0].text == f"{p}/{len(p)}" for p in prompts)


class SlowMixing(Slow):
    """A backend that decodes prompts with different params in one call (as hf does)."""

    def generate_mixed(self, prompts, params):
        self.calls.append(("mixed", len(prompts)))
        time.sleep(self.delay)
        return [[Completion(f"{p}/{q.seed}/{q.max_new_tokens}", [1], [0.0], "stop")] * q.n for p, q in zip(prompts, params)]


def test_requests_with_different_params_share_one_engine_call():
    model = SlowMixing()
    batcher = Batcher(model, threading.Lock())
    answers: dict[str, object] = {}

    def ask(prompt, tokens, n):
        answers[prompt] = batcher.generate([prompt], SamplingParams(temperature=1.0, n=n, max_new_tokens=tokens, seed=len(prompt)), ServerLimits(batch_window_s=0.3))

    threads = [threading.Thread(target=ask, args=(f"q{i}" * (i + 1), 8 + i % 3, 1 + i % 2)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert model.calls == [("mixed", 6)]  # three limits, two n: still one call
    for i in range(6):
        prompt = f"q{i}" * (i + 1)
        assert [c.text for c in answers[prompt][0]] == [f"{prompt}/{len(prompt)}/{8 + i % 3}"] * (1 + i % 2)


def test_a_request_is_a_400_but_an_upstream_server_down_a_502():
    """The client's fault (a prompt the model refuses) is a 400; a backend server that fails is a 502,
    which a client may retry."""
    batcher = Batcher(Slow(delay=0.0), threading.Lock())
    answers = _concurrently(batcher, ["bad", "upstream"], SamplingParams(), ServerLimits())
    assert answers["bad"].status == 400 and "over the context" in answers["bad"].message
    assert answers["upstream"].status == 502 and answers["upstream"].type == "server_error"


def test_a_full_queue_is_a_503():
    batcher = Batcher(Slow(delay=0.3), threading.Lock())
    answers = _concurrently(batcher, [f"p{i}" for i in range(6)], SamplingParams(), ServerLimits(max_queued=2))
    refused = [a for a in answers.values() if isinstance(a, ApiError)]
    assert refused and all(a.status == 503 and "busy" in a.message for a in refused)
    assert len(refused) < 6


def test_on_hf_requests_join_the_decode_loop_as_they_arrive(default_model, monkeypatch):
    """Continuous batching in the server: requests that arrive while others decode join the running loop
    (`HFStream.add` with other requests' prompts live); each answer equals the request made alone, a
    request over the context gets its 400, and the others are not disturbed."""
    from rationalyst.lm.hf_stream import HFStream

    joined_live = []
    add = HFStream.add

    def spy(self, prompts, params, tags):
        joined_live.append(bool(self.tags))
        return add(self, prompts, params, tags)

    monkeypatch.setattr(HFStream, "add", spy)
    requests = [
        (["Count: 1, 2, 3,"], SamplingParams(max_new_tokens=20)),
        (["The sky is", "Once upon a time"], SamplingParams(n=2, temperature=0.9, max_new_tokens=12, seed=4)),
        (["Name three colours:"], SamplingParams(max_new_tokens=8, stop=("\n",))),
        (["How many? " * 3000], SamplingParams(max_new_tokens=4)),  # over the model's 8,192 positions
        (["Tell me a story about a dragon"], SamplingParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=7)),
    ]
    batcher = Batcher(default_model, threading.Lock())
    answers: dict[int, object] = {}

    def ask(k):
        time.sleep(0.4 * k)  # staggered: later requests arrive while the first ones decode
        try:
            answers[k] = batcher.generate(*requests[k], ServerLimits())
        except ApiError as exc:
            answers[k] = exc

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert isinstance(answers[3], ApiError) and answers[3].status == 400
    for k, (prompts, params) in enumerate(requests):
        if k == 3:
            continue
        # The server seeds prompt i of a request seed + i * n (no two samples share a seed on any engine).
        seeds = [None if params.seed is None else params.seed + i * params.n for i in range(len(prompts))]
        alone = default_model.generate_seeded(prompts, params, seeds)
        assert [[c.token_ids for c in row] for row in answers[k]] == [[c.token_ids for c in row] for row in alone]
    assert any(joined_live)  # some request joined while others were decoding


def test_guided_requests_that_arrive_together_are_solved_in_one_lockstep_search(default_model, tmp_path):
    """Three clients at once: one batched search, each answer the one `rationalyst solve` gives alone."""
    from rationalyst.lm.builtin import DEFAULT_LM
    from rationalyst.search.pool import ModelPool
    from rationalyst.search.solve import SolveConfig, solve
    from rationalyst.serve.engine import GuidedModel, ServedModel
    from rationalyst.serve.guided import build_guided
    from rationalyst.serve.protocol import ChatCompletionRequest

    recipe = tmp_path / "guided.yaml"
    recipe.write_text("method: implicit\nsearch:\n  max_steps: 2\n  max_step_tokens: 8\n  max_rationale_tokens: 6\n")
    served = ServedModel(DEFAULT_LM, default_model)
    guided = GuidedModel("rationalyst-guided", build_guided(recipe, {DEFAULT_LM: default_model}), [served])
    questions = ["Tom has 3 apples and buys 5 more. How many apples?", "What is 12 minus 7?", "Ann has 4 pens and loses 1."]
    limits = ServerLimits(batch_window_s=0.5)
    answers: dict[int, object] = {}

    def ask(i):
        req = ChatCompletionRequest(model="rationalyst-guided", messages=[{"role": "user", "content": questions[i]}],
                                    seed=10 + i)
        answers[i] = guided.chat(req, limits).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert guided.batcher.batches == 1
    pool = ModelPool()
    pool.add(default_model)
    for i, question in enumerate(questions):
        config = SolveConfig(method="implicit", seed=10 + i, search={"max_steps": 2, "max_step_tokens": 8, "max_rationale_tokens": 6})
        assert answers[i] == solve(config, question, pool=pool)["solution"], i
    with pytest.raises(ApiError, match="needs a user message"):
        guided.chat(ChatCompletionRequest(model="rationalyst-guided", messages=[{"role": "system", "content": "x"}]), limits)


class _JoinStream:
    """A decode loop like `HFStream`'s: prompts join, each finishes after a few steps; the prompt
    "explode" makes ``add`` raise a plain ValueError (as a torch seeding error would)."""

    def __init__(self) -> None:
        self.pending: list = []

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def add(self, prompts, params, tags):
        if any("explode" in str(p) for p in prompts):
            raise ValueError("Overflow when unpacking long")
        self.pending += [[tag, p, 10] for tag, p in zip(tags, params)]

    def step(self):
        time.sleep(0.02)
        for row in self.pending:
            row[2] -= 1
        done = [row for row in self.pending if row[2] <= 0]
        self.pending = [row for row in self.pending if row[2] > 0]
        return [(tag, [Completion("ok", [1], [0.0], "stop")] * p.n, 0.0) for tag, p, _ in done]


class _Streaming(LanguageModel):
    name = "streaming"

    def open_stream(self):
        return _JoinStream()

    def generate(self, prompts, params):
        raise AssertionError("a model with a stream is served through it")

    def score_many(self, requests):
        raise NotImplementedError


def test_a_request_that_cannot_join_the_decode_loop_fails_alone_and_frees_its_place():
    """Only that request fails (500): the ones decoding beside it finish, and its queued rows are
    released, so the idle server does not answer 503 afterwards. A seed no engine takes is a 400."""
    from fastapi.testclient import TestClient

    from rationalyst.serve import create_app

    http = TestClient(create_app({"streaming": _Streaming()}), raise_server_exceptions=False)
    answers: dict[str, object] = {}

    def ask(key, content, delay, **extra):
        time.sleep(delay)
        body = {"model": "streaming", "messages": [{"role": "user", "content": content}], "temperature": 1.0, **extra}
        answers[key] = http.post("/v1/chat/completions", json=body).status_code

    threads = [threading.Thread(target=ask, args=("beside", "hi", 0.0)),
               threading.Thread(target=ask, args=("bad", "explode", 0.05))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert answers == {"beside": 200, "bad": 500}
    # 16 prompts x 16 samples fill the queue's 256 rows exactly: a row the failed request left would make it a 503.
    full = {"model": "streaming", "prompt": ["hi"] * 16, "n": 16, "temperature": 1.0, "max_tokens": 4}
    assert http.post("/v1/completions", json=full).status_code == 200
    ask("huge seed", "hi", 0.0, seed=2**64)
    assert answers["huge seed"] == 400


def test_a_request_over_the_queue_limit_is_a_400_not_a_retry_later():
    batcher = Batcher(Slow(delay=0.0), threading.Lock())
    with pytest.raises(ApiError) as refused:
        batcher.generate([f"p{i}" for i in range(5)], SamplingParams(n=3), ServerLimits(max_queued=12))
    assert refused.value.status == 400 and "15 sequences" in refused.value.message
    assert batcher.generate(["p"], SamplingParams(n=3), ServerLimits(max_queued=12))
