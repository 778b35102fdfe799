"""Sampling many completions at once on llama.cpp: one decode call per token step for every row.

llama-cpp-python's `Llama` holds one sequence, so *b* prompts with *n* samples each cost *b·n* token
loops, one token per forward pass. On two CPU cores that wastes most of the machine: a forward pass of
the 1.5B agent costs about 0.1 s for one row, 0.24 s for 8 and 0.46 s for 24 (measured by hand
2026-11-27), so a full batch of rows decodes about 5x the tokens a second of one row. This module opens a second context on the same
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
streams of its other samples, so each step evaluates little more than its new tokens: only the part of
a held prefix whose cache one evaluation of the new prompt would write alike is reused, and the batches
split where `llamacpp_layout` says, so a prompt's logits (and at ``batch_size`` 1 its samples) do not
depend on what the streams held before. Where another stream, busy or free, holds a longer prefix (the instructions and
demonstrations every prompt of a batch shares, a document's earlier insertion point), that stream is
copied in first. Only prefilled positions are reused, never the KV a decode step wrote (the other
attention path). Streams holding a prompt that another stream also holds are overwritten first, then
the least recently used, so one copy of each problem's last prompt survives for its next step.

Row placement: llama.cpp puts into one pass over the weights only rows of consecutive stream ids,
listed in order (``split_equal(..., sequential)`` with one stream per sequence). Rows finish at
different steps and new ones take whichever streams are free, so before each step the loop moves the
rows that lie outside the cheapest run of consecutive streams into that run's free streams (a
whole-stream copy each) and lists them in stream order: one pass a step, not one per run of rows.
"""

from __future__ import annotations

import ctypes
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rationalyst.errors import RationalystError
from rationalyst.lm import llamacpp_layout as layout
from rationalyst.lm.base import SamplingParams
from rationalyst.lm.boundary import common_prefix_length

# How many of the most probable tokens top-p first looks among; it sorts the whole vocabulary only
# when these do not reach top_p (a near-flat distribution).
_TOP_P_SHORTLIST = 64

# Least number of prompt tokens another stream must hold beyond what the home stream holds for its
# cache to be copied in first. A copy moves a whole stream (n_ctx cells: ~117 MB for the 1.5B agent at
# 4096, about 20 ms on this machine) where a prefill costs about 10 ms a token.
_MIN_BORROWED_TOKENS = 16


@dataclass
class SampledTokens:
    """One completion's token ids and why it ended (``stop``: end token or stop string; ``length``)."""

    token_ids: list[int]
    finish_reason: str


@dataclass
class _Request:
    """A prompt's samples: sample *s* draws from ``default_rng(seed + s)``."""

    tag: Any
    ids: list[int]
    params: SamplingParams
    seed: int
    waiting: deque[int]  # samples not started yet
    results: list[SampledTokens | None]
    seconds: float = 0.0

    @property
    def done(self) -> bool:
        return all(r is not None for r in self.results)


@dataclass
class _Row:
    request: _Request
    sample: int
    stream: int
    rng: np.random.Generator
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    pending: int = -1  # the sampled token the next step evaluates


def decode_entries(lc: Any, ctx: Any, batch: Any, entries: Sequence[tuple[int, int, int, bool]]) -> None:
    """One `llama_decode` on ``ctx`` of (token, position, stream, want logits) entries, through ``batch``
    (a ``llama_batch_init`` batch of at least ``len(entries)`` tokens). Only the entries that want
    logits get an output row (``llama_get_logits`` lists them in entry order); the others cost no
    output projection."""
    batch.n_tokens = len(entries)
    for i, (token, pos, stream, logits) in enumerate(entries):
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = stream
        batch.logits[i] = logits
    rc = int(lc.llama_decode(ctx, batch))
    if rc != 0:
        raise RationalystError(f"llamacpp: llama_decode failed with code {rc} ({len(entries)} tokens)")


