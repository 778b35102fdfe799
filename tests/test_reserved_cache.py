"""`ReservedLayer`: the same keys and values as concatenation, written in place into spare columns."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from rationalyst.lm.prefix_cache import cache_argument, output_cache
from rationalyst.lm.reserved_cache import ReservedLayer, reservable, reserved_cache, with_room


def _states(rows: int, columns: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, columns, 4, generator=g), torch.randn(rows, 2, columns, 4, generator=g)


def test_updates_equal_concatenation_and_write_in_place():
    keys, values = _states(3, 5, 0)
    layer = ReservedLayer.copy_of(keys, values, room=4)
    buffer = layer._key_buffer.data_ptr()
    expected_k, expected_v = keys, values
    for step in range(6):  # 4 fit in the room, then the buffer grows once
        k, v = _states(3, 1, step + 1)
        out_k, out_v = layer.update(k, v)
        expected_k, expected_v = torch.cat([expected_k, k], 2), torch.cat([expected_v, v], 2)
        assert torch.equal(out_k, expected_k) and torch.equal(out_v, expected_v)
        assert layer.get_seq_length() == 6 + step
        if step < 4:
            assert layer._key_buffer.data_ptr() == buffer  # no copy while there is room
    assert layer._key_buffer.data_ptr() != buffer


def test_row_selection_crop_and_repeat_keep_the_values():
    keys, values = _states(4, 3, 7)
    layer = ReservedLayer.copy_of(keys, values, room=2)
    index = torch.tensor([3, 1])
    layer.batch_select_indices(index)
    assert torch.equal(layer.keys, keys[index]) and layer.room == 2
    k, v = _states(2, 1, 8)
    layer.update(k, v)
    assert torch.equal(layer.values, torch.cat([values[index], v], 2))
    layer.crop(-2)
    assert torch.equal(layer.keys, keys[index][:, :, :2])
    layer.batch_repeat_interleave(2)
    assert torch.equal(layer.keys, keys[index][:, :, :2].repeat_interleave(2, dim=0))
    k, v = _states(4, 1, 9)
    assert torch.equal(layer.update(k, v)[1], torch.cat([values[index][:, :, :2].repeat_interleave(2, 0), v], 2))


def test_with_room_converts_dynamic_caches_only():
    keys, values = _states(2, 3, 1)
    cache = DynamicCache(ddp_cache_data=[(keys, values), (keys * 2, values * 2)])
    assert reservable(cache)
    with_room(cache, 5)
    assert all(isinstance(layer, ReservedLayer) and layer.room == 5 for layer in cache.layers)
    assert torch.equal(cache.layers[1].keys, keys * 2)
    kept = cache.layers[0]
    with_room(cache, 3)  # enough room already: no copy
    assert cache.layers[0] is kept
    assert not reservable(object()) and not reservable(DynamicCache())


def test_a_model_decodes_the_same_on_a_reserved_cache():
    """Greedy steps of a small random llama on a reserved cache give the logits of a plain dynamic cache."""
    config = AutoConfig.for_model(
        "llama", vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    ids = torch.randint(0, 50, (3, 7))
    arg = cache_argument(model)
    with torch.no_grad():
        plain = output_cache(model(input_ids=ids, use_cache=True))
        layers = [ReservedLayer.copy_of(layer.keys, layer.values, room=8) for layer in plain.layers]
        reserved = reserved_cache(layers)
        plain = DynamicCache(ddp_cache_data=[(layer.keys.clone(), layer.values.clone()) for layer in plain.layers])
        token = ids[:, -1:]
        for _ in range(5):
            a = model(input_ids=token, use_cache=True, **{arg: plain})
            b = model(input_ids=token, use_cache=True, **{arg: reserved})
            torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=1e-6)
            token = a.logits[:, -1:].argmax(-1)
    assert reserved.layers[0] is layers[0] and reserved.get_seq_length() == 12


def _pad_left(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    return torch.nn.functional.pad(tensor, (0, 0, columns, 0))  # dim 2 of (rows, heads, columns, dim)


def test_joining_rows_go_below_the_batch_right_aligned_without_moving_it():
    keys, values = _states(3, 5, 2)
    layer = ReservedLayer.copy_of(keys, values, room=4, spare_rows=4, left=8)
    buffer = layer._key_buffer.data_ptr()
    narrow_k, narrow_v = _states(2, 3, 3)  # padded on the left to the batch's 5 columns
    layer.append_rows(narrow_k, narrow_v, room=4)
    expected_k = torch.cat([keys, _pad_left(narrow_k, 2)])
    expected_v = torch.cat([values, _pad_left(narrow_v, 2)])
    assert torch.equal(layer.keys, expected_k) and torch.equal(layer.values, expected_v)
    wide_k, wide_v = _states(1, 7, 4)  # the batch is padded to its 7 columns
    layer.append_rows(wide_k, wide_v, room=4)
    expected_k, expected_v = torch.cat([_pad_left(expected_k, 2), wide_k]), torch.cat([_pad_left(expected_v, 2), wide_v])
    assert torch.equal(layer.keys, expected_k) and torch.equal(layer.values, expected_v)
    assert layer._key_buffer.data_ptr() == buffer and layer.room == 4  # all within the margins
    more_k, more_v = _states(3, 20, 5)  # more rows and columns than the margins hold: the buffers grow
    layer.append_rows(more_k, more_v, room=6)
    assert torch.equal(layer.keys, torch.cat([_pad_left(expected_k, 13), more_k])) and layer.room >= 6
    assert torch.equal(layer.values, torch.cat([_pad_left(expected_v, 13), more_v]))


def test_leaving_rows_are_compacted_in_place_and_dropped_columns_come_back_as_zeros():
    keys, values = _states(6, 5, 6)
    layer = ReservedLayer.copy_of(keys, values, room=3)
    buffer = layer._key_buffer.data_ptr()
    layer.keep_rows([0, 2, 3, 5])
    assert torch.equal(layer.keys, keys[[0, 2, 3, 5]]) and torch.equal(layer.values, values[[0, 2, 3, 5]])
    step_k, step_v = _states(4, 1, 7)
    layer.update(step_k, step_v)
    kept_k = torch.cat([keys[[0, 2, 3, 5]], step_k], 2)
    assert torch.equal(layer.keys, kept_k)
    layer.drop_leading(2)
    assert torch.equal(layer.keys, kept_k[:, :, 2:]) and layer._key_buffer.data_ptr() == buffer
    wide_k, wide_v = _states(1, 5, 8)  # one column wider than the 4 left: the dropped one returns, zeroed
    layer.append_rows(wide_k, wide_v, room=1)
    assert torch.equal(layer.keys, torch.cat([_pad_left(kept_k[:, :, 2:], 1), wide_k]))
    layer.keep_rows([1, 4])
    assert torch.equal(layer.keys, torch.cat([_pad_left(kept_k[:, :, 2:], 1), wide_k])[[1, 4]])
