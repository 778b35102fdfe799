"""Generation on the default model: seeded reproducibility, chat template, stop strings, log-probs."""

from __future__ import annotations

import math

from rationalyst.lm import SamplingParams

CHAT = [{"role": "user", "content": "Name three colours."}]


def test_seeded_sampling_is_reproducible_and_seed_dependent(default_model):
    params = SamplingParams(n=3, temperature=0.9, max_new_tokens=12, seed=123)
    first = default_model.generate([CHAT, "Once upon a time"], params)
    second = default_model.generate([CHAT, "Once upon a time"], params)
    assert [[c.token_ids for c in row] for row in first] == [[c.token_ids for c in row] for row in second]
    other = default_model.generate([CHAT, "Once upon a time"], SamplingParams(n=3, temperature=0.9, max_new_tokens=12, seed=7))
    assert [[c.token_ids for c in row] for row in first] != [[c.token_ids for c in row] for row in other]
    assert len(first) == 2 and all(len(row) == 3 for row in first)


def test_chat_template_is_the_models_own(default_model):
    text = default_model.render(CHAT)
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n")


def test_greedy_logprobs_match_scoring_the_generated_text(default_model):
    """The log-probs generation reports are the model's: scoring the same tokens gives the same values."""
    (completion,) = default_model.generate([CHAT], SamplingParams(max_new_tokens=10))[0]
    assert len(completion.token_ids) == len(completion.logprobs) > 0
    (score,) = default_model.score(CHAT, [default_model.tokenizer.decode(completion.token_ids)])
    assert score.token_ids == completion.token_ids
    assert max(abs(a - b) for a, b in zip(score.logprobs, completion.logprobs)) < 1e-3
    assert all(lp <= 0 and math.isfinite(lp) for lp in completion.logprobs)


def test_stop_strings_and_length_limit(default_model):
    params = SamplingParams(n=2, temperature=0.8, max_new_tokens=40, seed=0, stop=(",", "\n"))
    for completion in default_model.generate(["Apples, pears, plums, cherries, grapes"], params)[0]:
        assert "," not in completion.text and "\n" not in completion.text
        assert len(completion.token_ids) == len(completion.logprobs) <= 40
    (short,) = default_model.generate(["Count: 1 2 3 4 5"], SamplingParams(max_new_tokens=3))[0]
    assert short.finish_reason == "length" and len(short.token_ids) == 3


def test_finish_reason_stop_on_end_of_turn(default_model):
    (done,) = default_model.generate(
        [[{"role": "user", "content": "Reply with just the word yes."}]], SamplingParams(max_new_tokens=30)
    )[0]
    assert done.finish_reason == "stop"
    assert "<|im_end|>" not in done.text
