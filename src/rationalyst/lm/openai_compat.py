"""The `openai` backend: any OpenAI-compatible server (vLLM, SGLang, llama.cpp server, `rationalyst serve`).

Spec: ``openai:<base URL>#<model name>``, e.g. ``openai:http://127.0.0.1:8000/v1#meta-llama/Meta-Llama-3-8B-Instruct``;
without ``#<model name>`` the server's only model (from ``/v1/models``) is used. The API key, if the
server wants one, is read from the environment variable named by ``api_key_env`` (default
``OPENAI_API_KEY``) and sent as a bearer token.

* **generate**: text prompts go to ``/v1/completions``, chat messages to ``/v1/chat/completions`` (the
  server applies its own chat template). The sampled tokens' log-probs are asked for, and their ids
  with vLLM's ``return_tokens_as_token_ids`` (servers that do not know it ignore it, or refuse it once,
  and it is then left out); where a server returns token text only, ``Completion.token_ids`` is empty.
  The token that ended a sequence, which vLLM keeps in the log-probs, is left out as the contract says
  (`completion_from_choice`).
* **score**: by echo. The server gets ``prompt = context + continuation`` with ``echo=true,
  logprobs=1, max_tokens=0`` (``1`` where 0 is refused, or read as "no limit") and returns every prompt
  token's log-prob (``null`` for the first). Before the first, one probe checks that the server's echo
  log-probs are its model's (a sampled token's log-prob against the echo's for the same token); a server
  that fails it (llama-cpp-python's 0.3.36) is refused with the alternatives named. The continuation's tokens are found by the `boundary` rule: the first
  token that ends after the context's end belongs to the continuation. Two ways to know the tokens:

  - *token-id mode* (``tokenizer`` set to the model's Hugging Face tokenizer): the pair is tokenized
    here exactly as the `hf` backend does and sent as a list of token ids, so the scores are of the
    same token sequence; chat-message contexts are rendered with the tokenizer's chat template.
  - *text mode* (no tokenizer): the text is sent, and the token boundary comes from the returned
    ``text_offset``s (aligned to the prompt, past any special-token text such as a BOS). Exact where
    the echoed token texts spell the prompt; where they do not (a character split across tokens,
    byte fallback) scoring stops with an error asking for a tokenizer. Token ids are not known in
    text mode (``ContinuationScore.token_ids`` is empty; ``tokens`` holds the token texts). Chat
    contexts need a tokenizer: there is no endpoint that renders a chat template.

Requests run on a thread pool of ``concurrency`` workers, each with ``timeout_s``; 5xx answers, 429 and
failures to connect are retried ``max_retries`` times with exponential backoff; a request that was
sent but got no answer in time (or lost its connection) is not sent again, since the server may still
be running it; 401/403 stop with a message naming the key's variable.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rationalyst.errors import ModelNotFoundError, PromptTooLongError, RationalystError
from rationalyst.lm.base import (
    Completion,
    ContinuationScore,
    LanguageModel,
    Prompt,
    SamplingParams,
    ScoreRequest,
)
from rationalyst.lm.boundary import count_context_tokens
from rationalyst.lm.tokenization import HFTextCodec

#: An unpaired surrogate code point: JSON text can hold one (an escape such as "\\ud800"), UTF-8 cannot.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

log = logging.getLogger(__name__)

#: Most |sampled - echoed| log-prob of the same token after the same prompt (`OpenAIModel._check_echo`).
ECHO_TOLERANCE = 0.1

_TOKEN_ID = re.compile(r"token_id:(\d+)")
_RETRY_STATUS = {429, 500, 502, 503, 504}
#: How servers word "the prompt does not fit": vLLM and OpenAI ("maximum context length",
#: context_length_exceeded), llama.cpp's server (exceed_context_size_error, "available context size")
#: and llama-cpp-python's ("exceed context window").
_CONTEXT_OVERFLOW = re.compile(r"context length|context size|context window|context_length_exceeded", re.I)


class ServerError(RationalystError):
    """The server refused a request (4xx) or kept failing (5xx, connection errors)."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body


def parse_spec(target: str) -> tuple[str, str | None]:
    """``<base URL>#<model>`` -> (base URL without a trailing slash, model name or None)."""
    base, _, model = target.partition("#")
    base = base.rstrip("/")
    if not re.match(r"^https?://[^/]+", base):
        raise RationalystError(
            f"bad openai spec 'openai:{target}': expected openai:http(s)://HOST:PORT/v1#MODEL"
        )
    return base, model or None


