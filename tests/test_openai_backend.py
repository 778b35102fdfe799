"""The `openai` backend's HTTP behaviour against scripted servers (httpx.MockTransport).

Retries, backoff, key errors, the refused-field fallbacks and the echo alignment are checked here
without a model; `test_serve.py` drives the backend against the real `rationalyst serve`.
"""

from __future__ import annotations

import json

import httpx
import pytest

from rationalyst.errors import RationalystError
from rationalyst.lm import SamplingParams, ScoreRequest, load_model
from rationalyst.lm.openai_compat import (
    OpenAIClient,
    OpenAIModel,
    ServerError,
    parse_spec,
    text_mode_context_tokens,
)

BASE = "http://127.0.0.1:9/v1"


PROBE = "The capital of France is"


def _is_probe(payload: dict) -> bool:
    return "echo" not in payload and payload.get("prompt") == PROBE and payload.get("max_tokens") == 1


def _model(handler, probe: bool = False, **client_options) -> tuple[OpenAIModel, list[dict]]:
    """A backend whose server is ``handler(request_json, path) -> (status, body)``; records requests.
    The echo check's probe is answered here without log-probs (inconclusive) unless ``probe``: then
    ``handler`` sees it too."""
    seen: list[dict] = []

    def respond(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content) if request.content else {}
        if not probe and _is_probe(payload):
            return httpx.Response(200, json={"choices": [{"index": 0, "text": " Paris", "logprobs": None}]})
        seen.append({"path": request.url.path, "json": payload, "auth": request.headers.get("authorization")})
        result = handler(payload, request.url.path)
        if isinstance(result, Exception):
            raise result
        status, body = result
        return httpx.Response(status, json=body)

    options = dict(backoff_s=0.0, max_retries=3) | client_options
    client = OpenAIClient(BASE, transport=httpx.MockTransport(respond), **options)
    return OpenAIModel(client, "m", concurrency=4), seen


