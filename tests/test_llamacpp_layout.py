"""The llama.cpp prefill layout's arithmetic (`lm.llamacpp_layout`); what it buys is tested on the engine
in tests/test_llamacpp.py (the llamacpp tier)."""

from __future__ import annotations

import pytest

from rationalyst.lm.llamacpp_layout import canonical_end, chunks, resume_point


@pytest.mark.parametrize("begin", [0, 16, 496])
@pytest.mark.parametrize("length", [1, 5, 31, 32, 33, 47, 500, 512, 513, 540, 543, 1024, 1055, 1300])
def test_batches_start_aligned_cover_the_span_and_none_is_short(begin, length):
    end = begin + length
    batches = chunks(begin, end, 512)
    assert batches[0][0] == begin and batches[-1][1] == end
    assert all(a == b for (_, a), (b, _) in zip(batches, batches[1:]))  # contiguous
    assert all(a % 16 == 0 for a, _ in batches)
    assert all(32 <= b - a <= 512 for a, b in batches) or len(batches) == 1


def test_a_span_too_long_for_small_batches_is_refused():
    assert chunks(0, 40, 40) == [(0, 40)]  # fits one batch: any size does
    with pytest.raises(ValueError, match="at least 128"):
        chunks(0, 100, 64)


def test_a_prefill_resumes_aligned_with_32_tokens_or_more_left():
    assert resume_point(0, 500) == 0
    assert resume_point(100, 500) == 96  # aligned down
    assert resume_point(490, 500) == 464  # 500 - 32 = 468, aligned down
    assert resume_point(20, 25) == 0  # shorter than 32: all of it
    # What a prefill leaves reusable: the full groups of 16 of its batches, none of a short one.
    assert canonical_end(96, 500) == 496
    assert canonical_end(0, 20) == 0
    assert canonical_end(0, 32) == 32
