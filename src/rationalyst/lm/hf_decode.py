"""The `hf` backend's decode loop: transformers' greedy / sampled decoding, minus the waiting.

``model.generate`` runs every row of a batch until the last one finishes, and a batch is fixed when it
starts. `DecodeSession` makes the same tokens as ``generate`` (same cache, same positions, same logits
processing, a finished row fed the pad token) with two differences, the two halves of continuous
batching at the token level:

- a prompt's rows leave the batch as soon as all n of its samples have finished (the rows after them
  move up: `ReservedLayer.keep_rows`);
- new prompts join between two steps (`DecodeSession.join`): their prefilled cache is written below the
  batch's, left-padded to the batch's width (or the batch's padded to theirs: `ReservedLayer.append_rows`),
  and from the next step they decode with the rest. In the batched step search a problem whose
  rationale and candidates are done is scored and its next step joins at once, instead of waiting for
  the slowest row of every other problem.

The cache lives in buffers with spare rows and columns (`reserved_cache`): a step writes its column in
place, where ``DynamicCache`` would copy the whole cache to append it (a step of 32 rows x 800 columns
on CPU: 371 -> 267 ms, `benchmarks/decode_cache.py`); joining rows are written below the batch's, and
leaving rows are compacted away, instead of each rebuilding the whole batch's cache.

A prompt's rows stay together until all have finished because a sampled prompt draws from its own
``torch.Generator``, one ``multinomial`` per step over its n rows (as transformers' global
``multinomial`` would for that prompt alone, so a batch of one reproduces ``torch.manual_seed(seed)``
sampling; on CPU the same draws come faster from `rationalyst.lm.sampling.draw_one`): dropping a
single row would change what that generator hands out next, and so the prompt's samples. Which other
prompts share the batch, and when they came, changes nothing but float rounding. The distribution is
the one transformers samples from (temperature, then top-p, then softmax; no top-k), computed once per
step for all rows that share those settings; only the draws are per prompt.

Each prompt brings its own decoding (`RowGroup`: samples, greedy or drawn from its own generator, token
limit, stop strings), so one loop carries calls that differ in all of these: the rationales (greedy,
short) and the candidate steps (n sampled, longer) of many problems advance together, one forward pass
per step for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache, TemperatureLogitsWarper, TopPLogitsWarper

from rationalyst.lm.prefix_cache import cache_layers, output_cache
from rationalyst.lm.reserved_cache import ReservedLayer, in_buffers, reservable, reserved_cache, with_room
from rationalyst.lm.sampling import draw_one

#: Leading columns that are padding in every row, at which a cache that is not in reserved buffers is
#: cut (attention over them costs as much as over real ones; cutting copies such a cache, so not for one
#: or two). A cache in reserved buffers drops any number in place.
TRIM_COLUMNS = 16


@dataclass
class DecodedRow:
    """One sample: its new tokens (the finishing end-of-sequence token included) and their log-probs."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class RowGroup:
    """How one prompt's ``n`` rows are decoded: greedy (``generator`` None) or drawn from
    ``generator`` after ``temperature`` and ``top_p``, at most ``max_new_tokens`` each, and
    ``stop(sequences)`` flagging rows whose text ends in one of its stop strings (or None).

    ``stop`` sees each row's prompt as well as its new tokens, so a stop string that begins in the
    prompt would end a row; ``confirm_stop(tokens)``, given a row's new tokens when it would end,
    says whether it really has (its stop strings count only in its own text), or the row goes on.
    """

    n: int
    max_new_tokens: int
    generator: torch.Generator | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: Callable[[torch.Tensor], torch.Tensor] | None = None
    confirm_stop: Callable[[list[int]], bool] | None = None


@dataclass
class _Prompt:
    """A live prompt of the session: its decoding, its caller's tag, its samples so far."""

    group: RowGroup
    tag: Any
    rows: list[DecodedRow]
    produced: int = 0


