"""A KV cache with room to grow, in rows and columns: decode steps, joins and leaves write in place.

transformers' ``DynamicLayer.update`` runs ``torch.cat([keys, new])`` for every layer at every step: a
copy of the whole cache to add one column, for the 135M default model 46 KB per row and column, so
about 1.2 GB per step at 32 rows over 800 columns (a batched step search), where a step takes 371 ms
on 2 CPU cores with the copy and 267 ms without (`benchmarks/decode_cache.py`). The decode loop's
joins and leaves did the same at the batch level: a joining prompt rebuilt the whole batch's cache
to add its rows (about 0.7 GB at 32 rows x 500 columns), and a leaving prompt copied every other row.

`ReservedLayer` keeps keys and values in buffers with spare rows below the live ones and spare columns
on both sides of the filled span: the live cache is rows ``[0, rows)`` and columns ``[start, end)``, and
the model is handed views of it, which are what ``DynamicLayer`` would hold (same shapes, same values),
so attention, masks and ``get_seq_length`` see no difference. So:

- a decode step writes its column at ``end`` (`update`);
- joining rows are written below the live ones, right-aligned to ``end`` (`append_rows`); joining rows
  wider than the span move ``start`` left;
- leaving rows are compacted away by moving only the rows after the first one that left (`keep_rows`);
- leading columns that every row has as padding are dropped by moving ``start`` (`drop_leading`).

A buffer is copied only when it runs out of room, and then given more than asked (half as many rows
again, twice the columns, 64 columns on the left), so a run copies now and then, not at every join. Buffers start zeroed and only ever receive model outputs, so the
masked columns the model is shown hold finite numbers (a NaN there would leak through ``0 * NaN``).

`with_room` turns a cache of plain dynamic layers into one of reserved layers (the decode loop calls it
on every cache it takes in); caches with other layers (sliding windows, linear attention) are returned
as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

#: Columns added when a write finds the buffer full, and left free before ``start`` when joining rows
#: widen the span (the decode loop reserves what it needs at the end up front).
GROWTH = 64


class ReservedLayer(DynamicLayer):
    """A dynamic cache layer whose ``keys``/``values`` are rows ``[0, rows)`` and columns ``[start, end)``
    of larger buffers."""

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int, rows: int | None = None, start: int = 0) -> None:
        super().__init__()
        self._adopt(key_buffer, value_buffer, key_buffer.shape[0] if rows is None else rows, start, start + length)

    @classmethod
    def copy_of(cls, keys: torch.Tensor, values: torch.Tensor, room: int, spare_rows: int = 0, left: int = 0) -> ReservedLayer:
        """A layer holding ``keys``/``values`` (rows, heads, columns, dim) with ``room`` free columns after
        them, ``left`` before them and ``spare_rows`` free rows."""
        rows, columns = keys.shape[0], keys.shape[2]
        buffers = []
        for tensor in (keys, values):
            buffer = tensor.new_zeros((rows + spare_rows, tensor.shape[1], left + columns + room, tensor.shape[3]))
            buffer[:rows, :, left : left + columns] = tensor
            buffers.append(buffer)
        return cls(*buffers, columns, rows=rows, start=left)

    @property
    def room(self) -> int:
        """Free columns after the live ones."""
        return self._key_buffer.shape[2] - self.end

    @property
    def spare_rows(self) -> int:
        return self._key_buffer.shape[0] - self.rows

    def _adopt(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, rows: int, start: int, end: int) -> None:
        self._key_buffer, self._value_buffer = key_buffer, value_buffer
        self.rows, self.start, self.end, self.length = rows, start, end, end - start
        self.keys, self.values = key_buffer[:rows, :, start:end], value_buffer[:rows, :, start:end]
        self.device, self.is_initialized = key_buffer.device, True

    def _readopt(self, rows: int | None = None, start: int | None = None, end: int | None = None) -> None:
        self._adopt(
            self._key_buffer, self._value_buffer, self.rows if rows is None else rows,
            self.start if start is None else start, self.end if end is None else end,
        )

    def regrow(self, room: int, spare_rows: int = 0, left: int = 0) -> None:
        """Copy the live cache into new buffers with these margins."""
        self._take(ReservedLayer.copy_of(self.keys, self.values, room, spare_rows, left))

    def _take(self, other: ReservedLayer) -> None:
        self._adopt(other._key_buffer, other._value_buffer, other.rows, other.start, other.end)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:  # after `reset`
            self._take(ReservedLayer.copy_of(key_states[:, :, :0], value_states[:, :, :0], GROWTH))
        new = key_states.shape[2]
        if new > self.room:
            self.regrow(max(new, GROWTH), self.spare_rows, self.start)
        end = self.end + new
        self._key_buffer[: self.rows, :, self.end : end] = key_states
        self._value_buffer[: self.rows, :, self.end : end] = value_states
        self._readopt(end=end)
        return self.keys, self.values

    def append_rows(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        """Add rows holding ``keys``/``values`` in the last of the live columns (zeros before them); rows
        wider than the live span widen it to the left (zeros in the other rows' new columns). Keeps at
        least ``room`` free columns after the span."""
        new_rows, columns = keys.shape[0], keys.shape[2]
        widen = max(0, columns - self.length)
        rows = self.rows + new_rows
        capacity = self._key_buffer.shape[0]
        if rows > capacity or widen > self.start or room > self.room:
            capacity = max(capacity, rows + rows // 2 if rows > capacity else 0)
            left = self.start if widen <= self.start else widen + GROWTH
            self.regrow(max(2 * room, self.room), capacity - self.rows, left)  # twice: later joins fit too
        start = self.start - widen
        for buffer, tensor in ((self._key_buffer, keys), (self._value_buffer, values)):
            buffer[: self.rows, :, start : self.start] = 0
            buffer[self.rows : rows, :, start : self.end - columns] = 0
            buffer[self.rows : rows, :, self.end - columns : self.end] = tensor
        self._readopt(rows=rows, start=start)

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (ascending), moving just the rows after the first one that goes."""
        first_gone = next((i for i, row in enumerate(rows) if row != i), len(rows))
        if first_gone < len(rows):
            index = torch.tensor(rows[first_gone:], device=self.device)
            for buffer in (self._key_buffer, self._value_buffer):
                buffer[first_gone : len(rows), :, self.start : self.end] = buffer[index, :, self.start : self.end]
        self._readopt(rows=len(rows))

    def drop_leading(self, columns: int) -> None:
        """Drop the first ``columns`` live columns (padding in every row)."""
        self._readopt(start=self.start + columns)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        keys, values = self.keys[indices], self.values[indices]  # any order, repeats allowed
        if keys.shape[0] > self._key_buffer.shape[0]:
            self.regrow(self.room, keys.shape[0] - self.rows, self.start)
        self._key_buffer[: keys.shape[0], :, self.start : self.end] = keys
        self._value_buffer[: keys.shape[0], :, self.start : self.end] = values
        self._readopt(rows=keys.shape[0])

    # The other reshaping methods of DynamicLayer replace keys/values: take their result back into a buffer.
    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        self._readopt(end=self.start + self.keys.shape[2])

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self.regrow(self.room)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self.device))


