"""The hf backend passes and reads the KV cache under the name the installed transformers uses: on 5.x
``cache`` (``past_key_values`` is deprecated there and removed in 5.40), on 4.x ``past_key_values``.
Scoring with a reused prefix, batched branches on a shared trunk, and generation from a cached prefix
never touch the deprecated name."""

from __future__ import annotations

import inspect

import pytest

from rationalyst.lm import SamplingParams
from rationalyst.lm.prefix_cache import cache_argument

QUESTION = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nHe starts with 3 apples.\n"


@pytest.fixture
def model(default_model):
    default_model.prefix_cache.clear()
    yield default_model
    default_model.prefix_cache.clear()


def test_the_cache_argument_is_the_one_forward_takes(model):
    parameters = inspect.signature(model.model.forward).parameters
    expected = "cache" if "cache" in parameters else "past_key_values"
    assert cache_argument(model.model) == expected == model.cache_arg


def test_no_call_uses_the_deprecated_name(model, monkeypatch):
    from transformers.utils import generic

    if "cache" not in inspect.signature(model.model.forward).parameters:
        pytest.skip("transformers 4.x: past_key_values is the current name")
    passed: list[set[str]] = []
    hook = model.model.register_forward_pre_hook(lambda module, args, kwargs: passed.append(set(kwargs)), with_kwargs=True)

    def deprecated(self):
        raise AssertionError("read output.past_key_values (deprecated, removed in transformers 5.40)")

    monkeypatch.setattr(generic.ModelOutput, "past_key_values", property(deprecated))
    try:
        model.score(QUESTION, ["x"])  # stores the trajectory
        model.score(QUESTION + "He buys 5 more.", [" So 8.", " So 15.", " The answer is 8."])  # reuse + branches
        model.generate([QUESTION], SamplingParams(max_new_tokens=1))  # stores the prefix
        model.generate([QUESTION + "He buys"], SamplingParams(max_new_tokens=4, n=2, temperature=0.7, seed=1))
    finally:
        hook.remove()
    assert passed and not any("past_key_values" in keys for keys in passed)
    assert any(keys & {"cache"} for keys in passed)  # the cache did go in, under its current name
