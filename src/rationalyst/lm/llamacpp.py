"""The `llamacpp` backend: a GGUF file run by llama-cpp-python (the optional ``llamacpp`` extra).

It keeps the `hf` backend's contract and semantics, with three engine-specific choices:

* **Log-probs come from the raw logits, never from the completion API.** The model is opened with
  ``logits_all=True``; `Llama.eval` then leaves one row of logits per evaluated position in
  ``Llama.scores`` (row *i* holds the logits after token *i*), and a float64 log-softmax over those
  rows gives the log-probs. (``create_completion(echo=True, logprobs=...)`` returns wrong values.)
* **The KV cache is reused by rewinding.** llama.cpp keeps one sequence; setting ``n_tokens`` back to
  *k* and calling `eval` drops the cache past *k* and evaluates only the new tokens. Before every
  evaluation the cache is rewound to the longest prefix it shares with the wanted tokens, so a
  request's context is evaluated once and each continuation costs only its own tokens.
* **Offsets are bytes.** llama.cpp tokenizes UTF-8 bytes, so the boundary rule (`boundary`) splits the
  joined text at ``len(context.encode())`` using each token's byte length.

Sampling runs through the low-level `Llama.generate` token loop, so the exact token ids are known;
their log-probs are then recomputed by one batched evaluation, the same path `score_many` uses.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from rationalyst.errors import ModelNotFoundError, RationalystError
from rationalyst.lm.base import (
    Completion,
    ContinuationScore,
    LanguageModel,
    Prompt,
    SamplingParams,
    ScoreRequest,
)
from rationalyst.lm.boundary import SplitSequence, count_context_tokens

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the llamacpp backend needs llama-cpp-python; install it with:\n"
    "  pip install 'rationalyst[llamacpp]'\n"
    "(there is no prebuilt wheel: pip compiles llama.cpp from source, about 5 minutes)"
)


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    x = np.asarray(logits, dtype=np.float64)
    peak = x.max(axis=-1, keepdims=True)
    return x - (peak + np.log(np.exp(x - peak).sum(axis=-1, keepdims=True)))


def _chat_environment() -> Any:
    """The sandboxed Jinja environment transformers uses for chat templates."""
    import json

    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise RationalystError(f"chat template error: {message}")

    def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


class LlamaCppModel(LanguageModel):
    """A GGUF model run by llama-cpp-python, behind the `LanguageModel` contract."""

    def __init__(
        self, path: str | Path, *, name: str = "", n_ctx: int = 4096, n_threads: int | None = None
    ) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise ModelNotFoundError(INSTALL_HINT) from None
        self._lc = llama_cpp
        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        threads = n_threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=True,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelNotFoundError(f"cannot load GGUF file {str(path)!r}: {exc}") from None
        self.name = name or f"llamacpp:{path}"
        self.path = path
        self.n_ctx = self.llm.n_ctx()
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        bos = int(self.llm.token_bos())
        self.bos_id: int | None = bos if bos >= 0 else None
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self.bos_id is not None
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._template: Any = None
        self._lock = threading.RLock()

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
        return bool(self._lc.llama_vocab_is_eog(self._vocab, token))

    def _start_id(self) -> int:
        if self.bos_id is None:
            raise RationalystError(f"{self.name}: empty context and the model has no BOS token")
        return self.bos_id

    def tokenize(self, text: str, *, add_bos: bool) -> tuple[list[int], list[int]]:
        """Token ids of ``text`` and the byte offset where each token ends.

        Special-token text (``<|im_start|>``) becomes the special token, as with Hugging Face
        tokenizers. A BOS added because the model asks for one ends at offset 0.
        """
        data = text.encode("utf-8")
        ids = self.llm.tokenize(data, add_bos=False, special=True) if data else []
        ends: list[int] = []
        total = 0
        for tok in ids:
            total += len(self._piece(tok))
            ends.append(total)
        if total > len(data):
            # SentencePiece vocabularies spell a leading space the text does not have.
            shift = total - len(data)
            ends = [max(end - shift, 0) for end in ends]
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
            raise RationalystError(
                f"{self.name}: context + continuation is {len(ids)} tokens, over n_ctx={self.n_ctx}"
            )
        return SplitSequence(ids, n_context)

    # ----------------------------------------------------------------------------- evaluation

    def _rewind(self, n: int) -> None:
        """Keep only the first ``n`` evaluated tokens; the next `eval` drops the KV cache past them."""
        self.llm.n_tokens = n
        # Tell Llama.generate that the context's last logits are stale (they may belong to a later
        # position), so it re-evaluates at least one prompt token before sampling.
        self.llm._requires_eval = True

    def _eval_to(self, ids: Sequence[int]) -> None:
        """Make the model hold exactly ``ids``, evaluating only what its cache does not already hold.

        Invariant: rows ``[0, n_tokens)`` of ``llm.scores`` are the logits after
        ``llm.input_ids[:n_tokens]``, since every `eval` writes the rows of what it evaluates.
        """
        llm = self.llm
        held = llm.input_ids[: llm.n_tokens]
        m = min(len(held), len(ids))
        differ = np.flatnonzero(held[:m] != np.asarray(ids[:m], dtype=held.dtype))
        common = int(differ[0]) if differ.size else m
        self._rewind(common)
        if common < len(ids):
            llm.eval(list(ids[common:]))

    def _logprobs(self, ids: Sequence[int], start: int) -> list[float]:
        """Log-probs of ``ids[start:]``, each from the logits one position earlier (all held)."""
        if start >= len(ids):
            return []
        rows = log_softmax_rows(self.llm.scores[start - 1 : len(ids) - 1])
        targets = np.asarray(ids[start:], dtype=np.intp)
        return rows[np.arange(len(targets)), targets].tolist()

    def _score(self, seq: SplitSequence) -> ContinuationScore:
        targets = seq.continuation_ids
        return ContinuationScore(
            list(targets), self._logprobs(seq.token_ids, seq.n_context), [self.token_text(t) for t in targets]
        )

    # ----------------------------------------------------------------------------- scoring

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[list[ContinuationScore]]:
        with self._lock:
            results = []
            for request in requests:
                scores = []
                for continuation in request.continuations:
                    seq = self.split(request.context, continuation)
                    # Rewinds to the prefix shared with what was evaluated last (the request's
                    # context, and any leading tokens shared with the previous continuation).
                    self._eval_to(seq.token_ids)
                    scores.append(self._score(seq))
                results.append(scores)
            return results

    def score_full_passes(self, context: Prompt, continuations: Sequence[str]) -> list[ContinuationScore]:
        """The plain reference: a fresh evaluation of context + continuation, per continuation."""
        with self._lock:
            scores = []
            for continuation in continuations:
                seq = self.split(context, continuation)
                self.llm.reset()
                self._rewind(0)
                self.llm.eval(seq.token_ids)
                scores.append(self._score(seq))
            return scores

    # ----------------------------------------------------------------------------- generation

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Sample ``params.n`` completions per prompt.

        Sample *k* of the call (counting across prompts) uses seed ``params.seed + k``; with no seed,
        a random base seed is drawn.
        """
        encoded = [self._encode(p) for p in prompts]
        for ids in encoded:
            if len(ids) + params.max_new_tokens > self.n_ctx:
                raise RationalystError(
                    f"{self.name}: prompt of {len(ids)} tokens + {params.max_new_tokens} new tokens "
                    f"is over n_ctx={self.n_ctx}"
                )
        base = params.seed if params.seed is not None else random.SystemRandom().randrange(2**32)
        results: list[list[Completion]] = []
        k = 0
        with self._lock:
            for ids in encoded:
                completions = []
                for _ in range(params.n):
                    completions.append(self._sample(ids, params, (base + k) % 2**32))
                    k += 1
                results.append(completions)
        return results

    def _sample(self, prompt: list[int], params: SamplingParams, seed: int) -> Completion:
        llm = self.llm
        # Keep the cached prompt but make generate() evaluate its last token again, so sampling
        # starts from fresh logits of that position.
        self._rewind(min(llm.n_tokens, len(prompt) - 1))
        llm.set_seed(seed)
        tokens: list[int] = []
        text_bytes = b""
        finish = "length"
        cut = -1
        stream = llm.generate(
            prompt,
            top_k=0,  # disabled
            top_p=params.top_p,
            min_p=0.0,
            typical_p=1.0,
            temp=params.temperature,  # 0 selects llama.cpp's greedy sampler
            repeat_penalty=1.0,
            reset=True,
        )
        try:
            for token in stream:
                if self._is_end(token):
                    finish = "stop"
                    break
                tokens.append(token)
                if params.stop:
                    text_bytes += self._piece(token, special=False)
                    cut = _first_stop(text_bytes.decode("utf-8", errors="replace"), params.stop)
                    if cut >= 0:
                        break
                if len(tokens) >= params.max_new_tokens:
                    break
        finally:
            stream.close()
        # The raw model's log-probs of the sampled tokens, by one batched evaluation after the prompt
        # (the sampler's temperature and top-p do not enter them).
        self._eval_to([*prompt, *tokens])
        logprobs = self._logprobs([*prompt, *tokens], len(prompt))
        text = b"".join(self._piece(t, special=False) for t in tokens).decode("utf-8", errors="replace")
        cut = _first_stop(text, params.stop)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Completion(text=text, token_ids=tokens, logprobs=logprobs, finish_reason=finish)


def _first_stop(text: str, stops: Sequence[str]) -> int:
    """Offset of the earliest stop string in ``text``, or -1."""
    return min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
