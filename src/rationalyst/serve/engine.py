"""What the server does with a request: model calls and the OpenAI answer built from their results.

Everything here is blocking (torch) code: the app runs it in worker threads. A model is not safe to
call from two threads at once (torch on CPU, llama.cpp, vLLM's offline engine), so each served model
has a lock held around every call into it; the guided model holds the locks of every served model,
since its search calls them.

Generation requests that arrive together are gathered into one engine call (`Batcher`): a worker
thread per served model takes whatever is queued (after a short window for simultaneous arrivals)
and makes one ``generate_mixed`` call of them all, each request's rows with its own params and seeded
as they would be alone (a backend without a mixed call makes one call per set of params). On hf the
worker keeps one decode loop instead (`HFStream`, continuous batching): a request joins it as soon
as it arrives, even while others are decoding, and is answered the step it finishes. The queue is bounded (`ServerLimits.max_queued`, in prompts x samples) and a
request that would overflow it is answered 503 at once. Guided requests (`GuidedBatcher`) are gathered
the same way into one lockstep search over all their choices (`search.chat.GuidedSearch.many`).

Echo and log-probs need the model's tokens and their character spans; they come from the model's
Hugging Face fast tokenizer (`HFTextCodec`), so they are offered for the `hf` and `vllm` backends
(and for `openai` with a local tokenizer). A prompt's per-token log-probs are computed through the
model contract itself: the prompt is split after its first token and the rest is scored as the
continuation, which is the same joint tokenization `score` uses.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rationalyst.errors import RationalystError
from rationalyst.lm.base import Completion, LanguageModel, SamplingParams
from rationalyst.lm.boundary import count_context_tokens
from rationalyst.lm.openai_compat import ServerError
from rationalyst.lm.tokenization import HFTextCodec
from rationalyst.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    LegacyLogprobs,
    TokenLogprob,
    TopLogprob,
    Usage,
)

log = logging.getLogger(__name__)

#: ``guided(messages, params) -> text``: a chat answer produced by the rationale-guided search.
GuidedFn = Callable[[list[dict[str, str]], SamplingParams], str]


class ApiError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    @property
    def type(self) -> str:
        if self.status in (401, 403):
            return "authentication_error"
        return "server_error" if self.status >= 500 else "invalid_request_error"

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what one request may ask for."""

    max_tokens: int = 1024
    max_request_bytes: int = 1_000_000
    max_n: int = 16
    max_prompts: int = 64
    default_chat_max_tokens: int = 512
    #: Rows (prompts x samples) waiting for a served model's engine at most; more is a 503.
    max_queued: int = 256
    #: Seconds the batcher waits after the first queued request for others to join its engine call.
    batch_window_s: float = 0.005
    #: Requests gathered into one engine call at most, or on hf decoding together at most (1: one request
    #: at a time, as before batching).
    max_batch: int = 64


@dataclass
class TokenRun:
    """Tokens with their texts (concatenating to the text they cover), offsets and log-probs."""

    ids: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    logprobs: list[float | None] = field(default_factory=list)

    def extend(self, other: TokenRun) -> None:
        self.ids += other.ids
        self.pieces += other.pieces
        self.offsets += other.offsets
        self.logprobs += other.logprobs


def codec_of(model: LanguageModel) -> HFTextCodec | None:
    """The model's Hugging Face fast tokenizer as a codec, if it has one."""
    codec = getattr(model, "codec", None)
    if isinstance(codec, HFTextCodec):
        return codec
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "is_fast", False):
        return HFTextCodec(tokenizer, name=model.name, max_length=getattr(model, "max_length", None))
    return None


def _pieces(text: str, spans: Sequence[tuple[int, int]], start: int = 0) -> tuple[list[str], list[int]]:
    """Disjoint texts and offsets of tokens: each token's text runs from the previous token's end to its own."""
    pieces, offsets, prev = [], [], 0
    for _, end in spans:
        piece = text[prev:end] if end > prev else ""
        pieces.append(piece)
        offsets.append(start + prev)
        prev = max(prev, end)
    return pieces, offsets


