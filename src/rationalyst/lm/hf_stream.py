"""Continuous batching on the `hf` backend: prompts handed in at any time, decoded in one loop.

`HFStream` is what an engine like vLLM offers through ``add_request`` and ``step``: the caller adds
prompts whenever it has them (`add`) and advances the decode loop one forward pass at a time (`step`),
getting back each prompt's samples the step they finish. A prompt joins the running batch at once
when its rows fit in the model's ``batch_size`` (prefilled, reusing its stored prefix, then
`DecodeSession.join`); otherwise it waits, and joins when at least half the rows are free again (a
join costs a prefill pass and a copy of the batch's cache, so not one row at a time).

The batched step search (`search.batch`) keeps one stream per hf engine: a problem whose rationale and
candidates are done is scored and its next step joins the loop while the other problems are still
decoding, so a round no longer waits for the slowest sample of every problem in it.

Cost: a step's seconds are shared by the rows that ran in it, a join's by its prompts in proportion to
their tokens; `step` hands each finished prompt its total.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from rationalyst.lm.base import Completion, Prompt, SamplingParams
from rationalyst.lm.hf_decode import DecodeSession

if TYPE_CHECKING:
    from rationalyst.lm.hf import HFModel


class HFStream:
    """A decode loop on ``model`` that prompts join whenever they come (see the module docstring)."""

    def __init__(self, model: HFModel) -> None:
        self.model = model
        self.session = DecodeSession(model.model, model.cache_arg, model.eos_ids, model.pad_id, model.device)
        self.waiting: deque[tuple[Any, list[int], SamplingParams]] = deque()
        self.params: dict[Any, SamplingParams] = {}
        self.seconds: dict[Any, float] = {}

    @property
    def busy(self) -> bool:
        """Whether any prompt is decoding or waiting to join."""
        return bool(self.session.prompts or self.waiting)

    @property
    def tags(self) -> list[Any]:
        """The tags of the prompts not yet handed back."""
        return [p.tag for p in self.session.prompts] + [tag for tag, _, _ in self.waiting]

    @torch.inference_mode()
    def add(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams], tags: Sequence[Any]) -> None:
        """Queue ``prompts``, each decoded by its own params and known by its (hashable, unique) tag; those
        that fit join the batch now. Raises `RationalystError` before queueing any if one is too long."""
        encoded = [self.model.codec.encode(p) for p in prompts]
        for ids, p in zip(encoded, params):
            self.model.check_room(len(ids), p.max_new_tokens)
        for tag, ids, p in zip(tags, encoded, params):
            if not p.greedy and p.seed is None:
                p = p.model_copy(update={"seed": int(torch.randint(0, 2**31 - 1, ()))})
            self.params[tag] = p
            self.seconds[tag] = 0.0
            self.waiting.append((tag, ids, p))
        self._admit(eager=True)

    def _admit(self, eager: bool) -> None:
        """Join waiting prompts while their rows fit (at least one into an empty batch); unless ``eager``,
        only once half the rows are free."""
        room = self.model.batch_size - self.session.rows
        if not self.waiting or not self.session.can_join():
            return
        if self.session.prompts and not eager and room < self.model.batch_size // 2:
            return
        taken: list[tuple[Any, list[int], SamplingParams]] = []
        while self.waiting and (self.waiting[0][2].n <= room or not (taken or self.session.prompts)):
            taken.append(self.waiting.popleft())
            room -= taken[-1][2].n
        if not taken:
            return
        start = time.perf_counter()
        tags = [tag for tag, _, _ in taken]
        self.model.join(self.session, [ids for _, ids, _ in taken], [p for _, _, p in taken], tags)
        spent = time.perf_counter() - start
        total = sum(len(ids) for _, ids, _ in taken)
        for tag, ids, _ in taken:
            self.seconds[tag] += spent * len(ids) / total

    @torch.inference_mode()
    def step(self) -> list[tuple[Any, list[Completion], float]]:
        """One forward pass of the batch; the prompts that finished in it, as (tag, samples, seconds)."""
        if not self.session.prompts:
            self._admit(eager=True)
        ran = [(p.tag, p.group.n) for p in self.session.prompts]
        start = time.perf_counter()
        done = self.session.step()
        spent = time.perf_counter() - start
        rows = sum(n for _, n in ran)
        for tag, n in ran:
            self.seconds[tag] += spent * n / rows
        self._admit(eager=False)
        out = []
        for tag, samples in done:
            p = self.params.pop(tag)
            completions = [self.model.completion(row.tokens, row.logprobs, p) for row in samples]
            out.append((tag, completions, self.seconds.pop(tag)))
        return out

    def drain(self) -> Iterator[tuple[Any, list[Completion], float]]:
        """Step until every prompt is handed back, yielding each as it finishes."""
        while self.busy:
            yield from self.step()
