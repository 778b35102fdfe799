"""Where llama.cpp batches split, so that a prefix's KV cache is the same however it was reached.

llama.cpp's CPU kernels pick their path by the rows in a batch, and the paths round differently. On
the Qwen2.5 builtins (Q4_K weights repacked for the CPU), measured on this machine's build
(2026-11-28, a 200-token text, the logits of its last 30 tokens): a batch of fewer than 8 rows, or a
row of the last, incomplete group of 4 counted from its batch's start, gets other numbers than the
same token in a full group of a larger batch, by up to 0.9 in log-prob; every other split agrees bit
for bit (batches starting at 8, 12, ..., 160 of 200, against one batch). So the cache of a prefix
reached by extending a shorter one (the search's next step, a document's next insertion point)
differs from the cache of one evaluation of it, and a score would depend on what was evaluated
before.

The rule here: every batch of a prefill starts at a multiple of `ALIGN` tokens and holds at least
`MIN_ROWS` of them (unless the whole prefill is shorter), the layout of one evaluation from position
0 in chunks of ``n_batch``. The rows of every full group of such a batch are *canonical*: the same in
any layout that keeps the rule. Only those are reused by a later prefill; the last incomplete group is
evaluated again, in the batch that ends the new prefill, as one evaluation would. `ALIGN` and
`MIN_ROWS` are 16 and 32, above the 4 and 8 measured, for kernels that tile by 8 rows (other CPUs,
other quantizations). A prefill then costs at most ``ALIGN + MIN_ROWS - 1`` tokens more than what it
adds to the cache, none when it adds at least that many.
"""

from __future__ import annotations

ALIGN = 16
MIN_ROWS = 32
MIN_BATCH = 4 * MIN_ROWS  # the least n_batch: room to leave the last batch MIN_ROWS tokens


def resume_point(reusable: int, end: int) -> int:
    """Where to start evaluating a prefill of ``end`` tokens whose first ``reusable`` are in the cache
    (canonical): aligned, and leaving at least `MIN_ROWS` tokens to evaluate (0 if the prefill is
    shorter)."""
    point = min(reusable, end - MIN_ROWS)
    return max(point, 0) // ALIGN * ALIGN


def chunks(begin: int, end: int, size: int) -> list[tuple[int, int]]:
    """The batches of a prefill from ``begin`` (aligned) to ``end``: at most ``size`` tokens each, every
    one starting aligned and none under `MIN_ROWS` tokens unless the whole span is. A span longer than
    ``size`` needs ``size`` >= `MIN_BATCH` (llama.cpp's ``n_batch`` is 512 unless ``n_ctx`` is smaller,
    and then no span is longer)."""
    if end - begin <= size:
        return [(begin, end)]
    if size < MIN_BATCH:
        raise ValueError(f"cannot lay out {end - begin} tokens in batches of {size}: at least {MIN_BATCH} needed")
    size = size // ALIGN * ALIGN
    out = []
    i = begin
    while i < end:
        take = min(size, end - i)
        if 0 < end - i - take < MIN_ROWS:
            take = (end - i - MIN_ROWS) // ALIGN * ALIGN  # leave the last batch MIN_ROWS tokens or more
        out.append((i, i + take))
        i += take
    return out


def canonical_end(begin: int, end: int) -> int:
    """How many leading tokens of a prefill evaluated from ``begin`` to ``end`` (by `chunks`) hold a
    canonical cache: up to the last full group of its last batch; none of a prefill under `MIN_ROWS`
    tokens (its one batch takes the small-batch path)."""
    if end - begin < MIN_ROWS:
        return begin
    return begin + (end - begin) // ALIGN * ALIGN
