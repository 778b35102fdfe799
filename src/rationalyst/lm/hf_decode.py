"""The `hf` backend's decode loop: transformers' greedy / sampled decoding, minus the finished work.

``model.generate`` runs every row of a batch until the last one finishes: in the batched step search
(many problems' rationales or candidates in one call, each prompt's n samples side by side) a third
or more of the rows it computes are already done. This loop makes the same tokens as ``generate``
(same cache, same positions, same logits processing, a finished row fed the pad token) but removes a
prompt's rows from the batch as soon as all n of its samples have finished
(``DynamicCache.batch_select_indices``). It keeps a prompt's rows together until then because a
sampled prompt draws from its own ``torch.Generator``, one ``multinomial`` per step over its n rows
(as transformers' global ``multinomial`` would for that prompt alone, so a batch of one reproduces
``torch.manual_seed(seed)`` sampling): dropping a single row would change what that generator hands
out next, and so the prompt's samples. The distribution is the one transformers samples from
(temperature, then top-p, then softmax; no top-k), computed once per step for all rows that share
those settings; only the draws are per prompt.

Each prompt brings its own decoding (`RowGroup`: samples, greedy or drawn from its own generator, token
limit, stop strings), so one loop can carry calls that differ in all of these: the rationales (greedy,
short) and the candidate steps (n sampled, longer) of many problems advance together, one forward pass
per step for all of them, instead of one loop per kind each waiting for its own longest row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from rationalyst.lm.prefix_cache import output_cache


@dataclass
class DecodedRow:
    """One sample: its new tokens (the finishing end-of-sequence token included) and their log-probs."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class RowGroup:
    """How one prompt's ``n`` rows are decoded: greedy (``generator`` None) or drawn from
    ``generator`` after ``temperature`` and ``top_p``, at most ``max_new_tokens`` each, and
    ``stop(sequences)`` flagging rows whose text ends in one of its stop strings (or None)."""

    n: int
    max_new_tokens: int
    generator: torch.Generator | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: Callable[[torch.Tensor], torch.Tensor] | None = None


class _Layout:
    """Where each live prompt's rows sit in the shrinking batch, kept on the host (no sync per step):
    the sampled prompts by their (temperature, top-p), and the rows each stop check looks at."""

    def __init__(self, groups: Sequence[RowGroup], live: list[int], device: torch.device) -> None:
        self.sampling: dict[tuple[float, float], tuple[torch.Tensor, list[tuple[int, int, torch.Generator]]]] = {}
        self.stops: list[tuple[Callable, torch.Tensor]] = []
        rows_by_setting: dict[tuple[float, float], list[int]] = {}
        draws: dict[tuple[float, float], list[tuple[int, int, torch.Generator]]] = {}
        rows_by_stop: dict[Any, list[int]] = {}
        start = 0
        for g in live:
            group = groups[g]
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


def _warpers(temperature: float, top_p: float) -> list[Any]:
    out: list[Any] = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return out


def decode(
    model: Any,
    cache_arg: str,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    past: Any,
    groups: Sequence[RowGroup],
    eos_ids: Sequence[int],
    pad_id: int,
    on_prompt_cache: Callable[[Any], None] | None = None,
) -> list[DecodedRow]:
    """Decode a left-padded batch whose rows come in ``groups`` (one prompt's samples each, in order).

    ``past`` holds every column but the last (or is None: then the whole prompt runs first).
    ``on_prompt_cache(cache)`` sees the cache once it holds every prompt column for every row (for
    the prefix store), before any row leaves.
    """
    device = input_ids.device
    rows = input_ids.shape[0]
    if rows != sum(g.n for g in groups):
        raise ValueError(f"{rows} rows for groups of {sum(g.n for g in groups)} samples")
    out_rows = [DecodedRow() for _ in range(rows)]
    sizes = torch.tensor([g.n for g in groups], device=device)
    group_of = torch.repeat_interleave(torch.arange(len(groups), device=device), sizes)  # batch position -> group
    limit = torch.repeat_interleave(torch.tensor([g.max_new_tokens for g in groups], device=device), sizes)
    live = list(range(len(groups)))
    layout = _Layout(groups, live, device)
    warpers = {(g.temperature, g.top_p): _warpers(g.temperature, g.top_p) for g in groups if g.generator is not None}
    alive = torch.arange(rows, device=device)  # batch position -> row of the call
    positions = attention.sum(-1, keepdim=True) - 1
    sequences = input_ids
    step_input = input_ids[:, -1:] if past is not None else input_ids
    step_positions = positions if past is not None else (attention.cumsum(-1) - 1).clamp(min=0)
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    eos = torch.tensor(list(eos_ids), device=device)
    for step in range(max(g.max_new_tokens for g in groups)):
        out = model(
            input_ids=step_input, attention_mask=attention, position_ids=step_positions, use_cache=True,
            **({cache_arg: past} if past is not None else {}),
        )
        past = output_cache(out)
        if step == 0 and on_prompt_cache is not None:
            on_prompt_cache(past)
        logits = out.logits[:, -1, :].float()
        chosen = logits.argmax(-1)
        for key, (index, draws) in layout.sampling.items():
            scores = logits[index]
            for warp in warpers[key]:
                scores = warp(sequences[index], scores)
            probs = torch.nn.functional.softmax(scores, dim=-1)
            drawn = torch.cat([
                torch.multinomial(probs[start:end], num_samples=1, generator=generator) for start, end, generator in draws
            ]).squeeze(1)
            chosen[index] = drawn
        chosen = torch.where(unfinished, chosen, torch.full_like(chosen, pad_id))
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
        # One device-to-host copy per step (not one per row: on CUDA each would be a sync).
        for row, token, logprob, running in zip(alive.tolist(), chosen.tolist(), logprobs.tolist(), unfinished.tolist()):
            if running:
                out_rows[row].tokens.append(token)
                out_rows[row].logprobs.append(logprob)
        sequences = torch.cat([sequences, chosen[:, None]], dim=-1)
        finished_now = torch.isin(chosen, eos) | (limit <= step + 1)
        for check, index in layout.stops:
            finished_now[index] |= check(sequences[index])
        unfinished &= ~finished_now
        if not unfinished.any():
            break
        live_groups = torch.zeros(len(groups), dtype=torch.long, device=device).index_add_(0, group_of, unfinished.long())
        keep = live_groups[group_of] > 0  # a prompt's rows leave together
        step_input, step_positions = chosen[:, None], positions + 1
        attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], dim=-1)
        if not keep.all():
            index = keep.nonzero().flatten()
            past.batch_select_indices(index)
            alive, unfinished, attention, group_of, limit = (
                alive[index], unfinished[index], attention[index], group_of[index], limit[index]
            )
            step_input, step_positions, sequences = step_input[index], step_positions[index], sequences[index]
            counts = live_groups.tolist()
            live = [g for g in live if counts[g] > 0]
            layout = _Layout(groups, live, device)
        positions = step_positions
    return out_rows
