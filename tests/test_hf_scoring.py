"""KV-shared batched scoring must equal the plain reference: one full forward pass per continuation."""

from __future__ import annotations

import math

import pytest

from rationalyst.lm import ScoreRequest

CONTEXTS = [
    "Question: Tom has 3 apples and buys 2 more. How many apples does he have now?\nAnswer:",
    "The mitochondria is the powerhouse of the cell. " * 12 + "Therefore,",
    [{"role": "user", "content": "What is 17 + 25? Think step by step."}],
]
CONTINUATIONS = [
    " 5",
    " He has 3 + 2 = 5 apples, so the answer is 5.",
    "\n\nLet me think about this carefully: first we add, then we check the units.",
    " café ☺ — naïve",
    "",
]


def _max_diff(a, b):
    assert a.token_ids == b.token_ids
    return max((abs(x - y) for x, y in zip(a.logprobs, b.logprobs)), default=0.0)


@pytest.mark.parametrize("context", CONTEXTS, ids=["qa", "long", "chat"])
def test_shared_kv_scoring_matches_full_passes(default_model, context):
    shared = default_model.score(context, CONTINUATIONS)
    reference = default_model.score_full_passes(context, CONTINUATIONS)
    assert len(shared) == len(CONTINUATIONS)
    for got, want in zip(shared, reference):
        assert _max_diff(got, want) < 1e-4
        assert math.isclose(got.sum, want.sum, abs_tol=1e-3)
    assert shared[-1].token_ids == [] and shared[-1].sum == 0.0


def test_batches_smaller_than_k_and_many_requests_agree(default_model):
    """More continuations than the batch size (several chunks reuse the cache) and several contexts."""
    conts = [f" {i} apples and {i + 1} pears" for i in range(9)]
    requests = [ScoreRequest(c, conts) for c in CONTEXTS[:2]]
    results = default_model.score_many(requests)
    for request, got in zip(requests, results):
        want = default_model.score_full_passes(request.context, conts)
        assert max(_max_diff(g, w) for g, w in zip(got, want)) < 1e-4


def test_scores_are_real_log_probs(default_model):
    """A likely continuation outranks an unlikely one; every log-prob is <= 0; mean = sum / n."""
    good, bad = default_model.score("The capital of France is", [" Paris", " banana"])
    assert good.sum > bad.sum
    assert all(lp <= 0 for lp in good.logprobs + bad.logprobs)
    assert math.isclose(good.mean, good.sum / len(good.logprobs))


def test_discounted_score_is_the_method_formula(default_model):
    (score,) = default_model.score("One, two, three,", [" four, five, six"])
    expected = sum(0.9**i * lp for i, lp in enumerate(score.logprobs))
    assert math.isclose(score.discounted(0.9), expected, rel_tol=1e-12)
    assert math.isclose(score.discounted(1.0), score.sum, rel_tol=1e-9)