def _token_texts(decode: Callable[[list[int]], str], ids: Sequence[int]) -> list[str]:
    """Each token's text by incremental decoding: what decoding the ids up to it adds to the text so far.

    A token that ends inside a multi-byte character (a byte of an emoji or a CJK character: the
    decoding ends in U+FFFD) gives the characters before it, and the cut character goes to the token
    that completes it (vLLM's incremental detokenizer holds it back the same way); so the texts join
    to ``decode(ids)`` (unless decoding more ids rewrites earlier text, a tokenizer's clean-up of
    spaces: what was given stands) and each starts where the previous one ended. A U+FFFD stays only
    where bytes never make a character (an invalid byte, or a character the last token leaves cut).
    """
    pieces: list[str] = []
    done = ""  # the texts given so far, joined
    for i in range(len(ids)):
        text = decode(list(ids[: i + 1]))
        if i + 1 < len(ids):
            text = text.rstrip("\ufffd")  # a character cut mid-way: held back until it is complete
        keep = len(done) if text.startswith(done) else len(os.path.commonprefix([done, text]))
        pieces.append(text[keep:])
        done += text[keep:]
    return pieces


def _request_error(exc: Exception) -> Exception:
    """What a request that met ``exc`` is answered with: an `ApiError` for a user-facing error, else
    ``exc`` itself (the app answers it as a 500 and logs it)."""
    return _as_error(exc) if isinstance(exc, (RationalystError, ValidationError)) else exc


def _as_error(exc: Exception) -> ApiError:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return ApiError(400, f"{'.'.join(map(str, err['loc']))}: {err['msg']}", param=str(err["loc"][0]))
    if isinstance(exc, ServerError):  # the upstream server failed, not the request: a client may retry
        return ApiError(502, str(exc))
    return ApiError(400, str(exc))


def _per_prompt(params: SamplingParams, count: int) -> list[SamplingParams]:
    """Each of a request's ``count`` prompts' params: with a seed, prompt i is seeded ``seed + i * n``.

    Engines seed a prompt's n samples from consecutive seeds (llama.cpp's sample j from its seed + j,
    vLLM's child request j likewise), so prompts spaced by 1 would share samples (prompt i's sample
    j+1 was prompt i+1's sample j); spaced by n, no two samples of a request share a seed, and a
    request's prompts are seeded as the llamacpp, vllm and openai backends' own ``generate`` seeds them.
    """
    if params.seed is None:
        return [params] * count
    return [params.model_copy(update={"seed": params.seed + i * params.n}) for i in range(count)]


@dataclass
class _Job:
    prompts: list
    params: SamplingParams
    done: threading.Event = field(default_factory=threading.Event)
    result: list | None = None
    error: Exception | None = None

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.params.n


class _Gatherer:
    """A queue of jobs and one worker thread that takes whatever is queued (after a short window for
    simultaneous arrivals, at most ``max_batch``) and hands it to `_handle` in one go."""

    def __init__(self) -> None:
        self.queue: list[_Job] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def _enqueue(self, job: _Job, limits: ServerLimits) -> None:
        """Queue ``job`` (the caller holds ``self._ready``) and start the worker on first use."""
        self.queue.append(job)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, args=(limits,), daemon=True, name=type(self).__name__)
            self._thread.start()
        self._ready.notify()

    def _loop(self, limits: ServerLimits) -> None:
        while True:
            with self._ready:
                while not self.queue:
                    self._ready.wait()
            if limits.max_batch > 1:
                time.sleep(limits.batch_window_s)
            with self._ready:
                jobs, self.queue = self.queue[: limits.max_batch], self.queue[limits.max_batch :]
            self._handle(jobs)

    def _handle(self, jobs: list[_Job]) -> None:
        raise NotImplementedError


