"""Where the context ends and the continuation begins, in tokens.

The rule, shared by every backend: tokenize the *joined* text ``context + continuation`` once, as the
model would see it, and split the tokens at the character offset ``len(context)``. A token that lies
wholly before that offset belongs to the context; every other token (including one that straddles
the offset, such as a word merged with the context's trailing space) belongs to the continuation and
is scored. Tokenizing the two parts separately instead would score token sequences the model never
sees in running text (e.g. ``" 42"`` split into ``" "`` and ``"42"``), and BPE merges across the
boundary would be lost.

Offsets are character offsets (``str`` indices) for Hugging Face tokenizers and byte offsets for
byte-level engines such as llama.cpp; the rule is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SplitSequence:
    """Token ids of a joined context + continuation and the index of the first continuation token."""

    token_ids: list[int]
    n_context: int

    @property
    def continuation_ids(self) -> list[int]:
        return self.token_ids[self.n_context :]


def count_context_tokens(token_ends: Sequence[int], boundary: int) -> int:
    """Number of leading tokens that end at or before ``boundary``.

    ``token_ends`` are the end offsets of the tokens in order. Special tokens the tokenizer adds
    (a BOS with offsets (0, 0)) end at 0 and so always count as context.
    """
    n = 0
    for end in token_ends:
        if end > boundary:
            break
        n += 1
    return n


def shared_prefix_length(sequences: Sequence[SplitSequence]) -> int:
    """Length of the token prefix that every sequence shares and that lies inside every context.

    This is the part of the work that can be computed once and reused (as a KV cache) for all
    continuations of one context.
    """
    if not sequences:
        return 0
    limit = min(s.n_context for s in sequences)
    first = sequences[0].token_ids
    n = 0
    while n < limit and all(s.token_ids[n] == first[n] for s in sequences[1:]):
        n += 1
    return n


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids ``a`` and ``b`` share (the prefix a KV cache of ``a`` can serve ``b``)."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