# ----------------------------------------------------------------------------- HTTP


class OpenAIClient:
    """A small synchronous client: JSON in, JSON out, with retries, backoff and clear errors."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        max_retries: int = 3,
        concurrency: int = 8,
        backoff_s: float = 0.5,
        transport: Any = None,
    ) -> None:
        import httpx

        self._httpx = httpx
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,  # tests pass an httpx.MockTransport
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        httpx = self._httpx
        url = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self.http.request(method, path, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Not connected, so nothing was sent: safe to send again.
                if last:
                    raise ServerError(f"cannot reach {url}: {exc!r} (after {attempt + 1} tries)") from None
                self._sleep(attempt, f"{type(exc).__name__} from {url}")
                continue
            except httpx.TransportError as exc:
                # Sent, perhaps taken: the server may still be working on it, so it is not sent again.
                raise ServerError(_lost_message(url, exc, self.timeout_s)) from None
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError:
                    raise ServerError(f"{url} answered with non-JSON: {response.text[:200]!r}") from None
            message = _error_message(response)
            if response.status_code in (401, 403):
                raise ServerError(
                    f"{url} refused the API key (HTTP {response.status_code}: {message}); "
                    f"set the environment variable {self.api_key_env} to a valid key",
                    response.status_code, response.text,
                )
            if response.status_code in _RETRY_STATUS and not last:
                self._sleep(attempt, f"HTTP {response.status_code} from {url}")
                continue
            if response.status_code == 400 and _CONTEXT_OVERFLOW.search(message):
                raise PromptTooLongError(f"{url}: HTTP 400: {message}")
            raise ServerError(f"{url}: HTTP {response.status_code}: {message}", response.status_code, response.text)
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, why: str) -> None:
        delay = self.backoff_s * 2**attempt * (1 + random.random() / 2)
        log.warning("%s; retrying in %.1f s", why, delay)
        time.sleep(delay)


def _lost_message(url: str, exc: Exception, timeout_s: float) -> str:
    """Why a request that reached the server got no answer (``exc``, an httpx transport error)."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return (
            f"{url} did not answer within {timeout_s:g} s ({type(exc).__name__}); the request is not sent again, as "
            "the server may still be working on it: raise the model's timeout_s for long generations or a busy server"
        )
    return f"the connection to {url} failed after the request was sent: {exc!r}; it is not sent again"


def _error_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)[:300]


# ----------------------------------------------------------------------------- conversions


def _token_ids(tokens: Sequence[str]) -> list[int]:
    """Ids from vLLM-style ``token_id:N`` token strings; empty when the server sent token text."""
    ids = []
    for token in tokens:
        match = _TOKEN_ID.fullmatch(token or "")
        if match is None:
            return []
        ids.append(int(match.group(1)))
    return ids


def completion_from_choice(choice: dict, *, chat: bool, end_ids: frozenset[int] = frozenset()) -> Completion:
    """A `Completion` from one choice of a completions or chat-completions answer.

    vLLM's log-probs keep the token that ended the sequence (its end-of-sequence token, or a stop
    token), which the contract leaves out: it is dropped where the choice stopped on a token, that is
    where vLLM says so (``stop_reason`` None for its EOS, the token id for a stop token; a string is a
    stop string, whose tokens are all text) or where the last id is one of ``end_ids`` (the
    tokenizer's end-of-sequence ids, for servers that do not send ``stop_reason``).

    An unpaired surrogate in the text (a JSON escape such as ``"\\ud800"``) becomes U+FFFD, as the local
    backends decode bytes they cannot: a stage writing the text out could not encode it as UTF-8.
    """
    text = (choice["message"].get("content") or "") if chat else (choice.get("text") or "")
    text = _LONE_SURROGATE.sub("\ufffd", text)
    logprobs = choice.get("logprobs") or {}
    if chat:
        content = logprobs.get("content") or []
        tokens = [c.get("token", "") for c in content]
        values = [c.get("logprob") for c in content]
    else:
        tokens = list(logprobs.get("tokens") or [])
        values = list(logprobs.get("token_logprobs") or [])
    ids = _token_ids(tokens)
    values = [float(v) for v in values if v is not None]
    reason = choice.get("finish_reason")
    stopped_on_token = reason == "stop" and not isinstance(choice.get("stop_reason"), str)
    if stopped_on_token and values and ("stop_reason" in choice or (ids and ids[-1] in end_ids)):
        ids, values = ids[:-1], values[:-1]
    return Completion(text=text, token_ids=ids, logprobs=values, finish_reason="length" if reason == "length" else "stop")