class Batcher(_Gatherer):
    """Gathers the generation requests that wait for one model into shared engine calls."""

    def __init__(self, model: LanguageModel, lock: threading.Lock) -> None:
        super().__init__()
        self.model, self.lock = model, lock
        self.queued_rows = 0
        self.calls = 0  # engine calls made (for benchmarks and tests)

    def generate(self, prompts: list, params: SamplingParams, limits: ServerLimits) -> list[list[Completion]]:
        job = _Job(list(prompts), params)
        if job.rows > limits.max_queued:  # would never fit: no retry can help
            raise ApiError(
                400, f"the request asks for {job.rows} sequences (prompts x n), over the server's limit of "
                f"{limits.max_queued}; send fewer prompts or a smaller n", code="too_many_sequences",
            )
        with self._ready:
            if self.queued_rows + job.rows > limits.max_queued:
                raise ApiError(
                    503, f"the server is busy: {self.queued_rows} sequences are waiting for the model "
                    f"(limit {limits.max_queued}); retry later", code="overloaded",
                )
            self.queued_rows += job.rows
            self._enqueue(job, limits)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _loop(self, limits: ServerLimits) -> None:
        if callable(getattr(type(self.model), "open_stream", None)):  # as `search.batch._stream`
            self._stream_loop(limits)
        else:
            super()._loop(limits)

    def _stream_loop(self, limits: ServerLimits) -> None:
        """Continuous batching (`HFStream`): requests join the running decode loop as they arrive, one
        step at a time under the model's lock, and each is answered the step its last sample finishes."""
        stream = self.model.open_stream()
        waiting: dict[int, tuple[_Job, list]] = {}  # id(job) -> (job, its rows of samples so far)
        while True:
            with self._ready:
                while not self.queue and not stream.busy:
                    self._ready.wait()
                room = max(limits.max_batch - len(waiting), 0)  # max_batch: requests decoding together
                jobs, self.queue = self.queue[:room], self.queue[room:]
            try:
                with self.lock:
                    for job in jobs:
                        self._join(stream, job, waiting)
                    done = stream.step() if stream.busy else []
            except Exception as exc:  # noqa: BLE001 - a failed step fails the requests in it, not the server
                log.exception("decode step failed")
                for job, _ in list(waiting.values()):
                    self._answer(job, error=exc)
                waiting.clear()
                stream = self.model.open_stream()
                continue
            for (key, i), completions, _ in done:
                job, rows = waiting[key]
                rows[i] = completions
                if all(r is not None for r in rows):
                    del waiting[key]
                    self._answer(job, result=rows)

    def _join(self, stream: Any, job: _Job, waiting: dict) -> None:
        """Add ``job``'s prompts to ``stream`` (each seeded by `_per_prompt`), or answer it with the error
        that keeps it out."""
        params = _per_prompt(job.params, len(job.prompts))
        try:
            stream.add(job.prompts, params, [(id(job), i) for i in range(len(job.prompts))])
        except Exception as exc:  # noqa: BLE001 - answered to this request, not to those decoding beside it
            error = _request_error(exc)
            if error is exc:
                log.exception("a request could not join the decode loop")
            self._answer(job, error=error)
            return
        self.calls += 1
        waiting[id(job)] = (job, [None] * len(job.prompts))

    def _answer(self, job: _Job, result: list | None = None, error: Exception | None = None) -> None:
        job.result, job.error = result, error
        with self._ready:
            self.queued_rows -= job.rows
        job.done.set()

    def _handle(self, jobs: list[_Job]) -> None:
        self._run(jobs)
        with self._ready:
            self.queued_rows -= sum(job.rows for job in jobs)

    def _run(self, jobs: list[_Job]) -> None:
        """One engine call for ``jobs``; when it fails, each job alone, so one bad prompt fails one request."""
        prompts = [p for job in jobs for p in job.prompts]
        params = [p for job in jobs for p in _per_prompt(job.params, len(job.prompts))]
        try:
            with self.lock:
                self.calls += 1
                if len(jobs) == 1 or not hasattr(self.model, "generate_mixed"):  # alone: the plain call
                    out = [row for job in jobs for row in self.model.generate(job.prompts, job.params)]
                else:
                    out = self.model.generate_mixed(prompts, params)
        except Exception as exc:  # noqa: BLE001 - handed to the requests that asked
            if len(jobs) > 1:
                for job in jobs:
                    self._run([job])
                return
            jobs[0].error = _request_error(exc)
            jobs[0].done.set()
            return
        at = 0
        for job in jobs:
            job.result, at = out[at : at + len(job.prompts)], at + len(job.prompts)
            job.done.set()


