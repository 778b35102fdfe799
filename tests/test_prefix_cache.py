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


def _generate_as_without_reuse(model, prompts, params, prepare=lambda: None) -> int:
    """Generate ``prompts`` (seeds 3, 4, 5) with the prefix store on, after ``prepare()``, check the result
    against the store off (tokens equal, log-probs 1e-4), and return the prompt positions forwarded."""
    model.prefix_cache.capacity = 0
    reference = model.generate_seeded(prompts, params, [3, 4, 5])
    model.prefix_cache.capacity = 8
    prepare()
    before = model.generation_forwarded
    got = model.generate_seeded(prompts, params, [3, 4, 5])
    for got_row, ref_row in zip(got, reference):
        assert [c.token_ids for c in got_row] == [c.token_ids for c in ref_row]
        for g, r in zip(got_row, ref_row):
            assert max(abs(a - b) for a, b in zip(g.logprobs, r.logprobs)) < 1e-4
    return model.generation_forwarded - before


@pytest.mark.parametrize(
    "params",
    [SamplingParams(max_new_tokens=8), SamplingParams(n=2, temperature=0.8, max_new_tokens=8, seed=5)],
)
def test_a_batch_mixing_stored_trajectories_and_a_new_prompt_reuses_each_row_s_prefix(model, params):
    """Two rows extend prefixes stored by an earlier call, one is new: the result equals generation with no
    reuse at all, and the new row's long prompt is not rerun by the rows that have theirs stored."""
    first = [QUESTION + "He buys 5 more apples.", "Question: Ann reads 4 pages a day for a week.\nShe reads 4 pages.\n"]
    extended = [first[0] + "\nSo", first[1] + "In 7 days"]
    fresh = ("Question: A farmer has 12 cows, 30 hens and 4 horses; each cow gives 9 litres of milk a day and "
             "he sells it at 2 dollars a litre. How much does he earn in a week?\n")
    prompts = extended + [fresh]
    forwarded = _generate_as_without_reuse(
        model, prompts, params, lambda: model.generate(first, SamplingParams(max_new_tokens=1))  # stores the trajectories
    )
    ids = [model.tokenizer(p)["input_ids"] for p in prompts]
    stored = [common_prefix_length(model.tokenizer(f)["input_ids"], i) for f, i in zip(first, ids)]
    need_stored = max(len(i) - 1 - s for i, s in zip(ids, stored))
    need_fresh = len(ids[2]) - 1
    last_column = len(prompts) * params.n
    assert need_fresh > 4 * need_stored  # the case this is about
    assert forwarded <= need_fresh + len(prompts) * need_stored + last_column
    assert forwarded < len(prompts) * need_fresh  # what one pass from the new row's first column costs


@pytest.mark.parametrize(
    "params",
    [SamplingParams(max_new_tokens=8), SamplingParams(n=2, temperature=0.8, max_new_tokens=8, seed=5)],
)
def test_prompts_starting_together_run_their_shared_text_once(model, params):
    """Three new problems behind the same few-shot text, nothing stored: the result equals generation with
    no reuse at all, and the shared text runs once, not once per row."""
    shots = (
        "Solve each problem step by step.\n\n" + QUESTION + "He buys 5 more, so 3 + 5 = 8.\nThe answer is 8.\n\n"
        "Question: Ann reads 4 pages a day for a week. How many pages does she read?\n"
        "A week has 7 days, so 4 * 7 = 28.\nThe answer is 28.\n\n"
    )
    prompts = [
        shots + "Question: A box holds 6 eggs. How many eggs are in 9 boxes?\n",
        shots + "Question: Sam had 40 dollars and spent 15. How much is left?\n",
        shots + "Question: A train travels 60 km an hour for 3 hours. How far does it go?\n",
    ]
    forwarded = _generate_as_without_reuse(model, prompts, params)
    ids = [model.tokenizer(p)["input_ids"] for p in prompts]
    shared = min(common_prefix_length(ids[0], i) for i in ids[1:])
    rest = max(len(i) - 1 - shared for i in ids)
    assert shared > 4 * rest  # the case this is about: a long shared text, short questions
    assert forwarded <= shared + len(prompts) * rest + len(prompts) * params.n
    assert forwarded < 2 * shared  # what running the shared text for each row costs: 3x
