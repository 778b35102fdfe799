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
