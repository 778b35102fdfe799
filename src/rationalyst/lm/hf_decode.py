"""The `hf` backend's decode loop: transformers' greedy / sampled decoding, minus the finished work.

``model.generate`` runs every row of a batch until the last one finishes: in the batched step search
(many problems' rationales or candidates in one call, each prompt's n samples side by side) a third
or more of the rows it computes are already done. This loop makes the same tokens as ``generate``
(same cache, same positions, same logits processor, a finished row fed the pad token) but removes a
prompt's rows from the batch as soon as all n of its samples have finished
(``DynamicCache.batch_select_indices``). It keeps a prompt's rows together until then because
`RowSeededSampler` draws one ``multinomial`` per prompt per step over its n rows: dropping a single
row would change what that prompt's generator hands out next, and so its samples.
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


def decode(
    model: Any,
    cache_arg: str,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    past: Any,
    group: int,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    pad_id: int,
    sampler: Any = None,
    stop: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_prompt_cache: Callable[[Any], None] | None = None,
) -> list[DecodedRow]:
    """Decode a left-padded batch whose rows come in groups of ``group`` (one prompt's samples).

    ``past`` holds every column but the last (or is None: then the whole prompt runs first);
    ``sampler(input_ids, scores)`` returns scores whose argmax is the drawn token (greedy without
    one), with ``sampler.generators`` one per group; ``stop(sequences)`` flags rows whose text ends
    in a stop string. ``on_prompt_cache(cache)`` sees the cache once it holds every prompt column for
    every row (for the prefix store), before any row leaves.
    """
    rows = input_ids.shape[0]
    out_rows = [DecodedRow() for _ in range(rows)]
    alive = torch.arange(rows, device=input_ids.device)  # batch position -> row of the call
    generators = list(sampler.generators) if sampler is not None else []
    positions = attention.sum(-1, keepdim=True) - 1
    sequences = input_ids
    step_input = input_ids[:, -1:] if past is not None else input_ids
    step_positions = positions if past is not None else (attention.cumsum(-1) - 1).clamp(min=0)
    unfinished = torch.ones(rows, dtype=torch.bool, device=input_ids.device)
    eos = torch.tensor(list(eos_ids), device=input_ids.device)
    for step in range(max_new_tokens):
        out = model(
            input_ids=step_input, attention_mask=attention, position_ids=step_positions, use_cache=True,
            **({cache_arg: past} if past is not None else {}),
        )
        past = output_cache(out)
        if step == 0 and on_prompt_cache is not None:
            on_prompt_cache(past)
        logits = out.logits[:, -1, :].float()
        if sampler is not None:
            sampler.generators = [generators[r // group] for r in alive[::group].tolist()]
            chosen = sampler(sequences, logits).argmax(-1)
        else:
            chosen = logits.argmax(-1)
        chosen = torch.where(unfinished, chosen, torch.full_like(chosen, pad_id))
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
        # One device-to-host copy per step (not one per row: on CUDA each would be a sync).
        for row, token, logprob, running in zip(alive.tolist(), chosen.tolist(), logprobs.tolist(), unfinished.tolist()):
            if running:
                out_rows[row].tokens.append(token)
                out_rows[row].logprobs.append(logprob)
        sequences = torch.cat([sequences, chosen[:, None]], dim=-1)
        finished_now = torch.isin(chosen, eos)
        if stop is not None:
            finished_now |= stop(sequences)
        unfinished &= ~finished_now
        if not unfinished.any():
            break
        keep = unfinished.view(-1, group).any(-1).repeat_interleave(group)  # a prompt's rows leave together
        step_input, step_positions = chosen[:, None], positions + 1
        attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], dim=-1)
        if not keep.all():
            index = keep.nonzero().flatten()
            past.batch_select_indices(index)
            alive, unfinished, attention = alive[index], unfinished[index], attention[index]
            step_input, step_positions, sequences = step_input[index], step_positions[index], sequences[index]
        positions = step_positions
    return out_rows
