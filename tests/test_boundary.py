"""The tokenization boundary: joined text split at the context's end (see rationalyst.lm.boundary)."""

from __future__ import annotations

import pytest

from rationalyst.lm.boundary import SplitSequence, count_context_tokens, shared_prefix_length


def test_count_context_tokens_puts_straddling_tokens_in_the_continuation():
    # tokens "ab" (0,2) "c d" (2,5) "e" (5,6); context ends at 3, inside the second token
    assert count_context_tokens([2, 5, 6], 3) == 1
    assert count_context_tokens([2, 5, 6], 5) == 2
    assert count_context_tokens([0, 2, 5], 0) == 1  # a BOS at (0, 0) is context
    assert count_context_tokens([2, 5], 99) == 2


def test_shared_prefix_stops_at_first_difference_and_at_the_shortest_context():
    a = SplitSequence([1, 2, 3, 4, 5], 3)
    b = SplitSequence([1, 2, 3, 9], 3)
    c = SplitSequence([1, 2, 7, 8], 2)
    assert shared_prefix_length([a, b]) == 3
    assert shared_prefix_length([a, b, c]) == 2
    assert shared_prefix_length([SplitSequence([1, 2], 2), SplitSequence([5, 2], 2)]) == 0


@pytest.mark.parametrize(
    "context, continuation",
    [
        ("The answer is", " 42"),  # leading space merges with the word
        ("The answer is ", "42"),  # trailing space in the context
        ("Step 1: add.", "\nStep 2: check."),
        ("Step 1: add.\n", "\nStep 2"),  # newline run across the boundary
        ("Le café", " est fermé ☺"),  # multi-byte characters
        ("日本語の", "テキスト"),
        ("", "Hello"),  # empty context starts from BOS
    ],
)
def test_continuation_tokens_are_the_joined_texts_tail(default_model, context, continuation):
    tok = default_model.tokenizer
    split = default_model.split(context, continuation)
    joined = tok(context + continuation, add_special_tokens=True)["input_ids"]
    # The tokens are exactly the model's own tokenization of the running text ...
    assert split.token_ids[-len(joined) :] == joined
    # ... the continuation's tokens spell the continuation (plus any straddling characters) ...
    tail = tok.decode(split.continuation_ids)
    assert tail.endswith(continuation)
    assert (context + continuation).endswith(tail)
    # ... and the context's tokens never reach past the context.
    head = tok.decode(split.token_ids[: split.n_context], skip_special_tokens=True)
    assert context.startswith(head)
    assert split.n_context >= 1


def test_a_token_is_context_only_when_it_lies_wholly_in_the_context(default_model):
    """'is' + ' 42' and 'is ' + '42' are one running text; only where the space falls differs."""
    a = default_model.split("The answer is", " 42")
    b = default_model.split("The answer is ", "42")
    assert a.token_ids == b.token_ids
    assert default_model.tokenizer.decode(a.continuation_ids) == " 42"
    assert default_model.tokenizer.decode(b.continuation_ids) == "42"
