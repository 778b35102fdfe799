"""`rationalyst serve` against the `hf` backend on the same model.

The server runs as a real subprocess on a free loopback port with the default model and an API key;
it is driven with the official `openai` client and with this project's `openai:` backend, and what
comes back must equal the in-process `hf` backend (scores to 1e-4, greedy text exactly). The guided
model name is checked in process, with a small guided function that calls the default model.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from rationalyst.errors import RationalystError  # noqa: E402
from rationalyst.lm import SamplingParams, ScoreRequest, load_model  # noqa: E402
from rationalyst.lm.builtin import DEFAULT_LM, builtin_path  # noqa: E402
from rationalyst.lm.registry import ModelConfig  # noqa: E402

KEY_ENV = "RATIONALYST_TEST_SERVE_KEY"
KEY = "test-key-4f2a"
LIMIT = 64
MAX_BYTES = 20_000
CHAT = [{"role": "user", "content": "What is 17 + 25? Answer briefly."}]
CONTEXTS = ["Question: Tom has 3 apples and buys 2 more. How many apples does he have now?\nAnswer:", "Hello "]
CONTINUATIONS = [" 5", "world and café ☺ — naïve", "\n\nFirst add the numbers: 3 + 2 = 5.", "there!"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"  # a file, not a pipe nobody drains
    env = dict(os.environ, OMP_NUM_THREADS="1", **{KEY_ENV: KEY})
    command = [
        sys.executable, "-c", "from rationalyst.cli import main; main()", "serve", "--port", str(port),
        "--api-key-env", KEY_ENV, "--max-tokens-limit", str(LIMIT), "--max-request-bytes", str(MAX_BYTES),
    ]
    log_file = open(log_path, "w")
    proc = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not become ready in 120 s")
            time.sleep(0.2)
        os.environ[KEY_ENV] = KEY  # for the openai: backend in this process
        yield f"{root}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        os.environ.pop(KEY_ENV, None)
        assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60)


def _close(got, want, tol=1e-4):
    assert len(got) == len(want)
    return max((abs(a - b) for a, b in zip(got, want)), default=0.0) < tol


# ----------------------------------------------------------------------------- the official client


def test_models_and_key(base_url, client):
    assert [m.id for m in client.models.list().data] == [DEFAULT_LM]
    bad = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_official_client_echo_scores_equal_hf(client, default_model):
    context, continuation = CONTEXTS[0], CONTINUATIONS[2]
    answer = client.completions.create(
        model=DEFAULT_LM, prompt=context + continuation, echo=True, logprobs=1, max_tokens=0
    )
    lp = answer.choices[0].logprobs
    assert lp.token_logprobs[0] is None and "".join(lp.tokens) == context + continuation
    n_context = sum(1 for o, t in zip(lp.text_offset, lp.tokens) if o + len(t) <= len(context))
    (want,) = default_model.score_full_passes(context, [continuation])
    assert _close(lp.token_logprobs[n_context:], want.logprobs)
    assert answer.usage.prompt_tokens == len(lp.tokens) and answer.usage.completion_tokens == 0


def test_official_client_greedy_generation_equals_hf(client, default_model):
    greedy = SamplingParams(temperature=0, max_new_tokens=12)
    text = client.completions.create(model=DEFAULT_LM, prompt="Once upon a time", max_tokens=12, temperature=0)
    chat = client.chat.completions.create(model=DEFAULT_LM, messages=CHAT, max_tokens=12, temperature=0)
    ((want_text,),) = default_model.generate(["Once upon a time"], greedy)
    ((want_chat,),) = default_model.generate([CHAT], greedy)
    assert text.choices[0].text == want_text.text
    assert chat.choices[0].message.content == want_chat.text
    assert chat.usage.completion_tokens == len(want_chat.token_ids)


# ----------------------------------------------------------------------------- the openai: backend


def test_openai_backend_scores_equal_hf_in_text_mode(base_url, default_model):
    remote = load_model(ModelConfig(spec=f"openai:{base_url}#{DEFAULT_LM}", api_key_env=KEY_ENV))
    requests = [ScoreRequest(c, CONTINUATIONS) for c in CONTEXTS]
    for request, got in zip(requests, remote.score_many(requests)):
        for g, w in zip(got, default_model.score(request.context, request.continuations)):
            assert _close(g.logprobs, w.logprobs), (request.context, g.tokens, w.tokens)


def test_openai_backend_with_tokenizer_scores_chat_and_matches_token_ids(base_url, default_model):
    from rationalyst.lm.gguf_cache import converted_gguf

    folder = converted_gguf(builtin_path(DEFAULT_LM.removeprefix("builtin:")))
    remote = load_model(ModelConfig(spec=f"openai:{base_url}#{DEFAULT_LM}", api_key_env=KEY_ENV, tokenizer=str(folder)))
    for context in (CHAT, CONTEXTS[1]):
        got = remote.score(context, CONTINUATIONS)
        for g, w in zip(got, default_model.score(context, CONTINUATIONS)):
            assert g.token_ids == w.token_ids and g.tokens == w.tokens
            assert _close(g.logprobs, w.logprobs)


def test_openai_backend_generation_equals_hf(base_url, default_model):
    remote = load_model(f"openai:{base_url}", api_key_env=KEY_ENV)  # the server's only model
    greedy = SamplingParams(temperature=0, max_new_tokens=10, stop=("\n\n",))
    prompts = ["The capital of France is", CHAT]
    for got, want in zip(remote.generate(prompts, greedy), [default_model.generate([p], greedy)[0] for p in prompts]):
        assert got[0].text == want[0].text and got[0].finish_reason == want[0].finish_reason
        assert got[0].token_ids == want[0].token_ids
        assert _close(got[0].logprobs, want[0].logprobs)
    sampled = remote.generate(["Once upon a time"], SamplingParams(n=3, temperature=1.0, max_new_tokens=4, seed=1))
    assert len(sampled[0]) == 3 and all(len(c.token_ids) <= 4 for c in sampled[0])


def test_openai_backend_reports_a_bad_key(base_url, monkeypatch):
    monkeypatch.setenv("RATIONALYST_TEST_WRONG_KEY", "nope")
    with pytest.raises(RationalystError, match="refused the API key.*RATIONALYST_TEST_WRONG_KEY"):
        load_model(ModelConfig(spec=f"openai:{base_url}", api_key_env="RATIONALYST_TEST_WRONG_KEY"))


# ----------------------------------------------------------------------------- bad requests and load


def test_malformed_requests_get_4xx_with_a_json_error(base_url):
    auth = {"Authorization": f"Bearer {KEY}"}
    prompt = {"model": DEFAULT_LM, "prompt": "hi"}
    chat = {"model": DEFAULT_LM, "messages": CHAT}
    cases = [
        ("/completions", b"{not json", auth, 400),
        ("/completions", b"[1, 2]", auth, 400),
        ("/completions", {"prompt": "hi"}, auth, 400),  # no model
        ("/completions", {"model": DEFAULT_LM}, auth, 400),  # no prompt
        ("/completions", prompt | {"max_tokens": "many"}, auth, 400),
        ("/completions", prompt | {"max_tokens": LIMIT + 1}, auth, 400),
        ("/completions", prompt | {"temperature": -1}, auth, 400),
        ("/completions", prompt | {"n": 0}, auth, 400),
        ("/completions", prompt | {"stream": True}, auth, 400),
        ("/completions", prompt | {"prompt": []}, auth, 400),
        ("/completions", prompt | {"prompt": [999_999_999]}, auth, 400),
        ("/completions", prompt | {"model": "no-such-model"}, auth, 404),
        ("/completions", prompt | {"prompt": "x" * (MAX_BYTES + 1)}, auth, 413),
        ("/completions", prompt, {}, 401),
        ("/completions", prompt, {"Authorization": "Bearer wrong"}, 401),
        ("/chat/completions", chat | {"messages": []}, auth, 400),
        ("/chat/completions", chat | {"messages": [{"role": "robot", "content": "hi"}]}, auth, 400),
        ("/chat/completions", chat | {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, auth, 400),
        ("/chat/completions", chat | {"max_completion_tokens": LIMIT * 10}, auth, 400),
        ("/nothing-here", prompt, auth, 404),
    ]
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for path, body, headers, status in cases:
            if isinstance(body, bytes):
                response = http.post(path, content=body, headers=headers | {"content-type": "application/json"})
            else:
                response = http.post(path, json=body, headers=headers)
            assert response.status_code == status, (path, body if isinstance(body, bytes) else list(body), response.text)
            error = response.json()["error"]
            assert error["message"] and error["type"] in ("invalid_request_error", "authentication_error")
        assert http.get("/models").status_code == 401
        # Over the model's context window: the model's own error, a 400.
        long = {"model": DEFAULT_LM, "prompt": "7" * 9000, "max_tokens": 1}  # 9000 digit tokens > 8192
        response = http.post("/completions", json=long, headers=auth)
        assert response.status_code == 400 and "over the model's limit" in response.json()["error"]["message"]


def test_bounded_load_of_50_requests_8_at_a_time(client, default_model):
    context, continuation = CONTEXTS[1], CONTINUATIONS[3]
    (reference,) = default_model.score(context, [continuation])

    def one(i: int):
        if i % 3 == 0:
            answer = client.completions.create(model=DEFAULT_LM, prompt=context + continuation, echo=True,
                                               logprobs=1, max_tokens=0)
            values = answer.choices[0].logprobs.token_logprobs
            return _close(values[-len(reference.logprobs):], reference.logprobs)
        if i % 3 == 1:
            answer = client.completions.create(model=DEFAULT_LM, prompt=f"Count: {i},", max_tokens=3, temperature=0)
            return answer.choices[0].finish_reason in ("stop", "length")
        answer = client.chat.completions.create(model=DEFAULT_LM, messages=[{"role": "user", "content": f"Say {i}."}],
                                                max_tokens=3, temperature=0.7, seed=i)
        return isinstance(answer.choices[0].message.content, str)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(50)))
    assert all(results)
    assert time.monotonic() - start < 120


# ----------------------------------------------------------------------------- the guided model, in process


def test_guided_model_answers_chat_through_the_guided_function(default_model):
    from fastapi.testclient import TestClient

    from rationalyst.serve import create_app

    calls = []

    def guided(messages, params):
        calls.append((messages, params))
        return default_model.generate([messages], params)[0][0].text

    app = create_app({DEFAULT_LM: default_model}, guided=guided)
    with TestClient(app) as http:
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == [DEFAULT_LM, "rationalyst-guided"]
        answer = http.post("/v1/chat/completions", json={"model": "rationalyst-guided", "messages": CHAT,
                                                         "max_tokens": 8, "temperature": 0}).json()
        (want,) = default_model.generate([CHAT], SamplingParams(temperature=0, max_new_tokens=8))
        assert answer["choices"][0]["message"]["content"] == want[0].text
        assert calls[0][0] == CHAT and calls[0][1].max_new_tokens == 8
        refused = http.post("/v1/completions", json={"model": "rationalyst-guided", "prompt": "hi"})
        assert refused.status_code == 400 and "chat/completions only" in refused.json()["error"]["message"]
    without = TestClient(create_app({DEFAULT_LM: default_model}))
    assert [m["id"] for m in without.get("/v1/models").json()["data"]] == [DEFAULT_LM]
    assert without.post("/v1/chat/completions", json={"model": "rationalyst-guided", "messages": CHAT}).status_code == 404


def test_guided_model_answers_with_the_step_search(default_model, tmp_path):
    from rationalyst.serve.guided import build_guided
    from rationalyst.search.pool import ModelPool
    from rationalyst.search.solve import SolveConfig, solve

    recipe = tmp_path / "guided.yaml"
    recipe.write_text("method: random\nsearch:\n  max_steps: 2\n  max_step_tokens: 12\n")
    guided = build_guided(recipe, {DEFAULT_LM: default_model})
    question = "Tom has 3 apples and buys 5 more. How many apples does he have?"
    text = guided([{"role": "user", "content": question}], SamplingParams(seed=4))
    pool = ModelPool()
    pool.add(default_model)
    config = SolveConfig(method="random", seed=4, search={"max_steps": 2, "max_step_tokens": 12})
    assert text == solve(config, question, pool=pool)["solution"] and text
    with pytest.raises(RationalystError, match="needs a user message"):
        guided([{"role": "system", "content": "hi"}], SamplingParams())

class _RecordingModel:
    """A backend stand-in that records every generate call (the checks must not depend on the backend)."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, params):
        from rationalyst.lm.base import Completion

        self.calls.append(params)
        return [[Completion("x", [1], [-0.1], "length") for _ in range(params.n)] for _ in prompts]

    def score_many(self, requests):
        return [[] for _ in requests]

    def render(self, prompt):
        return prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)