class _Layout:
    """Where each live prompt's rows sit in the batch, kept on the host (no sync per step): the
    sampled prompts by their (temperature, top-p), and the rows each stop check looks at."""

    def __init__(self, prompts: Sequence[_Prompt], device: torch.device) -> None:
        self.sampling: dict[tuple[float, float], tuple[torch.Tensor, list[tuple[int, int, torch.Generator]]]] = {}
        rows_by_setting: dict[tuple[float, float], list[int]] = {}
        draws: dict[tuple[float, float], list[tuple[int, int, torch.Generator]]] = {}
        rows_by_stop: dict[Any, list[int]] = {}
        start = 0
        for prompt in prompts:
            group = prompt.group
            rows = list(range(start, start + group.n))
            if group.generator is not None:
                key = (group.temperature, group.top_p)
                at = len(rows_by_setting.setdefault(key, []))
                rows_by_setting[key].extend(rows)
                draws.setdefault(key, []).append((at, at + group.n, group.generator))
            if group.stop is not None:
                rows_by_stop.setdefault(group.stop, []).extend(rows)
            start += group.n
        for key, rows in rows_by_setting.items():
            self.sampling[key] = (torch.tensor(rows, device=device), draws[key])
        self.stops = [(check, torch.tensor(rows, device=device)) for check, rows in rows_by_stop.items()]
        self.warpers = {key: _warpers(*key) for key in self.sampling}


def _warpers(temperature: float, top_p: float) -> list[Any]:
    out: list[Any] = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return out


def _pad_left(tensor: torch.Tensor, columns: int, value: int, dim: int = 1) -> torch.Tensor:
    if columns <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_full(shape, value), tensor], dim=dim)


