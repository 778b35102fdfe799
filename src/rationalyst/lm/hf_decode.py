"""The `hf` backend's decode loop: transformers' greedy / sampled decoding, minus the finished work.

``model.generate`` runs every row of a batch until the last one finishes: in the batched step search
(many problems' rationales or candidates in one call, each prompt's n samples side by side) a third
or more of the rows it computes are already done. This loop makes the same tokens as ``generate``
(same cache, same positions, same logits processing, a finished row fed the pad token) but removes a
prompt's rows from the batch as soon as all n of its samples have finished
(``DynamicCache.batch_select_indices``). It keeps a prompt's rows together until then because a
prompt's sampler (`RowSeededSampler`) draws one ``multinomial`` per step over its n rows: dropping a
single row would change what that prompt's generator hands out next, and so its samples.

Each prompt brings its own decoding (`RowGroup`: samples, greedy or its own seeded sampler, token
limit, stop strings), so one loop can carry calls that differ in all of these: the rationales (greedy,
short) and the candidate steps (n sampled, longer) of many problems advance together, one forward pass
per step for all of them, instead of one loop per kind each waiting for its own longest row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rationalyst.lm.prefix_cache import output_cache


@dataclass
class DecodedRow:
    """One sample: its new tokens (the finishing end-of-sequence token included) and their log-probs."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class RowGroup:
    """How one prompt's ``n`` rows are decoded: greedy (``sampler`` None) or drawn by ``sampler``
    (``sampler(input_ids, scores)`` returns scores whose argmax is the drawn token, for these rows
    alone: a `RowSeededSampler` with this prompt's generator), at most ``max_new_tokens`` each, and
    ``stop(sequences)`` flagging rows whose text ends in one of its stop strings (or None)."""

    n: int
    max_new_tokens: int
    sampler: Any = None
    stop: Callable[[torch.Tensor], torch.Tensor] | None = None


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
    alive = torch.arange(rows, device=device)  # batch position -> row of the call
    stops: dict[Any, list[int]] = {}  # each distinct stop check -> the groups that use it
    for i, g in enumerate(groups):
        if g.stop is not None:
            stops.setdefault(g.stop, []).append(i)
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
        members = group_of.tolist()
        start = 0
        while start < len(members):  # each live group's rows are contiguous
            g = groups[members[start]]
            end = start + g.n
            if g.sampler is not None:
                chosen[start:end] = g.sampler(sequences[start:end], logits[start:end]).argmax(-1)
            start = end
        chosen = torch.where(unfinished, chosen, torch.full_like(chosen, pad_id))
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
        # One device-to-host copy per step (not one per row: on CUDA each would be a sync).
        for row, token, logprob, running in zip(alive.tolist(), chosen.tolist(), logprobs.tolist(), unfinished.tolist()):
            if running:
                out_rows[row].tokens.append(token)
                out_rows[row].logprobs.append(logprob)
        sequences = torch.cat([sequences, chosen[:, None]], dim=-1)
        finished_now = torch.isin(chosen, eos) | (limit <= step + 1)
        for check, users in stops.items():
            mine = torch.isin(group_of, torch.tensor(users, device=device)).nonzero().flatten()
            if len(mine):
                finished_now[mine] |= check(sequences[mine])
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
        positions = step_positions
    return out_rows