def _echo_body(tokens, logprobs, prompt_tokens=None):
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    body = {
        "choices": [{"index": 0, "text": "".join(tokens), "finish_reason": "length",
                     "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "text_offset": offsets,
                                  "top_logprobs": [None] * len(tokens)}}],
    }
    if prompt_tokens is not None:
        body["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}
    return body


def test_spec_forms():
    assert parse_spec("http://h:8000/v1/#meta-llama/Llama-3") == ("http://h:8000/v1", "meta-llama/Llama-3")
    assert parse_spec("https://h/v1") == ("https://h/v1", None)
    with pytest.raises(RationalystError, match="expected openai:http"):
        parse_spec("h:8000/v1#m")
    with pytest.raises(RationalystError, match="bad model spec"):
        load_model("openai:")


def test_retries_5xx_and_connection_errors_then_succeeds():
    script = [
        httpx.ConnectError("refused"),
        (503, {"error": {"message": "busy"}}),
        (500, {"error": {"message": "oops"}}),
        (200, {"choices": [{"index": 0, "text": " ok", "finish_reason": "stop",
                            "logprobs": {"tokens": ["token_id:5"], "token_logprobs": [-0.5]}}]}),
    ]
    model, seen = _model(lambda payload, path: script[len(seen) - 1])
    (completions,) = model.generate(["hi"], SamplingParams(max_new_tokens=3))
    assert len(seen) == 4
    assert completions[0].text == " ok" and completions[0].token_ids == [5] and completions[0].logprobs == [-0.5]
    assert completions[0].finish_reason == "stop"


def test_retries_are_bounded():
    model, seen = _model(lambda payload, path: (502, {"error": {"message": "bad gateway"}}), max_retries=2)
    with pytest.raises(ServerError, match="HTTP 502: bad gateway"):
        model.generate(["hi"], SamplingParams())
    assert len(seen) == 3
    model, seen = _model(lambda payload, path: httpx.ConnectError("refused"), max_retries=1)
    with pytest.raises(ServerError, match="cannot reach .*after 2 tries"):
        model.generate(["hi"], SamplingParams())


@pytest.mark.parametrize("error", [httpx.ConnectTimeout("slow connect"), httpx.PoolTimeout("no free connection")])
def test_failures_to_connect_are_retried(error):
    """Nothing was sent: sending again cannot run the request twice."""
    model, seen = _model(lambda payload, path: error, max_retries=2)
    with pytest.raises(ServerError, match="cannot reach .*after 3 tries"):
        model.generate(["hi"], SamplingParams())
    assert len(seen) == 3


@pytest.mark.parametrize("error, message", [
    (httpx.ReadTimeout("timed out"), r"did not answer within 7 s \(ReadTimeout\).*raise the model's timeout_s"),
    (httpx.RemoteProtocolError("Server disconnected"), "connection to .* failed after the request was sent"),
])
def test_a_request_the_server_took_is_not_sent_again(error, message):
    """A read timeout is a slow server still generating: sending the POST again made it run four times."""
    model, seen = _model(lambda payload, path: error, max_retries=3, timeout_s=7)
    with pytest.raises(ServerError, match=message):
        model.generate(["hi"], SamplingParams())
    assert len(seen) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_key_errors_name_the_variable_and_are_not_retried(status):
    model, seen = _model(lambda payload, path: (status, {"error": {"message": "no"}}), api_key_env="MY_KEY")
    with pytest.raises(ServerError, match=rf"refused the API key \(HTTP {status}: no\).*MY_KEY"):
        model.score("a", ["b"])
    assert len(seen) == 1


def test_client_errors_are_not_retried_and_quote_the_server():
    model, seen = _model(lambda payload, path: (404, {"error": {"message": "model m does not exist"}}))
    with pytest.raises(ServerError, match="HTTP 404: model m does not exist"):
        model.generate(["hi"], SamplingParams())
    assert len(seen) == 1


@pytest.mark.parametrize("message", [
    "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",  # vLLM, OpenAI
    "the request exceeds the available context size, try increasing it",  # llama.cpp's server
    "Requested tokens (5000) exceed context window of 4096",  # llama-cpp-python's server
])
def test_a_prompt_over_the_server_s_context_is_told_apart_from_other_refusals(message):
    """Only a context overflow is the prompt's fault (a stage skips that item); other 400s stop the run."""
    from rationalyst.errors import PromptTooLongError

    model, seen = _model(lambda payload, path: (400, {"error": {"message": message}}))
    with pytest.raises(PromptTooLongError, match="HTTP 400"):
        model.generate(["hi"], SamplingParams())
    other, _ = _model(lambda payload, path: (400, {"error": {"message": "unknown field: best_of"}}))
    with pytest.raises(ServerError) as refused:
        other.generate(["hi"], SamplingParams())
    assert not isinstance(refused.value, PromptTooLongError)


def test_api_key_is_sent_as_bearer_token():
    def handler(payload, path):
        return 200, {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}

    model, seen = _model(handler, api_key="sekret")
    model.generate(["hi"], SamplingParams())
    assert seen[0]["auth"] == "Bearer sekret"


def test_request_fields_and_chat_routing():
    def handler(payload, path):
        if path.endswith("/chat/completions"):
            choices = [{"index": i, "message": {"role": "assistant", "content": f"c{i}"}, "finish_reason": "length",
                        "logprobs": {"content": [{"token": "token_id:7", "logprob": -1.0}]}} for i in range(2)]
        else:
            choices = [{"index": i, "text": f"t{i}", "finish_reason": "stop"} for i in (1, 0)]
        return 200, {"choices": choices}

    model, seen = _model(handler)
    params = SamplingParams(n=2, temperature=0.7, top_p=0.9, max_new_tokens=5, stop=("\n",), seed=10)
    results = model.generate(["a", [{"role": "user", "content": "b"}]], params)
    by_path = {r["path"]: r["json"] for r in seen}
    text, chat = by_path["/v1/completions"], by_path["/v1/chat/completions"]
    assert text["prompt"] == "a" and text["logprobs"] == 1 and text["seed"] == 10
    # Prompt 1 is seeded after prompt 0's two samples (seed + 1 * n).
    assert chat["messages"] == [{"role": "user", "content": "b"}] and chat["logprobs"] is True and chat["seed"] == 12
    for payload in (text, chat):
        assert payload["model"] == "m" and payload["n"] == 2 and payload["max_tokens"] == 5
        assert payload["temperature"] == 0.7 and payload["top_p"] == 0.9 and payload["stop"] == ["\n"]
    assert [c.text for c in results[0]] == ["t0", "t1"]  # ordered by index
    assert [c.text for c in results[1]] == ["c0", "c1"] and results[1][0].token_ids == [7]
    assert results[1][0].finish_reason == "length"


def test_refused_token_id_flag_is_dropped_once():
    def handler(payload, path):
        if "return_tokens_as_token_ids" in payload:
            return 400, {"error": {"message": "Unrecognized request argument: return_tokens_as_token_ids"}}
        return 200, {"choices": [{"index": 0, "text": "x", "finish_reason": "stop",
                                  "logprobs": {"tokens": ["x"], "token_logprobs": [-0.1]}}]}

    model, seen = _model(handler)
    (first,) = model.generate(["a"], SamplingParams())
    assert first[0].text == "x" and first[0].token_ids == [] and first[0].logprobs == [-0.1]
    model.generate(["b"], SamplingParams())
    assert ["return_tokens_as_token_ids" in r["json"] for r in seen] == [True, False, False]


def test_echo_scoring_in_text_mode_skips_special_token_text():
    """vLLM spells a BOS as text before the prompt; the boundary is found after it."""
    tokens = ["<|begin_of_text|>", "The", " capital", " is", " Paris", "."]
    values = [None, -1.0, -2.0, -3.0, -0.5, -0.25]

    def handler(payload, path):
        assert payload["echo"] is True and payload["logprobs"] == 1 and payload["prompt"] == "The capital is Paris."
        return 200, _echo_body(tokens, values, prompt_tokens=len(tokens))

    model, seen = _model(handler)
    (score,) = model.score("The capital is", [" Paris."])
    assert score.logprobs == [-0.5, -0.25] and score.tokens == [" Paris", "."] and score.token_ids == []
    assert seen[0]["json"]["max_tokens"] == 0


def test_echo_with_one_generated_token_when_zero_is_refused():
    tokens = ["Hello", " world"]

    def handler(payload, path):
        if payload["max_tokens"] == 0:
            return 400, {"error": {"message": "max_tokens must be at least 1"}}
        return 200, _echo_body(tokens + ["!"], [None, -2.0, -0.1], prompt_tokens=2)

    model, seen = _model(handler)
    scores = model.score_many([ScoreRequest("Hello", [" world"]), ScoreRequest("Hello", [" world"])])
    assert [s[0].logprobs for s in scores] == [[-2.0], [-2.0]]  # the generated "!" is not scored
    assert [r["json"]["max_tokens"] for r in seen][-1] == 1


def test_servers_without_prompt_logprobs_get_a_clear_error():
    model, _ = _model(lambda payload, path: (200, {"choices": [{"index": 0, "text": "x", "logprobs": None}]}))
    with pytest.raises(ServerError, match="does not return prompt log-probs"):
        model.score("a", ["b"])
    with pytest.raises(RationalystError, match="needs the model's tokenizer"):
        model.score([{"role": "user", "content": "hi"}], ["b"])


def test_text_offsets_that_do_not_spell_the_prompt_are_refused():
    # "☺" split into two byte tokens, each decoded alone as U+FFFD: offsets drift by one character.
    logprobs = {"tokens": ["Hi", " \ufffd", "\ufffd", "!"], "text_offset": [0, 2, 4, 5]}
    with pytest.raises(RationalystError, match="do not spell the prompt.*tokenizer"):
        text_mode_context_tokens(logprobs, "Hi ☺!", 3, 4)
    good = {"tokens": ["Hi", " there", "!"], "text_offset": [0, 2, 8]}
    assert text_mode_context_tokens(good, "Hi there!", 2, None) == (1, 3)
    assert text_mode_context_tokens(good, "Hi there!", 3, None) == (1, 3)  # " there" straddles: continuation
    assert text_mode_context_tokens(good, "Hi there!", 8, None) == (2, 3)


def test_generate_seeded_sends_each_row_with_its_own_seed():
    def handler(payload, path):
        return 200, {"choices": [{"index": i, "text": f"{payload['prompt']}{payload.get('seed')}", "finish_reason": "stop"}
                                 for i in range(payload["n"])]}

    model, seen = _model(handler)
    params = SamplingParams(n=2, temperature=0.7, max_new_tokens=5)
    results = model.generate_seeded(["a", "b", "c"], params, [11, 5, 11])
    assert sorted((r["json"]["prompt"], r["json"]["seed"]) for r in seen) == [("a", 11), ("b", 5), ("c", 11)]
    assert [[c.text for c in row] for row in results] == [["a11", "a11"], ["b5", "b5"], ["c11", "c11"]]
    model.generate(["b"], params.model_copy(update={"seed": 5}))
    assert seen[-1]["json"] == next(r["json"] for r in seen if r["json"]["prompt"] == "b")


def test_generate_mixed_sends_each_prompt_with_its_own_params():
    def handler(payload, path):
        return 200, {"choices": [{"index": i, "text": f"{payload['prompt']}{payload['max_tokens']}", "finish_reason": "stop"}
                                 for i in range(payload["n"])]}

    model, seen = _model(handler)
    rationale = SamplingParams(max_new_tokens=6, stop=("\n",))
    candidates = SamplingParams(n=3, temperature=0.7, max_new_tokens=9, seed=4)
    results = model.generate_mixed(["a", "b"], [rationale, candidates])
    sent = {r["json"]["prompt"]: r["json"] for r in seen}
    assert (sent["a"]["n"], sent["a"]["max_tokens"], sent["a"]["temperature"], sent["a"].get("seed")) == (1, 6, 0.0, None)
    assert (sent["b"]["n"], sent["b"]["max_tokens"], sent["b"]["temperature"], sent["b"]["seed"]) == (3, 9, 0.7, 4)
    assert [[c.text for c in row] for row in results] == [["a6"], ["b9"] * 3]


def _probe_answer(sampled: float, echoed: float, generated_for_zero: int = 0):
    """A server whose sampled log-prob of " Paris" after the probe is ``sampled`` and whose echo says ``echoed``."""

    def handler(payload, path):
        if _is_probe(payload):
            return 200, {"choices": [{"index": 0, "text": " Paris", "logprobs": {"tokens": [" Paris"], "token_logprobs": [sampled]}}]}
        tokens = ["The", " capital", " of", " France", " is", " Paris"] if payload["prompt"].startswith(PROBE) else ["a", "b"]
        body = _echo_body(tokens, [None] + [-1.0] * (len(tokens) - 2) + [echoed], prompt_tokens=len(tokens))
        if payload["max_tokens"] == 0 and generated_for_zero:
            body["usage"]["completion_tokens"] = generated_for_zero
        return 200, body

    return handler


def test_a_server_whose_echo_log_probs_are_not_its_models_is_refused_before_scoring():
    """llama-cpp-python's server (0.3.36) samples " Paris" at -0.26 but echoes it at -8.45."""
    model, seen = _model(_probe_answer(-0.264, -8.453), probe=True)
    with pytest.raises(ServerError, match="echo log-probs are not its model's.*-0.264 when sampled but -8.453"):
        model.score("a", ["b"])
    assert len(seen) == 2  # the probe and its echo: no scoring request went out
    good, seen = _model(_probe_answer(-0.264, -0.27), probe=True)
    assert good.score("a", ["b"])[0].logprobs == [-0.27]
    good.score("a", ["b"])
    assert sum(_is_probe(r["json"]) for r in seen) == 1  # checked once


def test_a_server_that_generates_for_max_tokens_zero_is_asked_for_one_token():
    model, seen = _model(_probe_answer(-0.264, -0.27, generated_for_zero=1000), probe=True)
    model.score("a", ["b"])
    echoes = [r["json"]["max_tokens"] for r in seen if r["json"].get("echo")]
    assert echoes == [0, 1]  # the probe's echo found it out; scoring asked for one token


def test_a_server_that_ignores_n_is_asked_one_completion_at_a_time():
    def handler(payload, path):  # always one choice, as llama-cpp-python's server
        return 200, {"choices": [{"index": 0, "text": f"s{payload.get('seed')}", "finish_reason": "stop"}]}

    model, seen = _model(handler)
    (row,) = model.generate(["a"], SamplingParams(n=3, temperature=0.7, max_new_tokens=5, seed=10))
    assert [c.text for c in row] == ["s10", "s11", "s12"]
    assert [r["json"]["n"] for r in seen] == [3, 1, 1, 1]
    (row,) = model.generate(["a"], SamplingParams(n=2, temperature=0.7, max_new_tokens=5, seed=4))
    assert [c.text for c in row] == ["s4", "s5"] and [r["json"]["n"] for r in seen[4:]] == [1, 1]  # remembered
    (greedy,) = model.generate(["a"], SamplingParams(n=2, max_new_tokens=5))
    assert [c.text for c in greedy] == ["sNone", "sNone"] and seen[-1]["json"]["n"] == 1


@pytest.mark.parametrize("server_n", [True, False])
def test_no_two_samples_of_a_call_share_a_seed(server_n):
    """A server seeds a request's sample j with its seed + j (vLLM; `_one_by_one` alike): prompt i is
    sent seed + i * n, so two prompts of three samples from seed 10 are sampled with seeds 10..15
    (with seed + i, prompt 0's samples 11 and 12 were prompt 1's first two). Whether the server
    answers n in one request or, ignoring n, one sample per request."""

    def handler(payload, path):
        n = payload["n"] if server_n else 1
        return 200, {"choices": [{"index": j, "text": str(payload["seed"] + j), "finish_reason": "stop"} for j in range(n)]}

    model, seen = _model(handler)
    model.concurrency = 1  # the server learns it must ask one at a time on the first prompt, not racing
    rows = model.generate(["a", "a"], SamplingParams(n=3, temperature=1.0, max_new_tokens=5, seed=10))
    assert [[c.text for c in row] for row in rows] == [["10", "11", "12"], ["13", "14", "15"]]


def _choice(ids, finish_reason, chat=False, **extra):
    """A choice with vLLM's ``token_id:N`` tokens, token i at log-prob -(i + 1) / 10."""
    tokens, values = [f"token_id:{t}" for t in ids], [-(i + 1) / 10 for i in range(len(ids))]
    if chat:
        content = [{"token": t, "logprob": v} for t, v in zip(tokens, values)]
        return {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish_reason,
                "logprobs": {"content": content}, **extra}
    return {"index": 0, "text": "x", "finish_reason": finish_reason, **extra,
            "logprobs": {"tokens": tokens, "token_logprobs": values, "text_offset": list(range(len(ids)))}}


@pytest.mark.parametrize("chat", [False, True])
def test_the_token_that_ended_a_sequence_is_left_out(chat):
    """vLLM's log-probs keep the EOS (or stop token) that finished a sequence; the contract, and the vllm
    backend, leave it out. A stop string, a length cut, or a server that does not say (no
    ``stop_reason``, no tokenizer to know the EOS by) keep every token."""
    from rationalyst.lm.openai_compat import completion_from_choice

    def read(choice, end_ids=frozenset()):
        c = completion_from_choice(choice, chat=chat, end_ids=end_ids)
        return c.token_ids, c.logprobs

    assert read(_choice([7, 8, 2], "stop", chat, stop_reason=None)) == ([7, 8], [-0.1, -0.2])  # vLLM: its EOS
    assert read(_choice([7, 8, 9], "stop", chat, stop_reason=9)) == ([7, 8], [-0.1, -0.2])  # a stop token
    assert read(_choice([7, 8, 9], "stop", chat, stop_reason="\n")) == ([7, 8, 9], [-0.1, -0.2, -0.3])
    assert read(_choice([7, 8, 9], "length", chat, stop_reason=None)) == ([7, 8, 9], [-0.1, -0.2, -0.3])
    assert read(_choice([7, 8, 2], "stop", chat)) == ([7, 8, 2], [-0.1, -0.2, -0.3])
    assert read(_choice([7, 8, 2], "stop", chat), frozenset({2})) == ([7, 8], [-0.1, -0.2])  # known by the tokenizer
    assert read(_choice([7, 8, 3], "stop", chat), frozenset({2})) == ([7, 8, 3], [-0.1, -0.2, -0.3])


@pytest.mark.parametrize("chat", [False, True])
def test_an_unpaired_surrogate_a_server_sends_becomes_a_replacement_character(chat):
    """JSON can carry "\\ud800", which no stage could write out as UTF-8: the completion gets U+FFFD
    there (as the local backends decode bytes they cannot); a pair stays one character."""
    from rationalyst.lm.openai_compat import completion_from_choice

    choice = json.loads(json.dumps(_choice([7], "stop", chat)).replace('"x"', '"a \\ud800 b \\ud83d\\ude00"'))
    assert completion_from_choice(choice, chat=chat).text == "a \ufffd b \U0001F600"


def test_generate_leaves_out_the_eos_vllm_keeps():
    """Through the backend, as vLLM's /v1/completions answers a sequence that ended on its EOS."""
    model, _ = _model(lambda payload, path: (200, {"choices": [_choice([7, 8, 2], "stop", stop_reason=None)]}))
    ((completion,),) = model.generate(["The capital of France is"], SamplingParams(max_new_tokens=8))
    assert (completion.token_ids, completion.logprobs, completion.finish_reason) == ([7, 8], [-0.1, -0.2], "stop")
