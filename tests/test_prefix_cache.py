"""Prefix reuse across calls (the step search's growing trajectory) must not change any number."""

from __future__ import annotations

import pytest

from rationalyst.lm import SamplingParams
from rationalyst.lm.prefix_cache import PrefixCache, common_prefix_length

QUESTION = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nHe starts with 3 apples.\n"
CANDIDATES = ["He buys 5 more, so 3 + 5 = 8.", "3 * 5 = 15 apples.", "The answer is 8."]


@pytest.fixture
def model(default_model):
    default_model.prefix_cache.clear()
    capacity = default_model.prefix_cache.capacity
    yield default_model
    default_model.prefix_cache.capacity = capacity
    default_model.prefix_cache.clear()


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([5], [4]) == 0


def test_scores_with_a_cached_trajectory_equal_full_passes(model):
    model.prefix_cache.capacity = 4
    model.score(QUESTION, ["x"])  # the previous step's scoring stores the trajectory
    before = model.forwarded_tokens
    context = QUESTION + "Rationale: add the apples he buys. "
    got = model.score(context, CANDIDATES)
    forwarded = model.forwarded_tokens - before
    reference = model.score_full_passes(context, CANDIDATES)
    for g, r in zip(got, reference):
        assert g.token_ids == r.token_ids
        assert max(abs(a - b) for a, b in zip(g.logprobs, r.logprobs)) < 1e-4
    assert model.prefix_cache.reused_tokens > 0
    # Only the rationale and the candidates ran, not the question again.
    question_tokens = len(model.tokenizer(QUESTION)["input_ids"])
    assert forwarded < sum(len(model.split(context, c).token_ids) for c in CANDIDATES) - question_tokens


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_new_tokens=16, stop=("\n",)),
        SamplingParams(n=3, temperature=0.7, max_new_tokens=16, seed=3, stop=("\n",)),
    ],
)
def test_generation_from_a_cached_prefix_is_unchanged(model, params):
    prompt = QUESTION + "So"
    model.prefix_cache.capacity = 0
    reference = model.generate([prompt], params)[0]
    model.prefix_cache.capacity = 4
    model.generate([QUESTION], SamplingParams(max_new_tokens=1))  # stores the prefix
    reused = model.prefix_cache.reused_tokens
    got = model.generate([prompt], params)[0]
    assert model.prefix_cache.reused_tokens > reused
    assert [c.text for c in got] == [c.text for c in reference]
    for g, r in zip(got, reference):
        assert max(abs(a - b) for a, b in zip(g.logprobs, r.logprobs)) < 1e-4


def test_store_keeps_the_longest_entry_and_evicts_least_recent(model):
    cache = PrefixCache(capacity=2)
    out = model.model(input_ids=model._right_pad([[1, 2, 3, 4, 5]]), use_cache=True).past_key_values
    cache.store([1, 2, 3], out)
    cache.store([1, 2, 3, 4, 5], out)  # replaces its own prefix
    assert len(cache) == 1
    n, past = cache.lookup([1, 2, 3, 4, 9], limit=10)
    assert n == 4 and past.get_seq_length() == 4
    cache.store([7], out)
    cache.store([8], out)
    assert len(cache) == 2 and cache.lookup([1, 2, 3], limit=10)[0] == 0