class ServedModel:
    """One model behind the API: its lock, its tokenizer, its batcher, and the two endpoints' logic."""

    def __init__(self, name: str, model: LanguageModel) -> None:
        self.name = name
        self.model = model
        self.lock = threading.Lock()
        self.codec = codec_of(model)
        self.batcher = Batcher(model, self.lock)

    # ----------------------------------------------------------------------------- model calls

    def _call(self, fn, *args):
        """One call into the model, under its lock; user-fixable errors become 400s."""
        with self.lock:
            try:
                return fn(*args)
            except (RationalystError, ValidationError) as exc:
                raise _as_error(exc) from None

    def _need_codec(self, what: str) -> HFTextCodec:
        if self.codec is None:
            raise ApiError(400, f"{what} is not available for {self.name}: its backend exposes no tokenizer")
        return self.codec

    def prompt_text(self, prompt: str | list[int]) -> str:
        """A prompt as the text the model makes exactly its token ids of (it tokenizes text with the
        special tokens it adds, a BOS for Llama's); other token ids are refused.

        Ids without the added special tokens whose text writes the BOS itself (a chat template's
        ``{{ bos_token }}``, Llama-3's: the openai backend sends chat contexts so) are the text after
        that BOS, which the model's own BOS then starts: the ids are scored and continued as given.
        """
        if isinstance(prompt, str):
            return prompt
        codec = self._need_codec("a token-id prompt")
        ids = list(prompt)
        for skip in (True, False):
            try:
                text = codec.tokenizer.decode(ids, skip_special_tokens=skip)
            except (OverflowError, TypeError, ValueError, IndexError):
                break
            if codec.spans(text)[0] == ids:
                return text
            plain, spans = codec.spans(text, add_special_tokens=False)
            if plain == ids and spans and codec.spans(text[spans[0][1] :])[0] == ids:
                return text[spans[0][1] :]
        raise ApiError(
            400, "the token-id prompt is not what the model's tokenizer makes of its text; send text", param="prompt"
        )

    def echo(self, text: str) -> TokenRun:
        """The prompt's tokens with their log-probs (``None`` for the first), via the model contract.

        The contract scores text after a character boundary, so where the first character is split over
        several tokens (an emoji's bytes) and no BOS precedes it, all its tokens get ``None``, where
        OpenAI and vLLM give ``None`` to the first token only.
        """
        codec = self._need_codec("echo with log-probs")
        ids, spans = codec.spans(text)
        pieces, offsets = _pieces(text, spans)
        run = TokenRun(ids, pieces, offsets, [None] * len(ids))
        if not ids:
            return run
        if spans[0][1] == 0:  # a special token (BOS) first: score all the text after it
            context = ""
        else:  # split after the first token: the rest is scored given it
            context = text[: spans[0][1]]
        n_context = count_context_tokens([end for _, end in spans], len(context))
        if n_context < len(ids):
            (score,) = self._call(self.model.score, context, [text[len(context) :]])
            if list(score.token_ids) != ids[n_context:]:
                raise RuntimeError(f"{self.name}: scored tokens differ from the tokenizer's ({score.token_ids[:5]}...)")
            run.logprobs[n_context:] = score.logprobs
        return run

    def generated(self, completion: Completion, start: int) -> TokenRun:
        """A completion's tokens, their texts (`_token_texts`), offsets from ``start`` and log-probs."""
        codec = self._need_codec("log-probs")
        ids = list(completion.token_ids)
        pieces = _token_texts(codec.decode, ids)
        offsets = list(itertools.accumulate(map(len, pieces), initial=start))[:-1]
        return TokenRun(ids, pieces, offsets, list(completion.logprobs))

    def count_tokens(self, prompt) -> int:
        if self.codec is None:
            return 0
        try:
            return len(self.codec.encode(prompt))
        except RationalystError:
            return 0

    def _params(self, req, max_tokens: int, limits: ServerLimits) -> SamplingParams:
        if req.n > limits.max_n:
            raise ApiError(400, f"n is {req.n}, over this server's limit of {limits.max_n}", param="n")
        if max_tokens > limits.max_tokens:
            raise ApiError(
                400, f"max_tokens is {max_tokens}, over this server's limit of {limits.max_tokens}", param="max_tokens"
            )
        try:
            return SamplingParams(
                n=req.n, temperature=req.temperature, top_p=req.top_p, max_new_tokens=max(max_tokens, 1),
                stop=tuple(req.stop or ()), seed=req.seed,
            )
        except ValidationError as exc:
            raise _as_error(exc) from None

    # ----------------------------------------------------------------------------- endpoints

    def complete(self, req: CompletionRequest, limits: ServerLimits) -> CompletionResponse:
        prompts = req.prompts()
        if not prompts:
            raise ApiError(400, "prompt is empty", param="prompt")
        if len(prompts) > limits.max_prompts:
            raise ApiError(400, f"{len(prompts)} prompts, over this server's limit of {limits.max_prompts}", param="prompt")
        if req.best_of is not None and req.best_of != req.n:
            raise ApiError(400, "best_of other than n is not supported", param="best_of")
        params = self._params(req, req.max_tokens, limits)
        texts = [self.prompt_text(p) for p in prompts]
        want_logprobs = req.logprobs is not None
        if req.max_tokens == 0:
            empty = Completion(text="", token_ids=[], logprobs=[], finish_reason="length")
            results = [[empty] * req.n for _ in texts]
        else:
            results = self.batcher.generate(texts, params, limits)
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for i, (text, completions) in enumerate(zip(texts, results)):
            echo = self.echo(text) if req.echo and want_logprobs else None
            prompt_tokens += len(echo.ids) if echo else self.count_tokens(text)
            for j, c in enumerate(completions):
                completion_tokens += len(c.token_ids)
                logprobs = None
                if want_logprobs:
                    run = TokenRun()
                    if echo is not None:
                        run.extend(echo)
                    run.extend(self.generated(c, len(text) if req.echo else 0))
                    logprobs = _legacy(run, req.return_tokens_as_token_ids)
                choices.append(
                    CompletionChoice(
                        index=i * req.n + j, text=(text if req.echo else "") + c.text,
                        logprobs=logprobs, finish_reason=c.finish_reason,
                    )
                )
        return CompletionResponse(
            id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.name, choices=choices,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
        )

    def chat(self, req: ChatCompletionRequest, limits: ServerLimits) -> ChatCompletionResponse:
        max_tokens = req.max_completion_tokens or req.max_tokens or min(limits.default_chat_max_tokens, limits.max_tokens)
        params = self._params(req, max_tokens, limits)
        messages = req.plain_messages()
        (completions,) = self.batcher.generate([messages], params, limits)
        choices = []
        for j, c in enumerate(completions):
            logprobs = None
            if req.logprobs:
                logprobs = _chat_logprobs(self.generated(c, 0), req.top_logprobs or 0, req.return_tokens_as_token_ids)
            choices.append(ChatChoice(index=j, message=AssistantMessage(content=c.text), logprobs=logprobs,
                                      finish_reason=c.finish_reason))
        prompt_tokens = self.count_tokens(messages)
        completion_tokens = sum(len(c.token_ids) for c in completions)
        return ChatCompletionResponse(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.name, choices=choices,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
        )


