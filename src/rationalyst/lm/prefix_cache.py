"""Keep the KV cache of recent prompts so that a prompt which extends one of them runs only its new tokens.

The step search asks the same models again and again about a trajectory that grows by one step at a
time: the agent's prompt at step t+1 is its prompt at step t plus the chosen step, and so are the
rationalist's and the scorer's. Recomputing those prefixes every step is the waste vLLM and SGLang
remove with automatic prefix caching; this is the same idea for the `hf` backend, at the scale of one
process: a small LRU store of (token ids, per-layer keys and values) for single sequences.

Batched calls (many problems in lockstep) look up and store each row on its own, so every trajectory
of a batch reuses its own previous prompt. ``capacity`` is therefore counted per sequence: the store
keeps ``capacity`` entries for each sequence of the widest forward batch it has served (a generation
call's prompts times their samples, a scoring call's requests). The step search needs three live
entries per problem (the agent's, the rationalist's and the scorer's prompt) and, when a problem
starts, an entry holding the few-shot prompt every agent prompt begins with. An entry that a new one
extends (its ids, or all but its last `SUPERSEDED_TAIL` ids: the close of a chat turn) is dropped
when the new one is stored: a later prompt of that trajectory extends the new one at least as far.

Reuse is exact: a stored entry is used only up to the longest prefix its token ids share with the
new sequence (measured on ids, so a different tokenization at the seam just shortens the reuse), and
the new tokens are run with position ids continuing from there. Stored tensors are never mutated:
a lookup hands out views, and a forward pass appends to a new tensor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache

from rationalyst.lm.boundary import common_prefix_length


def cache_argument(model: Any) -> str:
    """The name under which ``model.forward`` (and ``generate``) takes a KV cache: ``cache`` on current
    transformers, where ``past_key_values`` is deprecated and removed in 5.40; ``past_key_values`` on 4.x."""
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache a forward or generate call returned (``out.cache``; ``out.past_key_values`` on 4.x,
    read only there: on 5.x that name warns that it is deprecated)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The (keys, values) of each layer of a transformers cache, or None where slicing is not exact.

    Sliding-window and linear-attention layers do not hold the full prefix, so they cannot be cut.
    """
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    out = []
    for layer in layers:
        if getattr(layer, "is_sliding", False) or not hasattr(layer, "keys") or layer.keys is None:
            return None
        out.append((layer.keys, layer.values))
    return out


#: Ids at the end of a stored entry that a newer entry may differ in and still replace it (a chat
#: template's end of turn and assistant header, after which the next prompt of a trajectory differs).
SUPERSEDED_TAIL = 8


class PrefixCache:
    """An LRU store of KV caches of single token sequences (batch 1), at most ``capacity`` entries."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        #: Rows of the widest batch served: the store holds ``capacity`` entries per row.
        self.rows = 1
        self._entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        #: Tokens whose KV came from the store instead of a forward pass (what reuse saved).
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def reserve(self, rows: int) -> None:
        """Make room for batches of ``rows`` sequences (``capacity`` entries each)."""
        self.rows = max(self.rows, rows)

    def peek(self, ids: Sequence[int], limit: int) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """The longest stored prefix of ``ids`` (at most ``limit`` tokens) and the stored entry's layers
        (batch 1, at least that long; never to be written to). Counts nothing: the caller adds what it
        used to `reused_tokens`."""
        if self.capacity <= 0 or limit <= 0:
            return 0, None
        best, best_key = 0, None
        for key in self._entries:
            n = min(common_prefix_length(key, ids), limit)
            if n > best:
                best, best_key = n, key
        if best_key is None:
            return 0, None
        self._entries.move_to_end(best_key)
        return best, self._entries[best_key]

    def lookup(self, ids: Sequence[int], limit: int) -> tuple[int, DynamicCache | None]:
        """The longest stored prefix of ``ids`` (at most ``limit`` tokens) and a cache holding it.

        Returns ``(0, None)`` when nothing useful is stored. The cache is new; using it cannot
        change the stored entry.
        """
        best, layers = self.peek(ids, limit)
        if layers is None:
            return 0, None
        self.reused_tokens += best
        return best, DynamicCache(ddp_cache_data=[(k[:, :, :best], v[:, :, :best]) for k, v in layers])

    def store(self, ids: Sequence[int], cache, row: int = 0, start: int = 0) -> None:
        """Remember the KV of ``ids``: row ``row`` of ``cache``, whose positions ``start`` to
        ``start + len(ids)`` hold them (``start > 0``: a left-padded row)."""
        if self.capacity <= 0 or not ids:
            return
        layers = cache_layers(cache)
        if layers is None or layers[0][0].shape[2] < start + len(ids):
            return
        key = tuple(int(i) for i in ids)
        # Entries that the new one extends add nothing: the new one serves their lookups too.
        for old in [
            k for k in self._entries
            if len(k) - SUPERSEDED_TAIL <= common_prefix_length(k, key) and common_prefix_length(k, key) > 0
        ]:
            del self._entries[old]
        end = start + len(key)
        self._entries[key] = [
            (k[row : row + 1, :, start:end].clone(), v[row : row + 1, :, start:end].clone()) for k, v in layers
        ]
        while len(self._entries) > self.capacity * self.rows:
            self._entries.popitem(last=False)
