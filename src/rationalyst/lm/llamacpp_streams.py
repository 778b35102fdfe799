"""Sampling many completions at once on llama.cpp: one decode call per token step for every row.

llama-cpp-python's `Llama` holds one sequence, so *b* prompts with *n* samples each cost *b·n* token
loops, one token per forward pass. On two CPU cores that wastes most of the machine: a forward pass of
the 1.5B agent costs about 143 ms for one row, 284 ms for 8 and 466 ms for 24 (measured 2026-11-27),
so rows decoded together come out up to 7x faster. This module opens a second context on the same
weights with one KV stream per row (``n_seq_max`` streams, ``kv_unified=False``, every other setting
copied from the scoring context) and decodes all active rows in one `llama_decode` per step.

What a row's logits depend on (measured on this machine's build):

* Not on the other rows' tokens or cells: each stream attends only to its own cells. (One shared
  stream, ``kv_unified=True``, does not keep that: the cells a row lands in change the attention's
  summation order.)
* But on how many rows decode together: llama.cpp's CPU kernels pick their path by the number of
  rows in a batch (one row; a few; 4 or more on the repacked Q4_0/Q4_K/IQ4_NL weights, 8 or more
  otherwise), and the paths round differently. So at ``batch_size`` > 1 a sample can change with
  what decodes beside it, as on vLLM or a llama.cpp server with parallel slots: reproducible for the
  same run and settings, not across batch sizes. At ``batch_size`` 1 rows decode one at a time by
  the one-row path, llama-cpp-python's own generation loop, whatever else the call holds.
* A decode step's attention (one query token per stream) also rounds unlike a prefill's (several):
  a sampled token's logits differ from `score`'s for the same tokens (by up to 0.76 on the default
  model at some positions), which is why the log-probs a caller reads are recomputed there.

Prefix reuse: a stream keeps its prompt after a call. A prompt is prefilled into the free stream that
holds its longest prefix (the previous prompt of the same problem, usually) and copied into the
streams of its other samples, so each step evaluates only its new tokens; a prompt chunk never leaves
a one-token tail. Only prefilled positions are reused, never the KV a decode step wrote (the other
attention path). Streams are reused least-recently-used first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rationalyst.errors import RationalystError
from rationalyst.lm.base import SamplingParams

# How many of the most probable tokens top-p first looks among; it sorts the whole vocabulary only
# when these do not reach top_p (a near-flat distribution).
_TOP_P_SHORTLIST = 64


@dataclass
class SampledTokens:
    """One completion's token ids, why it ended (``stop`` or ``length``), and whether a stop string did it."""

    token_ids: list[int]
    finish_reason: str


@dataclass
class _Row:
    prompt: int
    sample: int
    stream: int
    rng: np.random.Generator
    start: int  # prompt length: the first sampled token's position
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    pending: int = -1  # the sampled token the next step evaluates


