"""Scoring contexts for the `llamacpp` backend: one llama.cpp context per recent scored sequence.

A llama.cpp context used for scoring holds one sequence, and a score rewinds its KV cache to the prefix
shared with the context scored last. The step search scores many problems side by side: consecutive
requests belong to different problems and share next to nothing, so with one context every request
evaluated its whole trajectory again (the question and every step so far), although its own previous
request had evaluated all but the newest step. Measured on the traces of 100 GSM8K searches in
paragraph steps (5.4 steps a problem): 2,032 tokens forwarded a problem with one context, 1,175 when
each problem extends its own (`benchmarks/llamacpp_scoring_contexts.py` measures the time).

So up to ``size`` contexts are kept, opened as needed on the same weights (and LoRA adapter), each with
the parameters of the model's own context (a different attention path moves the logits), and each
holding one sequence as before: a score is what a fresh evaluation gives, whichever context computed it
(`llamacpp` module notes; `llamacpp_layout` for which cached prefixes are reused). A request goes to:

* the context whose last scored context it continues (it reuses at least half of it: its own
  trajectory, whose last rationale it drops, and whose last candidate follows it anyway);
* else a new context, while fewer than ``size`` are open;
* else the context it reuses most of, the least recently used among equals (a finished problem's).

Each context costs its KV cache (n_ctx x 28 KB for the 1.5B Qwen builtin, 12 KB for the 0.5B) and
llama.cpp's output and compute buffers: about 290 MB in all for the 1.5B at n_ctx 4,096 once it has
scored a 160-token candidate after a 400-token context (measured).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from rationalyst.errors import RationalystError
from rationalyst.lm import llamacpp_layout as layout
from rationalyst.lm.boundary import common_prefix_length
from rationalyst.lm.llamacpp_streams import decode_entries


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    x = np.asarray(logits, dtype=np.float64)
    peak = x.max(axis=-1, keepdims=True)
    return x - (peak + np.log(np.exp(x - peak).sum(axis=-1, keepdims=True)))


class ScoringSlot:
    """One llama.cpp context holding one scored sequence: the tokens its KV cache holds, how many of
    them any evaluation would have written alike (``canonical``), and the log-softmax row after the
    last context scored (``boundary``)."""

    def __init__(self, lc: Any, ctx: Any, n_vocab: int, *, owned: bool) -> None:
        self._lc, self.ctx, self.owned = lc, ctx, owned
        self._memory = lc.llama_get_memory(ctx)
        self._n_vocab = n_vocab
        self._chunk = int(lc.llama_n_batch(ctx))
        self._batch = lc.llama_batch_init(self._chunk, 0, 1)
        self.held: list[int] = []
        self.boundary: tuple[int, np.ndarray] | None = None  # (position, log-softmax row after it)
        self.canonical = 0
        self.context = 0  # the length of the last context scored (the held tokens past it: a continuation)
        self.used = 0  # the clock of its last use
        self.forwarded = 0  # tokens evaluated, for measurement

    def close(self) -> None:
        if self.ctx:
            self._lc.llama_batch_free(self._batch)
            if self.owned:
                self._lc.llama_free(self.ctx)
            self.ctx = None

    def reusable(self, ids: Sequence[int], start: int) -> int:
        """How many tokens of the context ``ids[:start]`` this slot would not evaluate again."""
        shared = common_prefix_length(self.held, ids)
        if self.boundary is not None and self.boundary[0] == start - 1 and shared >= start:
            return start
        return min(shared, self.canonical, start)

    def rewind(self, n: int) -> None:
        """Keep only the first ``n`` evaluated tokens: the KV cache past them is dropped, and the row
        after the context with it if that context is cut."""
        if n < len(self.held):
            self._lc.llama_memory_seq_rm(self._memory, -1, n, -1)
            del self.held[n:]
        self.canonical = min(self.canonical, n)
        self.context = min(self.context, n)
        if self.boundary is not None and self.boundary[0] >= n:
            self.boundary = None

    def _evaluate(self, ids: Sequence[int], begin: int, end: int, rows: range) -> Iterator[tuple[range, np.ndarray]]:
        """Evaluate ``ids[begin:end]`` after the held ``ids[:begin]``, in the batches `llamacpp_layout`
        prescribes, and yield each batch's output rows: (their positions, the float64 log-softmax of
        the logits there). Only the positions in ``rows`` get an output row (no projection onto the
        vocabulary for the rest: most of a scored sequence is its context); they equal those of an
        evaluation that outputs every position. Each batch's rows are read before the next decode
        overwrites them."""
        for i, stop in layout.chunks(begin, end, self._chunk):
            wanted = range(max(i, rows.start), min(stop, rows.stop))
            entries = [(ids[p], p, 0, p in wanted) for p in range(i, stop)]
            decode_entries(self._lc, self.ctx, self._batch, entries)
            self.held.extend(ids[i:stop])
            self.forwarded += stop - i
            if wanted:
                out = self._lc.llama_get_logits(self.ctx)
                yield wanted, log_softmax_rows(np.ctypeslib.as_array(out, shape=(len(wanted), self._n_vocab)))

    def logprobs(self, ids: Sequence[int], start: int) -> list[float]:
        """Log-probs of ``ids[start:]`` (``start`` >= 1), each given the tokens before it: a function of
        the tokens alone, whatever was evaluated before.

        The context ``ids[:start]`` reuses only the canonical part of the cache it shares (see
        `llamacpp_layout`), so its cache and the row after it are those of one evaluation from
        position 0; that row is kept whole, so a further continuation of the same context costs only
        its own tokens (a one-token one, none). Each continuation is evaluated in batches of its own
        after the context, never with rows another continuation's batch computed.
        """
        if start >= len(ids):
            return []
        common = common_prefix_length(self.held, ids)
        if self.boundary is None or self.boundary[0] != start - 1 or common < start:
            begin = layout.resume_point(min(common, self.canonical), start)
            self.rewind(begin)
            for _, rows in self._evaluate(ids, begin, start, range(start - 1, start)):
                self.boundary = (start - 1, rows[0])
            self.canonical = layout.canonical_end(begin, start)
        self.rewind(start)
        self.context = start
        assert self.boundary is not None
        logprobs = [float(self.boundary[1][ids[start]])]
        if len(ids) - start < 2:
            return logprobs  # the row after the context scores a one-token continuation
        for positions, rows in self._evaluate(ids, start, len(ids), range(start, len(ids) - 1)):
            targets = np.asarray(ids[positions.start + 1 : positions.stop + 1], dtype=np.intp)
            logprobs.extend(rows[np.arange(len(targets)), targets].tolist())
        return logprobs


class ScoringContexts:
    """Up to ``size`` `ScoringSlot` on one model: the model's own context first, the others opened as
    requests need them (module notes)."""

    def __init__(self, lc: Any, llm: Any, n_vocab: int, *, size: int = 1, lora: tuple[Any, float] | None = None) -> None:
        if size < 1:
            raise RationalystError(f"llamacpp: at least one scoring context is needed, got {size}")
        self._lc, self._llm, self._n_vocab, self.size, self._lora = lc, llm, n_vocab, size, lora
        self.slots = [ScoringSlot(lc, llm.ctx, n_vocab, owned=False)]
        self._clock = 0

    @property
    def forwarded(self) -> int:
        """Tokens evaluated by every scoring context so far."""
        return sum(s.forwarded for s in self.slots)

    def close(self) -> None:
        for slot in self.slots:
            slot.close()

    def reserve(self, n: int) -> None:
        """Keep up to ``n`` contexts (no fewer than before): one for each problem scored side by side."""
        self.size = max(self.size, n)

    def reset(self) -> None:
        """Empty every context (their KV caches dropped, the contexts kept open)."""
        for slot in self.slots:
            slot.rewind(0)

    def logprobs(self, ids: Sequence[int], start: int, *, fresh: bool = False) -> list[float]:
        """`ScoringSlot.logprobs` in the slot this sequence goes to; ``fresh``: evaluated from position 0
        whatever the slot held (the plain reference)."""
        slot = self._pick(ids, start)
        if fresh:
            slot.rewind(0)
        self._clock += 1
        slot.used = self._clock
        return slot.logprobs(ids, start)

    def _pick(self, ids: Sequence[int], start: int) -> ScoringSlot:
        reuse = [slot.reusable(ids, start) for slot in self.slots]
        best = max(range(len(self.slots)), key=lambda i: (reuse[i], -self.slots[i].used))
        if reuse[best] and 2 * reuse[best] >= self.slots[best].context:
            return self.slots[best]  # the request continues the context this slot scored last
        if not any(slot.held for slot in self.slots):
            return self.slots[0]
        if len(self.slots) < self.size:
            self.slots.append(self._open())
            return self.slots[-1]
        return self.slots[best]

    def _open(self) -> ScoringSlot:
        """A new context on the model's weights, with its own context's parameters and LoRA adapter."""
        lc = self._lc
        params = type(self._llm.context_params).from_buffer_copy(self._llm.context_params)
        ctx = lc.llama_init_from_model(self._llm.model, params)
        if not ctx:
            raise RationalystError(
                f"llamacpp: cannot open scoring context {len(self.slots) + 1} of {self.size} (out of memory?); "
                "lower prefix_cache or n_ctx"
            )
        if self._lora is not None:
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(self._lora[0])
            scales = (ctypes.c_float * 1)(self._lora[1])
            if lc.llama_set_adapters_lora(ctx, adapters, 1, scales):
                lc.llama_free(ctx)
                raise RationalystError("llamacpp: cannot set the LoRA adapter on a scoring context")
        return ScoringSlot(lc, ctx, self._n_vocab, owned=True)