class GuidedBatcher(_Gatherer):
    """Gathers the guided requests that arrive together into one lockstep search (``fn.many``), holding
    every served model's lock while it runs; each choice of each request is one problem of the batch."""

    def __init__(self, fn: Any, locks: Sequence[threading.Lock]) -> None:
        super().__init__()
        self.fn, self.locks = fn, list(locks)
        self.batches = 0  # lockstep searches run (for benchmarks and tests)

    def submit(self, messages: list[dict], params: SamplingParams, limits: ServerLimits) -> _Job:
        job = _Job([messages], params)
        with self._ready:
            if len(self.queue) + 1 > limits.max_queued:
                raise ApiError(503, f"the server is busy: {len(self.queue)} guided problems are waiting "
                               f"(limit {limits.max_queued}); retry later", code="overloaded")
            self._enqueue(job, limits)
        return job

    def _handle(self, jobs: list[_Job]) -> None:
        try:
            with contextlib.ExitStack() as stack:
                for lock in self.locks:
                    stack.enter_context(lock)
                self.batches += 1
                answers = self.fn.many([(job.prompts[0], job.params) for job in jobs])
        except Exception as exc:  # noqa: BLE001 - handed to the requests that asked
            answers = [exc] * len(jobs)
        for job, answer in zip(jobs, answers):
            if isinstance(answer, Exception):
                job.error = _as_error(answer) if isinstance(answer, (RationalystError, ValidationError)) else answer
            else:
                job.result = [answer]
            job.done.set()