class StreamDecoder:
    """A llama.cpp context with ``n_streams`` KV streams on a loaded model."""

    def __init__(self, lc: Any, model: Any, base_params: Any, *, n_streams: int, n_ctx: int, n_batch: int = 512):
        """``base_params``: the scoring context's ``llama_context_params``; everything but the stream
        layout is copied from it (flash attention, KV types, threads), since a different attention path
        alone moves the logits of the default model by up to 1.6."""
        if n_streams > int(lc.llama_max_parallel_sequences()):
            raise RationalystError(
                f"llamacpp: batch_size {n_streams} is over llama.cpp's "
                f"{int(lc.llama_max_parallel_sequences())} parallel sequences"
            )
        self._lc = lc
        params = type(base_params).from_buffer_copy(base_params)
        params.n_seq_max = n_streams
        params.n_ctx = n_ctx * n_streams  # llama.cpp gives each stream n_ctx / n_seq_max cells
        params.n_batch = params.n_ubatch = max(n_batch, n_streams)
        params.kv_unified = False
        params.no_perf = True
        self._ctx = lc.llama_init_from_model(model, params)
        if not self._ctx:
            raise RationalystError(
                f"llamacpp: cannot open a context of {n_streams} streams of {n_ctx} tokens (out of memory?); "
                "lower batch_size or n_ctx"
            )
        self._memory = lc.llama_get_memory(self._ctx)
        self._n_vocab = int(lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model)))
        self._chunk = int(params.n_ubatch)
        self._batch = lc.llama_batch_init(self._chunk, 0, 1)
        self.n_streams = n_streams
        self.n_ctx = int(lc.llama_n_ctx_seq(self._ctx))
        self._held: list[list[int]] = [[] for _ in range(n_streams)]
        self._stamp = [0] * n_streams
        self._clock = 0
        self.forwarded = 0  # tokens evaluated, for measurement

    def close(self) -> None:
        if self._ctx:
            self._lc.llama_batch_free(self._batch)
            self._lc.llama_free(self._ctx)
            self._ctx = None

    def __del__(self) -> None:  # pragma: no cover - interpreter teardown order varies
        try:
            self.close()
        except Exception:
            pass

    # ----------------------------------------------------------------------------- llama.cpp calls

    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """One `llama_decode` of (token, position, stream, want logits) entries."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, pos, stream, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = stream
            batch.logits[i] = logits
        rc = int(self._lc.llama_decode(self._ctx, batch))
        if rc != 0:
            raise RationalystError(f"llamacpp: llama_decode failed with code {rc} ({len(entries)} tokens)")
        self.forwarded += len(entries)

    def _logits(self, i: int) -> np.ndarray:
        row = self._lc.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(row, shape=(self._n_vocab,)).copy()

    def _touch(self, stream: int) -> None:
        self._clock += 1
        self._stamp[stream] = self._clock

    def _prefill(self, stream: int, ids: Sequence[int]) -> np.ndarray:
        """Make ``stream`` hold ``ids`` (evaluating only what it does not hold) and return the last logits."""
        held = self._held[stream]
        common = _common_prefix(held, ids)
        common = min(common, max(len(ids) - 2, 0))  # evaluate at least two tokens (a one-token batch
        # takes the one-row kernel path, and its KV would differ from a prefill's)
        self._lc.llama_memory_seq_rm(self._memory, stream, common, -1)
        i = common
        while i < len(ids):
            take = min(self._chunk, len(ids) - i)
            if len(ids) - i - take == 1:
                take -= 1  # never leave a one-token chunk
            last = i + take == len(ids)
            self._decode([(ids[j], j, stream, last and j == i + take - 1) for j in range(i, i + take)])
            i += take
        self._held[stream] = list(ids) if len(ids) >= 2 else []
        self._touch(stream)
        return self._logits(-1)

    def _copy(self, source: int, target: int) -> None:
        self._lc.llama_memory_seq_rm(self._memory, target, -1, -1)
        self._lc.llama_memory_seq_cp(self._memory, source, target, -1, -1)
        self._held[target] = list(self._held[source])
        self._touch(target)

    # ----------------------------------------------------------------------------- sampling

    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        base_seed: int,
        *,
        is_end: Callable[[int], bool],
        piece: Callable[[int], bytes],
    ) -> list[list[SampledTokens]]:
        """``params.n`` samples of every prompt; sample *k* of the call draws from ``default_rng(base_seed + k)``.

        Rows join as streams free up (a prompt's samples may start at different steps) and leave the
        step they finish. At one stream, rows run one after another.
        """
        n = params.n
        waiting = deque((p, s) for p in range(len(prompts)) for s in range(n))
        results: list[list[SampledTokens | None]] = [[None] * n for _ in prompts]
        active: list[_Row] = []

        def finish(row: _Row, reason: str) -> None:
            results[row.prompt][row.sample] = SampledTokens(row.tokens, reason)

        def take(row: _Row, token: int) -> bool:
            """Add a drawn token to the row; True while the row goes on."""
            if is_end(token):
                finish(row, "stop")
                return False
            row.tokens.append(token)
            if params.stop:
                row.text += piece(token)
                if _has_stop(row.text, params.stop):
                    finish(row, "stop")
                    return False
            if len(row.tokens) >= params.max_new_tokens:
                finish(row, "length")
                return False
            row.pending = token
            return True

        while waiting or active:
            busy = {row.stream for row in active}
            free = [s for s in range(self.n_streams) if s not in busy]
            while waiting and free:
                p = waiting[0][0]
                joining = []
                while waiting and waiting[0][0] == p and len(joining) < len(free):
                    joining.append(waiting.popleft()[1])
                ids = prompts[p]
                home = max(free, key=lambda s: (_common_prefix(self._held[s], ids), -self._stamp[s]))
                free.remove(home)
                logits = self._prefill(home, ids)
                free.sort(key=lambda s: self._stamp[s])
                streams = [home]
                for _ in joining[1:]:
                    target = free.pop(0)
                    self._copy(home, target)
                    streams.append(target)
                rngs = [np.random.default_rng(base_seed + p * n + s) for s in joining]
                first = draw_tokens(np.broadcast_to(logits, (len(joining), logits.shape[0])), params, rngs)
                for s, stream, token, rng in zip(joining, streams, first, rngs):
                    row = _Row(prompt=p, sample=s, stream=stream, rng=rng, start=len(ids))
                    if take(row, token):
                        active.append(row)
                    else:
                        free.append(stream)
            if not active:
                continue
            # Position of the pending token: after the prompt and the tokens already evaluated.
            self._decode([(row.pending, row.start + len(row.tokens) - 1, row.stream, True) for row in active])
            logits = np.stack([self._logits(i) for i in range(len(active))])
            tokens = draw_tokens(logits, params, [row.rng for row in active])
            active = [row for row, token in zip(active, tokens) if take(row, token)]
        return [[r for r in row if r is not None] for row in results]


def draw_tokens(logits: np.ndarray, params: SamplingParams, rngs: Sequence[np.random.Generator]) -> list[int]:
    """One token per row of ``logits``: greedy, or temperature, then nucleus (top-p) on the tempered
    distribution, as transformers samples; row *i* draws from ``rngs[i]``."""
    if params.greedy:
        return [int(t) for t in np.argmax(logits, axis=1)]
    x = np.asarray(logits, dtype=np.float64) / params.temperature
    weights = np.exp(x - x.max(axis=1, keepdims=True))
    totals = weights.sum(axis=1)
    tokens = []
    for i, rng in enumerate(rngs):
        w = weights[i]
        if params.top_p < 1.0:
            keep = _nucleus(w, totals[i], params.top_p)
            kept = w[keep]
        else:
            keep, kept = None, w
        cdf = np.cumsum(kept)
        j = int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))
        tokens.append(int(keep[j]) if keep is not None else j)
    return tokens


def _nucleus(weights: np.ndarray, total: float, top_p: float) -> np.ndarray:
    """Ids of the smallest most-probable set whose probability reaches ``top_p``, in id order.

    Ties are broken by id, as a stable sort of the whole vocabulary would; only a shortlist is sorted
    unless it falls short of ``top_p``.
    """
    size = min(_TOP_P_SHORTLIST, weights.shape[0])
    threshold = np.partition(weights, weights.shape[0] - size)[weights.shape[0] - size]
    shortlist = np.flatnonzero(weights >= threshold)
    order = shortlist[np.argsort(-weights[shortlist], kind="stable")]
    cumulative = np.cumsum(weights[order]) / total
    cut = int(np.searchsorted(cumulative, top_p))
    if cut >= len(order):  # the shortlist does not reach top_p: sort everything
        order = np.argsort(-weights, kind="stable")
        cumulative = np.cumsum(weights[order]) / total
        cut = min(int(np.searchsorted(cumulative, top_p)), len(order) - 1)
    return np.sort(order[: cut + 1])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    m = min(len(a), len(b))
    if m == 0:
        return 0
    differ = np.flatnonzero(np.asarray(a[:m]) != np.asarray(b[:m]))
    return int(differ[0]) if differ.size else m


def _has_stop(text: bytes, stops: Sequence[str]) -> bool:
    decoded = text.decode("utf-8", errors="replace")
    return any(s and s in decoded for s in stops)