class DecodeSession:
    """One decode loop on ``model`` that prompts join between steps and leave once their samples finish.

    ``join`` adds prompts; ``step`` runs one forward pass for every live row and returns the prompts
    that finished in it, as ``(tag, rows)``. ``on_prompt_cache`` hooks (given to `join`) see the cache
    once it holds every column of their prompts (for a prefix store), before any row leaves.
    """

    def __init__(self, model: Any, cache_arg: str, eos_ids: Sequence[int], pad_id: int, device: torch.device) -> None:
        self.model, self.cache_arg, self.pad_id, self.device = model, cache_arg, pad_id, device
        self.eos = torch.tensor(list(eos_ids), device=device)
        self._reset()

    def _reset(self) -> None:
        self.prompts: list[_Prompt] = []
        self.past: Any = None  # every column of the batch but the last (None while that is no column)
        self.attention: torch.Tensor | None = None  # (rows, width): 1 on real tokens
        self.sequences: torch.Tensor | None = None  # (rows, width): the tokens, for the stop checks
        self.step_input: torch.Tensor | None = None  # (rows, 1): the last column, run next
        self.positions: torch.Tensor | None = None  # (rows, 1): its position ids
        self.unfinished: torch.Tensor | None = None
        self._fresh: list[tuple[Callable, list[_Prompt]]] = []
        self._layout = _Layout([], self.device)

    @property
    def rows(self) -> int:
        return 0 if self.attention is None else self.attention.shape[0]

    def can_join(self) -> bool:
        """Whether prompts may join now: always into an empty batch, else only where every layer's cache
        can be padded exactly (not sliding-window layers: those wait for the batch to empty)."""
        return not self.prompts or self.past is None or cache_layers(self.past) is not None

    def join(
        self, input_ids: torch.Tensor, attention: torch.Tensor, past: Any, groups: Sequence[RowGroup],
        tags: Sequence[Any], on_prompt_cache: Callable[[Any, list[int], int], None] | None = None,
    ) -> None:
        """Add a left-padded batch of prompts whose rows come in ``groups`` (one prompt's ``n`` samples
        each, in order), ``past`` holding every column but the last (None only for one column).
        ``on_prompt_cache(cache, first_rows, width)``: after the next step, with each prompt's first row
        in the batch and the cache's width (a prompt of L tokens sits in its last L columns)."""
        rows, width = input_ids.shape
        if rows != sum(g.n for g in groups) or len(tags) != len(groups):
            raise ValueError(f"{rows} rows for groups of {sum(g.n for g in groups)} samples and {len(tags)} tags")
        if (past is None) != (width == 1):
            raise ValueError("the joining prompts need a cache of every column but their last")
        if not self.can_join():
            raise ValueError("this batch's cache cannot be padded: wait for it to empty")
        positions = attention.sum(-1, keepdim=True) - 1
        if not self.prompts:
            self.attention, self.sequences, self.past = attention, input_ids, past
            self.step_input, self.positions = input_ids[:, -1:], positions
            self.unfinished = torch.ones(rows, dtype=torch.bool, device=self.device)
        else:
            target = max(width, self.attention.shape[1])
            mine, theirs = target - self.attention.shape[1], target - width
            room = max([self._remaining()] + [g.max_new_tokens for g in groups])
            if self.past is not None and past is not None and reservable(self.past) and reservable(past):
                if not in_buffers(self.past):  # a fresh prefill: into buffers (whose room the rows then grow)
                    self.past = with_room(self.past, room)
                for layer, (keys, values) in zip(self.past.layers, cache_layers(past)):
                    layer.append_rows(keys, values, room)
            else:
                self.past = self._joined_cache(past, rows, mine, theirs, target - 1, room)
            self.attention = torch.cat([_pad_left(self.attention, mine, 0), _pad_left(attention, theirs, 0)])
            self.sequences = torch.cat(
                [_pad_left(self.sequences, mine, self.pad_id), _pad_left(input_ids, theirs, self.pad_id)]
            )
            self.step_input = torch.cat([self.step_input, input_ids[:, -1:]])
            self.positions = torch.cat([self.positions, positions])
            self.unfinished = torch.cat([self.unfinished, torch.ones(rows, dtype=torch.bool, device=self.device)])
        added = [_Prompt(g, tag, [DecodedRow() for _ in range(g.n)]) for g, tag in zip(groups, tags)]
        self.prompts.extend(added)
        if on_prompt_cache is not None:
            self._fresh.append((on_prompt_cache, added))
        self._layout = _Layout(self.prompts, self.device)

    def _joined_cache(self, past: Any, rows: int, mine: int, theirs: int, columns: int, room: int) -> Any:
        """The batch's cache and ``past`` (the joining rows'), each left-padded to ``columns``, stacked
        in buffers with ``room`` free columns (`ReservedLayer`)."""
        if columns == 0:
            return None
        old = cache_layers(self.past) if self.past is not None else None
        new = cache_layers(past) if past is not None else None
        layers = []
        for i, template in enumerate(old or new):
            pair = []
            for which, tensor in enumerate(template):  # keys, then values
                buffer = tensor.new_empty((self.rows + rows, tensor.shape[1], columns + room, tensor.shape[3]))
                for source, pad, first, last in ((old, mine, 0, self.rows), (new, theirs, self.rows, self.rows + rows)):
                    if source is None:  # no columns yet: all padding
                        pad = columns
                    else:
                        buffer[first:last, :, pad:columns] = source[i][which]
                    buffer[first:last, :, :pad] = 0  # masked, but never garbage: NaN * 0 is NaN
                pair.append(buffer)
            layers.append(ReservedLayer(*pair, columns))
        return reserved_cache(layers)

    def _remaining(self) -> int:
        """The most tokens any live prompt may still generate: the columns the cache will need."""
        return max((p.group.max_new_tokens - p.produced for p in self.prompts), default=0)

    def _first_rows(self, prompts: Sequence[_Prompt]) -> list[int]:
        starts, at = {}, 0
        for prompt in self.prompts:
            starts[id(prompt)] = at
            at += prompt.group.n
        return [starts[id(p)] for p in prompts]

    def step(self) -> list[tuple[Any, list[DecodedRow]]]:
        """One forward pass for every live row; the prompts whose samples have now all finished."""
        if not self.prompts:
            return []
        if self.past is not None:  # a fresh prefill or trim: give it room, so steps write in place
            self.past = with_room(self.past, self._remaining())
        out = self.model(
            input_ids=self.step_input, attention_mask=self.attention, position_ids=self.positions, use_cache=True,
            **({self.cache_arg: self.past} if self.past is not None else {}),
        )
        self.past = output_cache(out)
        for hook, prompts in self._fresh:
            hook(self.past, self._first_rows(prompts), self.attention.shape[1])
        self._fresh = []
        logits = out.logits[:, -1, :].float()
        chosen = logits.argmax(-1)
        layout = self._layout
        for key, (index, draws) in layout.sampling.items():
            scores = logits[index]
            for warp in layout.warpers[key]:
                scores = warp(self.sequences[index], scores)
            probs = torch.nn.functional.softmax(scores, dim=-1)
            drawn = torch.cat([
                draw_one(probs[start:end], generator) for start, end, generator in draws
            ]).squeeze(1)
            chosen[index] = drawn
        chosen = torch.where(self.unfinished, chosen, torch.full_like(chosen, self.pad_id))
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
        self.sequences = torch.cat([self.sequences, chosen[:, None]], dim=-1)
        finished_now = torch.isin(chosen, self.eos)
        for check, index in layout.stops:
            finished_now[index] |= check(self.sequences[index])
        # One device-to-host copy per step (not one per row: on CUDA each would be a sync).
        tokens, values, running = chosen.tolist(), logprobs.tolist(), self.unfinished.tolist()
        self.unfinished &= ~finished_now
        still = self.unfinished.tolist()
        keep: list[int] = []
        done: list[tuple[Any, list[DecodedRow]]] = []
        live: list[_Prompt] = []
        resumed: list[int] = []  # rows flagged by a stop string that began in their prompt: not finished
        at = 0
        for prompt in self.prompts:
            span = range(at, at + prompt.group.n)
            at += prompt.group.n
            confirm = prompt.group.confirm_stop
            for j, row in zip(span, prompt.rows):
                if running[j]:
                    row.tokens.append(tokens[j])
                    row.logprobs.append(values[j])
                    if not still[j] and confirm is not None and not confirm(row.tokens):
                        still[j] = True
                        resumed.append(j)
            prompt.produced += 1
            if prompt.produced >= prompt.group.max_new_tokens or not any(still[j] for j in span):
                done.append((prompt.tag, prompt.rows))
            else:
                live.append(prompt)
                keep.extend(span)
        if resumed:
            self.unfinished[torch.tensor(resumed, device=self.device)] = True
        self.step_input = chosen[:, None]
        self.positions = self.positions + 1
        self.attention = torch.cat([self.attention, self.attention.new_ones((self.rows, 1))], dim=-1)
        if not live:
            self._reset()
            return done
        if done:
            index = torch.tensor(keep, device=self.device)
            if in_buffers(self.past):
                for layer in self.past.layers:
                    layer.keep_rows(keep)
            else:
                self.past.batch_select_indices(index)
            self.attention, self.sequences = self.attention[index], self.sequences[index]
            self.step_input, self.positions, self.unfinished = self.step_input[index], self.positions[index], self.unfinished[index]
            self.prompts = live
            self._layout = _Layout(live, self.device)
            self._trim()
        return done

    def _trim(self) -> None:
        """Drop the leading columns that are padding in every row (left behind by rows that left)."""
        empty = int((self.attention.sum(0) > 0).long().argmax())
        layers = cache_layers(self.past)
        in_place = in_buffers(self.past)
        if empty == 0 or layers is None or (empty < TRIM_COLUMNS and not in_place):
            return
        self.attention, self.sequences = self.attention[:, empty:], self.sequences[:, empty:]
        if in_place:
            for layer in self.past.layers:
                layer.drop_leading(empty)
        else:
            self.past = DynamicCache(ddp_cache_data=[(k[:, :, empty:], v[:, :, empty:]) for k, v in layers])