def text_mode_context_tokens(logprobs: dict, prompt: str, context_len: int, n_prompt_tokens: int | None) -> tuple[int, int]:
    """(tokens of the context, tokens of the prompt) in an echo's legacy ``logprobs`` block.

    ``text_offset``s are aligned to the prompt: servers may count special-token text (a BOS spelled
    ``<|begin_of_text|>``) before it. Raises where the echoed tokens do not spell the prompt.
    """
    tokens = list(logprobs.get("tokens") or [])
    offsets = list(logprobs.get("text_offset") or [])
    if not tokens or len(offsets) != len(tokens):
        raise RationalystError("the server's echo has no tokens or text offsets")
    n_prompt = n_prompt_tokens if n_prompt_tokens is not None else len(tokens)
    if n_prompt > len(tokens):
        raise RationalystError(f"the server reported {n_prompt} prompt tokens but echoed {len(tokens)}")
    ends = [int(o) + len(t) for o, t in zip(offsets[:n_prompt], tokens[:n_prompt])]
    spelled = "".join(tokens[:n_prompt])
    shift = len(spelled) - len(prompt)
    if shift < 0 or not spelled.endswith(prompt) or ends[-1] != len(spelled) + int(offsets[0]):
        raise RationalystError(
            "the server's echoed tokens do not spell the prompt (a character split across tokens?); "
            "set the model's `tokenizer` for exact token-id scoring"
        )
    return count_context_tokens(ends, context_len + shift + int(offsets[0])), n_prompt


# ----------------------------------------------------------------------------- the backend


