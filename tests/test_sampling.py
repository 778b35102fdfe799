"""`draw_one` against ``torch.multinomial`` itself: the same tokens, the generator left in the same state."""

from __future__ import annotations

import pytest
import torch

from rationalyst.lm import sampling
from rationalyst.lm.sampling import draw_one


def distributions():
    """Softmaxes of several sharpnesses over a vocabulary (float32), some cut to a nucleus (zeros)."""
    source = torch.Generator().manual_seed(7)
    for case in range(24):
        logits = torch.randn(3, 4000, generator=source) * (1 + case % 6)
        probs = torch.softmax(logits, -1)
        if case % 3 == 0:  # a nucleus: all but each row's 40 most likely tokens zeroed
            cut = probs.topk(40, dim=-1).values[:, -1:]
            probs = torch.where(probs >= cut, probs, torch.zeros_like(probs))
        yield case, probs


def test_the_tokens_and_the_generator_state_are_multinomial_s():
    assert sampling.exact_on_this_torch()
    for case, probs in distributions():
        ours, theirs = torch.Generator().manual_seed(case), torch.Generator().manual_seed(case)
        for _ in range(5):  # successive draws: each starts where the last left the generator
            drawn = draw_one(probs, ours)
            assert torch.equal(drawn, torch.multinomial(probs, 1, generator=theirs)), case
        assert torch.equal(ours.get_state(), theirs.get_state()), case
        assert drawn.shape == (3, 1) and drawn.dtype == torch.int64


def test_the_draws_follow_the_distribution():
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]])
    generator = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.cat([draw_one(probs, generator) for _ in range(20000)]).flatten(), minlength=4)
    assert counts[1] == 0
    assert torch.allclose(counts / 20000, probs[0], atol=0.015)


@pytest.mark.parametrize("row, message", [
    ([0.5, -0.1, 0.6], "element < 0"),
    ([0.5, float("nan"), 0.6], "nan"),
    ([0.5, float("inf"), 0.6], "inf"),
    ([0.0, 0.0, 0.0], "sum of probabilities <= 0"),
])
def test_rejects_what_multinomial_rejects(row, message):
    probs = torch.tensor([[0.2, 0.3, 0.5], row])
    with pytest.raises(RuntimeError, match="invalid|contains") as theirs:
        torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="invalid|contains") as ours:
        draw_one(probs, torch.Generator().manual_seed(0))
    assert str(ours.value) == str(theirs.value) and message in str(ours.value)


def test_float64_probabilities_draw_by_multinomial(monkeypatch):
    probs = torch.softmax(torch.randn(3, 4000, generator=torch.Generator().manual_seed(2), dtype=torch.float64), -1)
    monkeypatch.setattr(sampling, "_exponential", lambda like, generator: pytest.fail("the float32 path ran"))
    ours, theirs = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(draw_one(probs, ours), torch.multinomial(probs, 1, generator=theirs))


def test_where_the_identity_does_not_hold_multinomial_is_called(monkeypatch):
    sampling.exact_on_this_torch.cache_clear()
    monkeypatch.setattr(sampling, "_exponential", lambda like, generator: torch.ones_like(like))
    try:
        assert not sampling.exact_on_this_torch()
        probs = torch.softmax(torch.randn(2, 50, generator=torch.Generator().manual_seed(1)), -1)
        ours, theirs = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        assert torch.equal(draw_one(probs, ours), torch.multinomial(probs, 1, generator=theirs))
    finally:
        sampling.exact_on_this_torch.cache_clear()