@pytest.mark.parametrize("field, value, wanted", [
    ("temperature", "2.5", "less than or equal to 2"), ("temperature", "-0.1", "greater than or equal to 0"),
    ("temperature", "NaN", "finite number"), ("temperature", "Infinity", "finite number"),
    ("temperature", "true", "finite number"),
    ("top_p", "0", "greater than 0"), ("top_p", "1.5", "less than or equal to 1"), ("top_p", "NaN", "finite number"),
    ("n", "0", "greater than or equal to 1"), ("n", "-3", "greater than or equal to 1"), ("n", "17", "limit of 16"),
    ("n", "1e9", "limit of 16"), ("n", "2.5", "valid integer"), ("n", "true", "finite number"),
])
def test_out_of_range_sampling_values_are_a_400_whatever_the_backend(field, value, wanted):
    from fastapi.testclient import TestClient

    from rationalyst.serve import create_app
    from rationalyst.serve.engine import ServerLimits

    model = _RecordingModel()
    http = TestClient(create_app({"stub": model}, guided=lambda messages, params: "ok", limits=ServerLimits(max_n=16)))
    bodies = [
        ("/v1/completions", '{"model": "stub", "prompt": "hi", "max_tokens": 2'),
        ("/v1/chat/completions", '{"model": "stub", "messages": [{"role": "user", "content": "hi"}]'),
        ("/v1/chat/completions", '{"model": "rationalyst-guided", "messages": [{"role": "user", "content": "hi"}]'),
    ]
    for path, body in bodies:
        response = http.post(path, content=f'{body}, "{field}": {value}}}', headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == field and wanted in error["message"]
    assert model.calls == []
    # The edges of the ranges are served.
    for path, body in bodies:
        ok = http.post(path, content=f'{body}, "temperature": 2, "top_p": 1, "n": 16}}', headers={"content-type": "application/json"})
        assert ok.status_code == 200, ok.text
    assert [p.temperature for p in model.calls] == [2.0, 2.0] and [p.n for p in model.calls] == [16, 16]