def reservable(cache: Any) -> bool:
    """Whether every layer of ``cache`` is a plain (full-attention) dynamic layer holding tensors."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(
        type(layer) in (DynamicLayer, ReservedLayer) and layer.keys is not None and layer.keys.dim() == 4 for layer in layers
    )


def in_buffers(cache: Any) -> bool:
    """Whether every layer of ``cache`` is already a `ReservedLayer` (rows and columns change in place)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(isinstance(layer, ReservedLayer) for layer in layers)


def with_room(cache: Any, room: int) -> Any:
    """``cache`` with at least ``room`` free columns in every layer (its layers replaced in place by
    `ReservedLayer` copies where they have less); a cache that is not `reservable` comes back as is."""
    if not reservable(cache):
        return cache
    for i, layer in enumerate(cache.layers):
        if not isinstance(layer, ReservedLayer):
            cache.layers[i] = ReservedLayer.copy_of(layer.keys, layer.values, room)
        elif layer.room < room:
            layer.regrow(room, layer.spare_rows, layer.start)
    return cache


def reserved_cache(layers: list[ReservedLayer]) -> DynamicCache:
    """A ``DynamicCache`` made of ``layers`` (built empty, then given them: no copy of their data)."""
    first = layers[0].keys
    empty = first.new_empty((first.shape[0], first.shape[1], 0, first.shape[3]))
    cache = DynamicCache(ddp_cache_data=[(empty, empty)] * len(layers))
    cache.layers[:] = layers
    return cache