class GuidedModel:
    """The model name whose chat completions come from the rationale-guided search. A search that can
    solve several requests at once (``fn.many``, `search.chat.GuidedSearch`) gets them batched."""

    def __init__(self, name: str, fn: GuidedFn, served: Sequence[ServedModel]) -> None:
        self.name = name
        self.fn = fn
        self.locks = [m.lock for m in served]
        self.batcher = GuidedBatcher(fn, self.locks) if hasattr(fn, "many") else None

    def chat(self, req: ChatCompletionRequest, limits: ServerLimits) -> ChatCompletionResponse:
        if req.logprobs:
            raise ApiError(400, f"log-probs are not available for {self.name}", param="logprobs")
        max_tokens = req.max_completion_tokens or req.max_tokens or min(limits.default_chat_max_tokens, limits.max_tokens)
        if req.n > limits.max_n:
            raise ApiError(400, f"n is {req.n}, over this server's limit of {limits.max_n}", param="n")
        if max_tokens > limits.max_tokens:
            raise ApiError(400, f"max_tokens is {max_tokens}, over this server's limit of {limits.max_tokens}",
                           param="max_tokens")
        messages = req.plain_messages()
        # Choice j is one search seeded base + j. Without a seed the search would take the recipe's for
        # every choice, making n equal answers: a request without one draws its base at random.
        base = req.seed if req.seed is not None else random.randrange(2**31)
        params = [
            SamplingParams(
                n=1, temperature=req.temperature, top_p=req.top_p, max_new_tokens=max_tokens,
                stop=tuple(req.stop or ()), seed=base + j,
            )
            for j in range(req.n)
        ]
        texts = self._batched(messages, params, limits) if self.batcher is not None else self._alone(messages, params)
        choices = [ChatChoice(index=j, message=AssistantMessage(content=t), finish_reason="stop") for j, t in enumerate(texts)]
        return ChatCompletionResponse(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.name, choices=choices,
            usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
        )

    def _batched(self, messages: list[dict], params: list[SamplingParams], limits: ServerLimits) -> list[str]:
        jobs = [self.batcher.submit(messages, p, limits) for p in params]  # type: ignore[union-attr]
        for job in jobs:
            job.done.wait()
        for job in jobs:
            if job.error is not None:
                raise job.error
        return [job.result[0] for job in jobs]  # type: ignore[index]

    def _alone(self, messages: list[dict], params: list[SamplingParams]) -> list[str]:
        texts = []
        for p in params:
            try:
                with contextlib.ExitStack() as stack:
                    for lock in self.locks:
                        stack.enter_context(lock)
                    texts.append(self.fn(messages, p))
            except (RationalystError, ValidationError) as exc:
                raise _as_error(exc) from None
        return texts


def _spell(run: TokenRun, i: int, as_ids: bool) -> str:
    return f"token_id:{run.ids[i]}" if as_ids else run.pieces[i]


def _legacy(run: TokenRun, as_ids: bool) -> LegacyLogprobs:
    tokens = [_spell(run, i, as_ids) for i in range(len(run.ids))]
    return LegacyLogprobs(
        tokens=tokens,
        token_logprobs=list(run.logprobs),
        text_offset=list(run.offsets),
        # Only the chosen token: the model contract does not expose the alternatives.
        top_logprobs=[None if lp is None else {t: lp} for t, lp in zip(tokens, run.logprobs)],
    )


def _chat_logprobs(run: TokenRun, top: int, as_ids: bool) -> ChatLogprobs:
    content = []
    for i, lp in enumerate(run.logprobs):
        token = _spell(run, i, as_ids)
        data = list(token.encode("utf-8"))
        alternatives = [TopLogprob(token=token, logprob=lp, bytes=data)] if top > 0 else []
        content.append(TokenLogprob(token=token, logprob=lp, bytes=data, top_logprobs=alternatives))
    return ChatLogprobs(content=content)
