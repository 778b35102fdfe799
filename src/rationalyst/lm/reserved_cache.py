"""A KV cache with room to grow: decode steps write their column in place instead of concatenating.

transformers' ``DynamicLayer.update`` runs ``torch.cat([keys, new])`` for every layer at every step: a
copy of the whole cache to add one column, for the 135M default model 46 KB per row and column, so
about 1.2 GB per step at 32 rows over 800 columns (a batched step search), where a step takes 371 ms
on 2 CPU cores with the copy and 267 ms without (`benchmarks/decode_cache.py`). `ReservedLayer` keeps
keys and values in buffers with spare columns and hands the model views of the filled part, so a step
writes 32 new columns and moves nothing else; the views are what ``DynamicLayer`` would hold (same
shapes, same values), so attention, masks and ``get_seq_length`` see no difference.

`with_room` turns a cache of plain dynamic layers into one of reserved layers (the decode loop calls
it after each join and trim, with room for its longest remaining generation); caches with other layers
(sliding windows, linear attention) are returned as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

#: Columns added when a write finds the buffer full (the decode loop reserves what it needs up front;
#: this is the fallback for callers that do not).
GROWTH = 64


class ReservedLayer(DynamicLayer):
    """A dynamic cache layer whose ``keys``/``values`` are the first ``length`` columns of larger buffers."""

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int) -> None:
        super().__init__()
        self._adopt(key_buffer, value_buffer, length)

    @classmethod
    def copy_of(cls, keys: torch.Tensor, values: torch.Tensor, room: int) -> ReservedLayer:
        """A layer holding ``keys``/``values`` (rows, heads, columns, dim) with ``room`` free columns."""
        key_buffer, value_buffer = _buffer_like(keys, room), _buffer_like(values, room)
        length = keys.shape[2]
        key_buffer[:, :, :length] = keys
        value_buffer[:, :, :length] = values
        return cls(key_buffer, value_buffer, length)

    @property
    def room(self) -> int:
        return self._key_buffer.shape[2] - self.length

    def _adopt(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int) -> None:
        self._key_buffer, self._value_buffer, self.length = key_buffer, value_buffer, length
        self.keys, self.values = key_buffer[:, :, :length], value_buffer[:, :, :length]
        self.device, self.is_initialized = key_buffer.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:  # after `reset`
            self._adopt(_buffer_like(key_states, GROWTH, 0), _buffer_like(value_states, GROWTH, 0), 0)
        new = key_states.shape[2]
        if new > self.room:
            self._regrow(max(new, GROWTH))
        end = self.length + new
        self._key_buffer[:, :, self.length : end] = key_states
        self._value_buffer[:, :, self.length : end] = value_states
        self._adopt(self._key_buffer, self._value_buffer, end)
        return self.keys, self.values

    def _regrow(self, room: int) -> None:
        grown = ReservedLayer.copy_of(self.keys, self.values, room)
        self._adopt(grown._key_buffer, grown._value_buffer, grown.length)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._adopt(self._key_buffer[indices], self._value_buffer[indices], self.length)

    # The other reshaping methods of DynamicLayer replace keys/values: take their result back into a buffer.
    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        self._adopt(self._key_buffer, self._value_buffer, self.keys.shape[2])

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._regrow(self.room)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self.device))


def _buffer_like(tensor: torch.Tensor, room: int, length: int | None = None) -> torch.Tensor:
    rows, heads, columns, dim = tensor.shape
    return tensor.new_empty((rows, heads, (columns if length is None else length) + room, dim))


def reservable(cache: Any) -> bool:
    """Whether every layer of ``cache`` is a plain (full-attention) dynamic layer holding tensors."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(
        type(layer) in (DynamicLayer, ReservedLayer) and layer.keys is not None and layer.keys.dim() == 4 for layer in layers
    )


def with_room(cache: Any, room: int) -> Any:
    """``cache`` with at least ``room`` free columns in every layer (its layers replaced in place by
    `ReservedLayer` copies where they have less); a cache that is not `reservable` comes back as is."""
    if not reservable(cache):
        return cache
    for i, layer in enumerate(cache.layers):
        if not isinstance(layer, ReservedLayer) or layer.room < room:
            cache.layers[i] = ReservedLayer.copy_of(layer.keys, layer.values, room)
    return cache


def reserved_cache(layers: list[ReservedLayer]) -> DynamicCache:
    """A ``DynamicCache`` made of ``layers`` (built empty, then given them: no copy of their data)."""
    first = layers[0].keys
    empty = first.new_empty((first.shape[0], first.shape[1], 0, first.shape[3]))
    cache = DynamicCache(ddp_cache_data=[(empty, empty)] * len(layers))
    cache.layers[:] = layers
    return cache