class StreamDecoder:
    """A llama.cpp context with ``n_streams`` KV streams on a loaded model."""

    def __init__(
        self,
        lc: Any,
        model: Any,
        base_params: Any,
        *,
        n_streams: int,
        n_ctx: int,
        is_end: Callable[[int], bool],
        piece: Callable[[int], bytes],
        n_batch: int = 512,
        lora: tuple[Any, float] | None = None,
    ):
        """``base_params``: the scoring context's ``llama_context_params``; everything but the stream
        layout is copied from it (flash attention, KV types, threads), since a different attention path
        alone moves the logits of the default model by up to 1.6. ``lora``: the model's LoRA adapter and
        its scale, set on this context as on the scoring one (an adapter belongs to a context)."""
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
        if lora is not None:
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(lora[0])
            scales = (ctypes.c_float * 1)(lora[1])
            if lc.llama_set_adapters_lora(self._ctx, adapters, 1, scales):
                lc.llama_free(self._ctx)
                raise RationalystError("llamacpp: cannot set the LoRA adapter on the streams' context")
        self._memory = lc.llama_get_memory(self._ctx)
        self._n_vocab = int(lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model)))
        self._chunk = int(params.n_ubatch)
        self._batch = lc.llama_batch_init(self._chunk, 0, 1)
        self.n_streams = n_streams
        self.n_ctx = int(lc.llama_n_ctx_seq(self._ctx))
        self._held: list[list[int]] = [[] for _ in range(n_streams)]
        self._canonical = [0] * n_streams  # leading held tokens whose cache is reusable (`_reusable`)
        # Streams a copy was queued into: llama.cpp moves the cells at the next decode, so until then
        # they are not read from.
        self._unsettled: set[int] = set()
        self._stamp = [0] * n_streams
        self._clock = 0
        self.forwarded = 0  # tokens evaluated, for measurement
        self.moved = 0  # rows moved into a run of consecutive streams (`DecodeLoop._gather`), for measurement
        self.is_end = is_end
        self.piece = piece  # a token's bytes as text (no special-token text)
        self._loops: weakref.WeakSet[DecodeLoop] = weakref.WeakSet()  # a dropped loop frees its streams

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
        decode_entries(self._lc, self._ctx, self._batch, entries)
        self._unsettled.clear()
        self.forwarded += len(entries)

    def _logits(self, i: int) -> np.ndarray:
        row = self._lc.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(row, shape=(self._n_vocab,)).copy()

    def _touch(self, stream: int) -> None:
        self._clock += 1
        self._stamp[stream] = self._clock

    def _reusable(self, stream: int, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` ``stream`` holds with the cache one evaluation of them would
        write (`llamacpp_layout`)."""
        return min(common_prefix_length(self._held[stream], ids), self._canonical[stream])

    def _prefill(self, stream: int, ids: Sequence[int]) -> np.ndarray:
        """Make ``stream`` hold ``ids`` (evaluating only what neither it nor, via `_borrow_prefix`, another
        stream holds) and return the last logits: those of one evaluation of ``ids`` from position 0
        in the batches of `llamacpp_layout`, whatever the streams held before."""
        self._borrow_prefix(stream, ids)
        begin = layout.resume_point(self._reusable(stream, ids), len(ids))
        self._lc.llama_memory_seq_rm(self._memory, stream, begin, -1)
        for i, stop in layout.chunks(begin, len(ids), self._chunk):
            last = stop == len(ids)
            self._decode([(ids[j], j, stream, last and j == stop - 1) for j in range(i, stop)])
        self._held[stream] = list(ids)
        self._canonical[stream] = layout.canonical_end(begin, len(ids))
        self._touch(stream)
        return self._logits(-1)

    def _borrow_prefix(self, home: int, ids: Sequence[int]) -> None:
        """Copy into ``home`` the stream, busy or free, whose prefilled prompt shares the longest reusable
        prefix with ``ids``, when that is at least `_MIN_BORROWED_TOKENS` more than ``home``'s. The
        prompts of a batch share their instructions and demonstrations, and a document's later
        insertion points extend its earlier ones: without this, every stream a batch starts in would
        prefill them again. Only prompt positions are kept (the prefill trims the copy at the shared
        prefix, dropping a busy stream's decoded cells)."""
        best, longest = None, self._reusable(home, ids) + _MIN_BORROWED_TOKENS - 1
        for stream, held in enumerate(self._held):
            if stream == home or stream in self._unsettled or self._canonical[stream] <= longest:
                continue
            shared = self._reusable(stream, ids)
            if shared > longest:
                best, longest = stream, shared
        if best is not None:
            self._copy(best, home)

    def home_for(self, ids: Sequence[int], free: Sequence[int]) -> int:
        """The free stream to prefill ``ids`` into: one whose whole prompt ``ids`` extends (the same
        problem's previous step: nothing is lost by overwriting it), the longest such; else the first to
        overwrite by `eviction_order`."""
        extended = [s for s in free if self._held[s] and common_prefix_length(self._held[s], ids) == len(self._held[s])]
        if extended:
            return max(extended, key=lambda s: len(self._held[s]))
        return min(free, key=self.eviction_order)

    def eviction_order(self, stream: int) -> tuple[bool, int]:
        """Sort key of the free streams to overwrite first: those whose prompt another stream also holds
        (the copies a request made for its samples), then the least recently used; so each problem's
        last prompt stays in one stream for its next step to extend."""
        held = self._held[stream]
        alone = bool(held) and not any(
            other is not held and other == held for s, other in enumerate(self._held) if s != stream
        )
        return (alone, self._stamp[stream])

    def _copy(self, source: int, target: int) -> None:
        """Queue a copy of ``source``'s cells into ``target`` (across streams llama.cpp copies the whole
        stream at the next decode)."""
        self._lc.llama_memory_seq_rm(self._memory, target, -1, -1)
        self._lc.llama_memory_seq_cp(self._memory, source, target, -1, -1)
        self._held[target] = list(self._held[source])
        self._canonical[target] = self._canonical[source]
        self._unsettled.add(target)
        self._touch(target)

    # ----------------------------------------------------------------------------- decode loops

    def loop(self) -> DecodeLoop:
        """A new decode loop on these streams (several may live at once; each takes free streams)."""
        loop = DecodeLoop(self)
        self._loops.add(loop)
        return loop

    def free_streams(self) -> list[int]:
        """Streams no live loop's row is decoding in."""
        used = {row.stream for loop in self._loops for row in loop.active}
        return [s for s in range(self.n_streams) if s not in used]

    def sample(self, prompts: Sequence[Sequence[int]], params: SamplingParams, base_seed: int) -> list[list[SampledTokens]]:
        """``params.n`` samples of every prompt; sample *k* of the call (counting across prompts) draws
        from ``default_rng(base_seed + k)``."""
        return self.sample_each(prompts, [params] * len(prompts), [base_seed + p * params.n for p in range(len(prompts))])

    def sample_each(
        self, prompts: Sequence[Sequence[int]], params: Sequence[SamplingParams], seeds: Sequence[int]
    ) -> list[list[SampledTokens]]:
        """Prompt *i*'s ``params[i].n`` samples, sample *s* seeded ``seeds[i] + s``: run to the end."""
        loop = self.loop()
        for i, (ids, p, seed) in enumerate(zip(prompts, params, seeds)):
            loop.add(ids, p, seed, i)
        out: list[list[SampledTokens]] = [[] for _ in prompts]
        while loop.busy:
            for i, samples, _ in loop.step():
                out[i] = samples
        return out


class DecodeLoop:
    """Requests decoding together on a `StreamDecoder`'s streams: `add` at any time, `step` one forward
    pass at a time (continuous batching, as vLLM's ``add_request`` / ``step``). Rows join as streams free
    up (a request's samples may start at different steps) and leave the step they finish; at one
    stream, rows run one after another."""

    def __init__(self, decoder: StreamDecoder) -> None:
        self.decoder = decoder
        self.queue: deque[_Request] = deque()
        self.active: list[_Row] = []

    @property
    def busy(self) -> bool:
        """Whether any request is decoding or waiting for a stream."""
        return bool(self.active or self.queue)

    def add(self, ids: Sequence[int], params: SamplingParams, seed: int, tag: Any) -> None:
        """Queue ``params.n`` samples of prompt ``ids`` (sample *s* seeded ``seed + s``), known by ``tag``;
        they start at the next `step` as streams free up."""
        self.queue.append(_Request(tag, list(ids), params, seed, deque(range(params.n)), [None] * params.n))

    def step(self) -> list[tuple[Any, list[SampledTokens], float]]:
        """Start what fits, then one forward pass of every active row; the requests that finished, as
        (tag, samples, seconds: their prefills and their rows' share of each step)."""
        d = self.decoder
        finished: list[_Request] = []
        self._admit(finished)
        if self.active:
            start = time.perf_counter()
            # In one run of consecutive streams, in stream order: with one KV stream per sequence
            # llama.cpp puts only rows of consecutive stream ids, in batch order, into one micro-batch
            # (one pass over the weights); rows out of order or around a free stream split the step
            # into several passes (measured on the 1.5B: 12 rows in every other stream 1.0 s a step,
            # in 12 consecutive streams 0.32 s).
            self._gather()
            self.active.sort(key=lambda r: r.stream)
            # Position of the pending token: after the prompt and the tokens already evaluated.
            d._decode([(r.pending, len(r.request.ids) + len(r.tokens) - 1, r.stream, True) for r in self.active])
            logits = np.stack([d._logits(i) for i in range(len(self.active))])
            tokens = [0] * len(self.active)
            for params, rows in _by_sampler(self.active).items():
                drawn = draw_tokens(logits[rows], params, [self.active[i].rng for i in rows])
                for i, token in zip(rows, drawn):
                    tokens[i] = token
            share = (time.perf_counter() - start) / len(self.active)
            still = []
            for row, token in zip(self.active, tokens):
                row.request.seconds += share
                if self._take(row, token):
                    still.append(row)
                elif row.request.done:
                    finished.append(row.request)
            self.active = still
        return [(r.tag, [x for x in r.results if x is not None], r.seconds) for r in finished]

    def _gather(self) -> None:
        """Move the active rows into one run of consecutive streams: the run that the fewest rows lie
        outside of (and, among those, whose free streams hold the fewest prompts kept alone), each row
        outside it copied into one of its free streams. A move is one whole-stream copy (about 20 ms for
        the 1.5B at n_ctx 4096, measured) where a split step costs a pass over the weights (hundreds); the
        stream a row leaves keeps its prompt for a later prefix."""
        d = self.decoder
        width = len(self.active)
        mine = {row.stream for row in self.active}
        if max(mine) - min(mine) + 1 == width:
            return
        others = {row.stream for loop in d._loops if loop is not self for row in loop.active}
        kept_alone = {s: d.eviction_order(s)[0] for s in range(d.n_streams) if s not in mine and s not in others}
        best: tuple[int, int, int] | None = None
        for first in range(d.n_streams - width + 1):
            run = range(first, first + width)
            if any(s in others for s in run):
                continue
            holes = [s for s in run if s not in mine]
            cost = (len(holes), sum(kept_alone[s] for s in holes), first)
            if best is None or cost < best:
                best = cost
        if best is None or best[0] == 0:
            return
        run = range(best[2], best[2] + width)
        holes = [s for s in run if s not in mine]
        for row, hole in zip([r for r in self.active if r.stream not in run], holes):
            d._copy(row.stream, hole)
            row.stream = hole
            d.moved += 1

    def _admit(self, finished: list[_Request]) -> None:
        """Start waiting samples in free streams, a request's samples together where they fit: its prompt
        prefilled into the free stream `StreamDecoder.home_for` picks and copied to the others."""
        d = self.decoder
        free = d.free_streams()
        if self.queue and not free and not self.active:
            raise RationalystError(
                f"llamacpp: all {d.n_streams} KV streams are taken by another decode loop; raise batch_size"
            )
        while self.queue and free:
            request = self.queue[0]
            samples = [request.waiting.popleft() for _ in range(min(len(request.waiting), len(free)))]
            if not request.waiting:
                self.queue.popleft()
            start = time.perf_counter()
            home = d.home_for(request.ids, free)
            free.remove(home)
            logits = d._prefill(home, request.ids)
            free.sort(key=d.eviction_order)
            streams = [home]
            for _ in samples[1:]:
                streams.append(free.pop(0))
                d._copy(home, streams[-1])
            rngs = [np.random.default_rng(request.seed + s) for s in samples]
            first = draw_tokens(np.broadcast_to(logits, (len(samples), logits.shape[0])), request.params, rngs)
            request.seconds += time.perf_counter() - start
            for sample, stream, token, rng in zip(samples, streams, first, rngs):
                row = _Row(request, sample, stream, rng)
                if self._take(row, token):
                    self.active.append(row)
                else:
                    free.append(stream)
                    if request.done:
                        finished.append(request)

    def _take(self, row: _Row, token: int) -> bool:
        """Add a drawn token to ``row``; True while the row goes on, else its sample is recorded."""
        params = row.request.params
        reason = None
        if self.decoder.is_end(token):
            reason = "stop"
        else:
            row.tokens.append(token)
            if params.stop:
                row.text += self.decoder.piece(token)
                if _has_stop(row.text, params.stop):
                    reason = "stop"
            if reason is None and len(row.tokens) >= params.max_new_tokens:
                reason = "length"
        if reason is None:
            row.pending = token
            return True
        row.request.results[row.sample] = SampledTokens(row.tokens, reason)
        return False


def _by_sampler(rows: Sequence[_Row]) -> dict[SamplingParams, list[int]]:
    """Row indices grouped by what their draw depends on (temperature, top-p; greedy or not)."""
    groups: dict[SamplingParams, list[int]] = {}
    for i, row in enumerate(rows):
        p = row.request.params
        key = SamplingParams(temperature=p.temperature, top_p=p.top_p, max_new_tokens=1)
        groups.setdefault(key, []).append(i)
    return groups


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


def _has_stop(text: bytes, stops: Sequence[str]) -> bool:
    decoded = text.decode("utf-8", errors="replace")
    return any(s and s in decoded for s in stops)
