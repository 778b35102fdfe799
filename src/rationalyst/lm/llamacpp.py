"""The `llamacpp` backend: a GGUF file run by llama-cpp-python (the optional ``llamacpp`` extra).

It keeps the `hf` backend's contract and semantics, with three engine-specific choices:

* **Log-probs come from the raw logits, never from the completion API.** The scoring context is
  driven by ``llama_decode`` with an output row asked for exactly at the positions whose next token
  is scored (the last context token and the continuation's), and a float64 log-softmax over those
  rows gives the log-probs. `Llama.eval` with ``logits_all=True`` would project every position of
  the context onto the vocabulary as well, and keep an ``n_ctx`` x vocabulary float32 array (2.5 GB
  for Qwen2.5 at 4,096 tokens); the rows asked for are the same (bit for bit on the default model and
  Qwen2.5-Coder 0.5B; within 5e-7 in log-prob on the 1.5B, whose projection tiles its rows).
  (``create_completion(echo=True, logprobs=...)`` returns wrong values.)
* **The KV cache is reused by rewinding, only where it is what one evaluation would write.**
  llama.cpp keeps one sequence; the cache past the longest prefix it shares with the wanted context
  is dropped and only the rest is evaluated, so a request's context is evaluated once and each
  continuation costs only its own tokens (the output row after the context is kept). llama.cpp's
  kernels round by the rows in a batch (by up to 0.9 in log-prob on the Qwen2.5 builtins), so the
  batches split where `llamacpp_layout` says and only a prefix whose cache any evaluation would write
  alike is reused: a score is a function of (context, continuation), equal to the score of a fresh
  evaluation of the context and then of the continuation, whatever the cache held before. Up to
  ``prefix_cache`` such contexts are kept (`llamacpp_scoring`), so that problems scored side by side
  each extend their own trajectory's cache instead of evaluating it again.
* **Offsets are bytes.** llama.cpp tokenizes UTF-8 bytes, so the boundary rule (`boundary`) splits the
  joined text at ``len(context.encode())`` using each token's byte length.

Sampling runs in a second context on the same weights with one KV stream per row, so up to
``batch_size`` rows (the samples of all the call's prompts) decode in one forward pass per token
(`llamacpp_streams`: temperature, then top-p, as transformers samples). llama.cpp's kernels round
differently by the number of rows in a batch, so at ``batch_size`` > 1 a sample can change with what
decodes beside it; at ``batch_size`` 1 rows decode one at a time, as llama-cpp-python's own loop does.
The scoring context above is left untouched by generation. When the caller reads them, the sampled
tokens' log-probs are recomputed by one batched evaluation in the scoring context, the path
`score_many` uses, so a completion's log-probs equal its score after the prompt.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
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
from rationalyst.lm.boundary import SplitSequence, count_context_tokens
from rationalyst.lm.llamacpp_scoring import ScoringContexts
from rationalyst.lm.llamacpp_streams import StreamDecoder

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the llamacpp backend needs llama-cpp-python; install it with:\n"
    "  pip install 'rationalyst[llamacpp]'\n"
    "(there is no prebuilt wheel: pip compiles llama.cpp from source, about 5 minutes; in a checkout,\n"
    "`make llamacpp` compiles it without ggml's AMX kernels, which crash on some x86 machines)"
)

AMX_HINT = (
    "this llama-cpp-python build runs matrix products on ggml's AMX kernels (AMX_INT8 = 1), which crash "
    "with a segmentation fault in the first evaluation on some Sapphire Rapids machines "
    "(ggml_backend_amx_mul_mat, ggml-org/llama.cpp#20824; measured here). If a run dies without a "
    "traceback, rebuild without them (`make llamacpp` does):\n"
    "  CMAKE_ARGS='-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8' "
    "pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python"
)
_amx_warned = False


def warn_if_amx(system_info: str) -> bool:
    """Warn once per process when llama.cpp was built with its AMX kernels (see `AMX_HINT`): a crash
    there kills the process before Python can say why, so the remedy is logged beforehand."""
    global _amx_warned
    if "AMX_INT8 = 1" not in system_info:
        return False
    if not _amx_warned:
        log.warning(AMX_HINT)
        _amx_warned = True
    return True


def token_ends(data: bytes, pieces: Sequence[bytes]) -> list[int]:
    """The byte offset in ``data`` where each of its tokens (spelled ``pieces``) ends.

    SentencePiece vocabularies spell a space the text does not have on the first token of the text
    and of every run after a special token: such a piece's space is not counted where the text there
    does not have it."""
    ends, offset = [], 0
    for piece in pieces:
        if piece.startswith(b" ") and not data.startswith(piece, offset) and data.startswith(piece[1:], offset):
            piece = piece[1:]
        offset += len(piece)
        ends.append(min(offset, len(data)))
    return ends


def _chat_environment() -> Any:
    """The sandboxed Jinja environment transformers uses for chat templates."""
    import json

    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise RationalystError(f"chat template error: {message}")

    def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, **kwargs: Any) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **kwargs)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


class LlamaCppModel(LanguageModel):
    """A GGUF model run by llama-cpp-python, behind the `LanguageModel` contract."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        batch_size: int = 8,
        lora: str | Path | None = None,
        prefix_cache: int = 1,
    ) -> None:
        """``lora``: a GGUF LoRA file applied to the model (`lm.gguf_lora` writes one from a trained adapter).
        ``prefix_cache``: scoring contexts kept, each holding a recent scored sequence (`llamacpp_scoring`):
        problems scored side by side each extend their own; the step search reserves one a problem
        (`reserve_scoring_contexts`), except at 0 (one context, always)."""
        try:
            import llama_cpp
        except ImportError:
            raise ModelNotFoundError(INSTALL_HINT) from None
        self._lc = llama_cpp
        warn_if_amx(llama_cpp.llama_print_system_info().decode(errors="replace"))
        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        threads = n_threads or os.cpu_count() or 1
        if lora is not None and not Path(lora).is_file():
            raise ModelNotFoundError(f"GGUF LoRA file not found: {lora}")
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
                lora_path=None if lora is None else str(lora),
            )
        except (ValueError, RuntimeError) as exc:
            what = f"GGUF file {str(path)!r}" + (f" with LoRA {str(lora)!r}" if lora is not None else "")
            raise ModelNotFoundError(f"cannot load {what}: {exc}") from None
        self.lora = None if lora is None else Path(lora)
        self.name = name or f"llamacpp:{path}"
        self.path = path
        # llama.cpp may round the context up, but Llama's token and logit buffers keep the size asked.
        self.n_ctx = min(n_ctx, self.llm.n_ctx())
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        bos = int(self.llm.token_bos())
        self.bos_id: int | None = bos if bos >= 0 else None
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self.bos_id is not None
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._template: Any = None
        # The scoring contexts, driven by `llama_decode` directly (`Llama.eval` outputs logits for every
        # position or only the last): the model's own, and up to prefix_cache - 1 more (`llamacpp_scoring`).
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._reserve_contexts = prefix_cache > 0
        self._scoring = ScoringContexts(
            llama_cpp, self.llm, self._n_vocab, size=max(1, prefix_cache),
            lora=(self.llm._lora_adapter, self.llm.lora_scale) if lora is not None else None,
        )
        weakref.finalize(self, self._scoring.close)
        self._lock = threading.RLock()
        if batch_size < 1:
            raise RationalystError(f"{self.name}: batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size  # rows sampled together (KV streams of the generation context)
        self._decoder: StreamDecoder | None = None  # opened by the first `generate`

    def batch_dependence(self) -> str | None:
        """Several KV streams decode together: llama.cpp's CPU kernels round a row by how many rows a pass
        holds (`llamacpp_streams`), so a sample can change with what decodes beside it. At ``batch_size``
        1 rows decode one at a time and a problem's trace does not depend on its batch (scores never do:
        each is a fresh evaluation's)."""
        if self.batch_size > 1:
            return (f"its batch_size {self.batch_size} decodes that many rows in a pass, and llama.cpp's CPU kernels "
                    "round a row by how many rows a pass holds")
        return None

    # ----------------------------------------------------------------------------- vocabulary

    def _piece(self, token: int, special: bool = True) -> bytes:
        """The bytes a token stands for (special tokens as their text, or nothing if not ``special``)."""
        key = (token, special)
        piece = self._pieces.get(key)
        if piece is None:
            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = self._lc.llama_token_to_piece(self._vocab, token, buf, size, 0, special)
                if n >= 0:
                    piece = buf.raw[:n]
                    break
                size = -n  # the buffer was too small; llama.cpp says how large it must be
            self._pieces[key] = piece
        return piece

    def token_text(self, token: int) -> str:
        """The token as the vocabulary spells it (e.g. ``Ġ42``), like `convert_ids_to_tokens`."""
        return self._lc.llama_vocab_get_text(self._vocab, token).decode("utf-8", errors="replace")

    def _is_end(self, token: int) -> bool:
        return _is_end_of(self._lc, self._vocab, token)

    def _start_id(self) -> int:
        """The token an empty context stands for: BOS, else EOS (as the hf backend)."""
        if self.bos_id is not None:
            return self.bos_id
        eos = int(self.llm.token_eos())
        if eos < 0:
            raise RationalystError(f"{self.name}: empty context and the model has neither a BOS nor an EOS token")
        return eos

    def tokenize(self, text: str, *, add_bos: bool) -> tuple[list[int], list[int]]:
        """Token ids of ``text`` and the byte offset where each token ends.

        Special-token text (``<|im_start|>``) becomes the special token, as with Hugging Face
        tokenizers. A BOS added because the model asks for one ends at offset 0.
        """
        data = text.encode("utf-8")
        ids = self.llm.tokenize(data, add_bos=False, special=True) if data else []
        ends = token_ends(data, [self._piece(tok) for tok in ids])
        if add_bos and self.add_bos:
            ids, ends = [self._start_id(), *ids], [0, *ends]
        return ids, ends

    # ----------------------------------------------------------------------------- prompts

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if self._template is None:
            source = self.llm.metadata.get("tokenizer.chat_template")
            if not source:
                raise RationalystError(f"{self.name}: the model has no chat template; pass plain text")
            self._template = _chat_environment().from_string(source)
        specials = {}
        for key, tok in (("bos_token", self.llm.token_bos()), ("eos_token", self.llm.token_eos())):
            if tok >= 0:
                specials[key] = self.token_text(tok)
        return self._template.render(messages=list(prompt), add_generation_prompt=True, **specials)

    def _encode(self, prompt: Prompt) -> list[int]:
        # A chat template writes its own BOS; raw text gets the BOS the model asks for, if any.
        ids, _ = self.tokenize(self.render(prompt), add_bos=isinstance(prompt, str))
        return ids or [self._start_id()]

    def split(self, context: Prompt, continuation: str) -> SplitSequence:
        """Tokenize context + continuation jointly and split at the context's end (see `boundary`)."""
        text = self.render(context)
        ids, ends = self.tokenize(text + continuation, add_bos=isinstance(context, str))
        n_context = count_context_tokens(ends, len(text.encode("utf-8")))
        if n_context == 0:
            # Nothing to condition the first token on: start from BOS, as generation would.
            ids = [self._start_id(), *ids]
            n_context = 1
        if len(ids) > self.n_ctx:
            raise PromptTooLongError(
                f"{self.name}: context + continuation is {len(ids)} tokens, over n_ctx={self.n_ctx}"
            )
        return SplitSequence(ids, n_context)

    # ----------------------------------------------------------------------------- evaluation

    def _logprobs(self, ids: Sequence[int], start: int, *, fresh: bool = False) -> list[float]:
        """Log-probs of ``ids[start:]`` given the tokens before each, in a scoring context
        (`ScoringContexts.logprobs`): what one evaluation from position 0 gives, whatever the contexts
        held before; ``fresh`` evaluates from position 0 indeed (the plain reference)."""
        return self._scoring.logprobs(ids, start, fresh=fresh)

    def reserve_scoring_contexts(self, n: int) -> None:
        """Keep a scoring context for each of ``n`` sequences scored side by side (the step search's
        problems), unless ``prefix_cache`` is 0 (one context, always)."""
        if self._reserve_contexts:
            self._scoring.reserve(n)

    @property
    def forwarded_tokens(self) -> int:
        """Tokens evaluated for scoring so far (the search's meters read it, as the hf backend's)."""
        return self._scoring.forwarded

    def _score(self, seq: SplitSequence, *, fresh: bool = False) -> ContinuationScore:
        targets = seq.continuation_ids
        return ContinuationScore(
            list(targets), self._logprobs(seq.token_ids, seq.n_context, fresh=fresh), [self.token_text(t) for t in targets]
        )

    # ----------------------------------------------------------------------------- scoring

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[list[ContinuationScore]]:
        with self._lock:
            results = []
            for request in requests:
                scores = []
                for continuation in request.continuations:
                    # Rewinds to the prefix shared with what was evaluated last (the request's context).
                    scores.append(self._score(self.split(request.context, continuation)))
                results.append(scores)
            return results

    def score_full_passes(self, context: Prompt, continuations: Sequence[str]) -> list[ContinuationScore]:
        """The plain reference: a fresh evaluation of context + continuation, per continuation."""
        with self._lock:
            scores = []
            for continuation in continuations:
                scores.append(self._score(self.split(context, continuation), fresh=True))
            return scores

    # ----------------------------------------------------------------------------- generation

    def _streams(self) -> StreamDecoder:
        if self._decoder is None:
            # Callbacks that do not hold the model: a decoder holding it back would keep the weights and
            # every KV cache alive after the model is dropped, until the cyclic collector ran.
            piece = weakref.WeakMethod(self._piece)
            self._decoder = StreamDecoder(
                self._lc, self.llm.model, self.llm.context_params, n_streams=self.batch_size, n_ctx=self.n_ctx,
                is_end=functools.partial(_is_end_of, self._lc, self._vocab),
                piece=lambda t: piece()(t, special=False),
                lora=(self.llm._lora_adapter, self.llm.lora_scale) if self.lora is not None else None,
            )
        return self._decoder

    def _encode_for(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[int]]:
        """The prompts' token ids; raises before any sampling if one would not fit in ``n_ctx``."""
        encoded = [self._encode(p) for p in prompts]
        for ids, p in zip(encoded, params):
            if len(ids) + p.max_new_tokens > self.n_ctx:
                raise PromptTooLongError(
                    f"{self.name}: prompt of {len(ids)} tokens + {p.max_new_tokens} new tokens "
                    f"is over n_ctx={self.n_ctx}"
                )
        return encoded

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Sample ``params.n`` completions per prompt, up to ``batch_size`` rows decoding together.

        Sample *k* of the call (counting across prompts) draws from ``numpy.random.default_rng(seed + k)``;
        with no seed, a random base seed is drawn. At ``batch_size`` 1 a sample's tokens do not depend
        on the other prompts of the call; above, they may in the last bits (see `llamacpp_streams`).
        """
        seeds = None if params.seed is None else [params.seed + p * params.n for p in range(len(prompts))]
        return self._sample_all(prompts, [params] * len(prompts), seeds)

    def generate_seeded(
        self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int | None]
    ) -> list[list[Completion]]:
        """Prompt *i* sampled as ``generate([prompts[i]], params)`` with seed ``seeds[i]``, all rows in one
        decode loop."""
        return self.generate_mixed(prompts, [params.model_copy(update={"seed": s}) for s in seeds])

    def generate_mixed(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Completion]]:
        """Prompt *i* sampled by its own ``params[i]`` (sample *s* from ``default_rng(seed + s)``), all rows
        in one decode loop."""
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        return self._sample_all(prompts, params, [p.seed for p in params])

    def _sample_all(
        self, prompts: Sequence[Prompt], params: Sequence[SamplingParams], seeds: Sequence[int | None] | None
    ) -> list[list[Completion]]:
        encoded = self._encode_for(prompts, params)
        if seeds is None:  # one random base for the call, sample k seeded base + k
            base = _random_seed()
            seeds = [base + sum(p.n for p in params[:i]) for i in range(len(prompts))]
        seeds = [s if s is not None else _random_seed() for s in seeds]
        with self._lock:
            sampled = self._streams().sample_each(encoded, params, seeds)
            return [
                [self._completion(ids, s.token_ids, s.finish_reason, p) for s in row]
                for ids, p, row in zip(encoded, params, sampled)
            ]

    def open_stream(self) -> LlamaCppStream:
        """A decode loop that prompts may join at any step (as `HFModel.open_stream`), for the batched search."""
        return LlamaCppStream(self)

    def _completion(self, prompt: list[int], tokens: list[int], finish: str, params: SamplingParams) -> Completion:
        """A sample's text (cut at the first stop string) and, when asked for, the raw model's log-probs
        of its tokens, from one batched evaluation after the prompt: exactly what `score` computes (the
        sampler's temperature and top-p do not enter)."""
        logprobs: list[float] = []
        if tokens and params.logprobs:
            logprobs = self._logprobs([*prompt, *tokens], len(prompt))
        text = b"".join(self._piece(t, special=False) for t in tokens).decode("utf-8", errors="replace")
        cut = _first_stop(text, params.stop)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Completion(text=text, token_ids=tokens, logprobs=logprobs, finish_reason=finish)


class LlamaCppStream:
    """Continuous batching on llama.cpp for the batched search (`search.batch`): prompts added at any
    time join the stream decoder's loop as streams free up, and `step` hands back each prompt's samples
    the step they finish, with the seconds spent on them (prefill plus a share of each step)."""

    def __init__(self, model: LlamaCppModel) -> None:
        self.model = model
        self.loop = model._streams().loop()
        self.prompts: dict[Any, tuple[list[int], SamplingParams]] = {}

    @property
    def busy(self) -> bool:
        return self.loop.busy

    def add(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams], tags: Sequence[Any]) -> None:
        """Queue ``prompts``, each sampled by its own params and known by its (hashable, unique) tag.
        Raises `RationalystError` before queueing any if one is too long."""
        encoded = self.model._encode_for(prompts, params)
        for ids, p, tag in zip(encoded, params, tags):
            self.prompts[tag] = (ids, p)
            self.loop.add(ids, p, p.seed if p.seed is not None else _random_seed(), tag)

    def step(self) -> list[tuple[Any, list[Completion], float]]:
        """One forward pass of every active row; the prompts that finished, as (tag, samples, seconds)."""
        with self.model._lock:
            out = []
            for tag, samples, seconds in self.loop.step():
                ids, p = self.prompts.pop(tag)
                start = time.perf_counter()
                completions = [self.model._completion(ids, s.token_ids, s.finish_reason, p) for s in samples]
                out.append((tag, completions, seconds + time.perf_counter() - start))
            return out


def _is_end_of(lc: Any, vocab: Any, token: int) -> bool:
    """Whether ``token`` ends generation in ``vocab`` (an end-of-generation token)."""
    return bool(lc.llama_vocab_is_eog(vocab, token))


def _random_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def _first_stop(text: str, stops: Sequence[str]) -> int:
    """Offset of the earliest stop string in ``text``, or -1."""
    return min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