class OpenAIModel(LanguageModel):
    """A model behind an OpenAI-compatible HTTP API, behind the `LanguageModel` contract."""

    def __init__(
        self,
        client: OpenAIClient,
        model: str,
        *,
        name: str = "",
        codec: HFTextCodec | None = None,
        concurrency: int = 8,
    ) -> None:
        self.client = client
        self.model = model
        self.name = name or f"openai:{client.base_url}#{model}"
        self.codec = codec
        self.concurrency = concurrency
        self._token_ids_flag = True  # send return_tokens_as_token_ids until a server refuses it
        self._zero_max_tokens = True  # ask echo with max_tokens=0 until a server refuses (or ignores) it
        self._flag_lock = threading.Lock()
        self._echo_checked = False  # `_check_echo` ran (once, before the first scoring request)
        self._server_n = True  # send n > 1 in one request until a server answers it with one completion

    @classmethod
    def from_spec(
        cls,
        target: str,
        *,
        name: str = "",
        tokenizer: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 3,
    ) -> OpenAIModel:
        base, model = parse_spec(target)
        client = OpenAIClient(
            base, api_key=os.environ.get(api_key_env) or None, api_key_env=api_key_env,
            timeout_s=timeout_s, max_retries=max_retries, concurrency=concurrency,
        )
        if model is None:
            served = [m.get("id") for m in client.request("GET", "/models").get("data", [])]
            if len(served) != 1:
                raise ModelNotFoundError(
                    f"{base} serves {len(served)} models ({', '.join(map(str, served))}): "
                    f"name one as openai:{base}#MODEL"
                )
            model = served[0]
        codec = HFTextCodec.from_pretrained(tokenizer, name=name or target) if tokenizer else None
        return cls(client, model, name=name or f"openai:{target}", codec=codec, concurrency=concurrency)

    # ----------------------------------------------------------------------------- plumbing

    def _map(self, fn, items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self.concurrency <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def _post_optional(self, path: str, payload: dict, flag: str, key: str, fallback: Any) -> dict:
        """POST; if the server refuses ``payload[key]`` (HTTP 400/422), retry once without it (or with
        ``fallback``) and remember not to send it again (``flag`` names the attribute)."""
        try:
            return self.client.request("POST", path, payload)
        except ServerError as exc:
            # Decide on what this request sent, not on the flag: a concurrent request may have
            # cleared the flag after this one was sent with the optional value.
            sent_optional = key in payload if fallback is None else payload.get(key) != fallback
            if exc.status not in (400, 422) or not sent_optional:
                raise
            retry = dict(payload)
            if fallback is None:
                retry.pop(key, None)
            else:
                retry[key] = fallback
            answer = self.client.request("POST", path, retry)
            with self._flag_lock:
                setattr(self, flag, False)
            log.info("%s: the server refused %s=%r; using %r from now on", self.name, key, payload.get(key), fallback)
            return answer

    def render(self, prompt: Prompt) -> str:
        if self.codec is not None:
            return self.codec.render(prompt)
        return super().render(prompt)

    # ----------------------------------------------------------------------------- generation

    def _sampling_fields(self, params: SamplingParams) -> dict:
        fields: dict[str, Any] = {
            "model": self.model,
            "n": params.n,
            "temperature": params.temperature,
            "top_p": 1.0 if params.greedy else params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.stop:
            fields["stop"] = list(params.stop)
        if params.seed is not None and not params.greedy:
            fields["seed"] = params.seed
        if self._token_ids_flag:
            fields["return_tokens_as_token_ids"] = True
        return fields

    def _request(self, row: tuple[Prompt, SamplingParams]) -> list[Completion]:
        """``params.n`` completions of ``prompt``, seeded ``params.seed``: one request, or one per sample."""
        prompt, params = row
        if params.n > 1 and not self._server_n:
            return self._one_by_one(prompt, params)
        chat = not isinstance(prompt, str)
        payload = self._sampling_fields(params)
        if chat:
            payload.update(messages=list(prompt), logprobs=True)
            path = "/chat/completions"
        else:
            payload.update(prompt=prompt, logprobs=1)
            path = "/completions"
        answer = self._post_optional(path, payload, "_token_ids_flag", "return_tokens_as_token_ids", None)
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) == 1 and params.n > 1:
            # The server ignores n (llama-cpp-python's does): ask for the others one at a time from now on.
            with self._flag_lock:
                self._server_n = False
            log.info("%s: the server returned 1 completion for n=%d; asking one at a time from now on", self.name, params.n)
            return self._one_by_one(prompt, params)
        if len(choices) != params.n:
            raise ServerError(f"{self.name}: asked for {params.n} completions, the server returned {len(choices)}")
        end_ids = frozenset(self.codec.eos_ids()) if self.codec is not None else frozenset()
        return [completion_from_choice(c, chat=chat, end_ids=end_ids) for c in choices]

    def _one_by_one(self, prompt: Prompt, params: SamplingParams) -> list[Completion]:
        """n completions as n requests of one (sample j seeded ``seed + j``, as vLLM seeds the samples of
        one request; greedy: one, copied)."""
        if params.greedy:
            (one,) = self._request((prompt, params.model_copy(update={"n": 1})))
            return [one] * params.n
        out = []
        for j in range(params.n):
            seed = None if params.seed is None else params.seed + j
            out += self._request((prompt, params.model_copy(update={"n": 1, "seed": seed})))
        return out

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """With a seed, prompt *i* is seeded ``seed + i * n``: a server seeds a request's n samples from
        consecutive seeds (vLLM's sample j with seed + j, as `_one_by_one`), so prompts spaced by n share
        no sample's seed (spaced by 1, prompt i's sample j+1 was prompt i+1's sample j)."""
        seeds = [None if params.seed is None else params.seed + i * params.n for i in range(len(prompts))]
        return self.generate_seeded(prompts, params, seeds)

    def generate_seeded(
        self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int | None]
    ) -> list[list[Completion]]:
        """Every row's request in flight at once (``concurrency``), each with its own seed: the request
        ``generate([prompts[i]], params)`` with ``seed = seeds[i]`` sends alone."""
        return self._map(self._request, [(p, params.model_copy(update={"seed": seed})) for p, seed in zip(prompts, seeds)])

    def generate_mixed(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Completion]]:
        """Every prompt's request in flight at once with its own params: a round's rationales and
        candidates reach the server together, for its scheduler to batch."""
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        return self._map(self._request, list(zip(prompts, params)))

    # ----------------------------------------------------------------------------- scoring

    def _echo(self, prompt: str | list[int]) -> dict:
        payload = {
            "model": self.model,
            "prompt": prompt,
            "echo": True,
            "logprobs": 1,
            "max_tokens": 0 if self._zero_max_tokens else 1,
            "temperature": 0.0,
        }
        answer = self._post_optional("/completions", payload, "_zero_max_tokens", "max_tokens", 1)
        choices = answer.get("choices") or []
        logprobs = choices[0].get("logprobs") if choices else None
        if not logprobs or not logprobs.get("token_logprobs"):
            raise ServerError(
                f"{self.name}: the server does not return prompt log-probs (echo=true with logprobs on "
                "/v1/completions), so it cannot score; vLLM and `rationalyst serve` do"
            )
        usage = answer.get("usage") or {}
        logprobs["_prompt_tokens"] = usage.get("prompt_tokens")
        if payload["max_tokens"] == 0 and (usage.get("completion_tokens") or 0) > 0 and self._zero_max_tokens:
            # llama-cpp-python's server reads max_tokens=0 as "no limit" and generates to the context's end.
            with self._flag_lock:
                self._zero_max_tokens = False
            log.info("%s: the server generated %s tokens for max_tokens=0; asking for 1 from now on",
                     self.name, usage.get("completion_tokens"))
        return logprobs

    def _check_echo(self) -> None:
        """Once, before the first scoring request: the log-prob the server gives a token when it samples
        it must be the one its echo gives the same token after the same prompt. llama-cpp-python's
        server (0.3.36) returns wrong prompt log-probs over echo (its sampled ones are right): scoring
        through it would rank candidates by noise, so it is refused here, in seconds."""
        probe = "The capital of France is"
        answer = self.client.request("POST", "/completions", {
            "model": self.model, "prompt": probe, "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
        })
        choices = answer.get("choices") or []
        sampled = (choices[0].get("logprobs") or {}) if choices else {}
        tokens, values = list(sampled.get("tokens") or []), list(sampled.get("token_logprobs") or [])
        if not tokens or not values or not isinstance(values[0], (int, float)) or not tokens[0].strip():
            return  # nothing to compare with: inconclusive
        echoed = self._echo(probe + tokens[0])
        n_prompt = echoed.get("_prompt_tokens") or len(echoed.get("token_logprobs") or [])
        echo_tokens, echo_values = list(echoed.get("tokens") or []), list(echoed["token_logprobs"])
        if n_prompt > len(echo_values) or (echo_tokens and echo_tokens[n_prompt - 1] != tokens[0]):
            return  # the probe did not tokenize the same way: inconclusive
        value = echo_values[n_prompt - 1]
        if value is None or abs(float(value) - float(values[0])) > ECHO_TOLERANCE:
            raise ServerError(
                f"{self.name}: the server's echo log-probs are not its model's: {tokens[0]!r} after {probe!r} is "
                f"{float(values[0]):.3f} when sampled but {value if value is None else round(float(value), 3)} over "
                "echo (llama-cpp-python's server computes prompt log-probs wrongly); score with the llamacpp: "
                "backend on the same GGUF, `rationalyst serve`, or a vLLM server instead"
            )

    def _score_pair(self, pair: tuple[Prompt, str]) -> ContinuationScore:
        context, continuation = pair
        if self.codec is not None:
            seq = self.codec.split(context, continuation)
            logprobs = self._echo(seq.token_ids)
            values = list(logprobs["token_logprobs"])[: len(seq.token_ids)]
            if len(values) != len(seq.token_ids):
                raise ServerError(f"{self.name}: echoed {len(values)} tokens for a prompt of {len(seq.token_ids)}")
            picked = values[seq.n_context :]
            ids = seq.continuation_ids
            tokens = self.codec.token_strings(ids)
        else:
            if not isinstance(context, str):
                raise RationalystError(
                    f"{self.name}: scoring after chat messages needs the model's tokenizer to render "
                    "the chat template (set `tokenizer` in the model config)"
                )
            prompt = context + continuation
            logprobs = self._echo(prompt)
            n_context, n_prompt = text_mode_context_tokens(logprobs, prompt, len(context), logprobs["_prompt_tokens"])
            if n_context == 0:
                raise RationalystError(
                    f"{self.name}: the first token of the prompt has no log-prob over echo; "
                    "score after a non-empty context, or set `tokenizer`"
                )
            picked = list(logprobs["token_logprobs"])[n_context:n_prompt]
            ids = []
            tokens = list(logprobs["tokens"])[n_context:n_prompt]
        if any(v is None for v in picked):
            raise ServerError(f"{self.name}: the server returned a null log-prob inside the continuation")
        return ContinuationScore(list(ids), [float(v) for v in picked], tokens)

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[list[ContinuationScore]]:
        pairs = [(r.context, c) for r in requests for c in r.continuations]
        if pairs and not self._echo_checked:
            self._check_echo()
            self._echo_checked = True
        flat = iter(self._map(self._score_pair, pairs))
        return [[next(flat) for _ in r.continuations] for r in requests]
