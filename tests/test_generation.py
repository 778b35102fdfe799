"""Generation on the default model: seeded reproducibility, chat template, stop strings, log-probs."""

from __future__ import annotations

import math

import pytest

from rationalyst.lm import SamplingParams
from rationalyst.lm.hf_decode import TRIM_COLUMNS
from tests.joins import run_with_joins
from tests.references import transformers_generate

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


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_new_tokens=20, stop=("\n",)),
        SamplingParams(n=3, temperature=0.9, max_new_tokens=20, stop=(".", "\n")),
        SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=12),
    ],
)
def test_decoding_makes_the_tokens_transformers_generate_makes(default_model, params):
    """The decode loop drops finished prompts from the batch: every sample still equals transformers'
    generate (tokens exactly, log-probs to 1e-4), short and long prompts mixed, chat and plain."""
    default_model.prefix_cache.capacity, capacity = 0, default_model.prefix_cache.capacity
    prompts = [CHAT, "Count: 1, 2, 3,", "Tell me a story about a dragon who lives in a cave by the sea", "Hi"]
    seeds = [3, 1, 4, 1]
    try:
        got = default_model.generate_seeded(prompts, params.model_copy(update={"stop": ()}), seeds)
        with_stop = default_model.generate_seeded(prompts, params, seeds)
    finally:
        default_model.prefix_cache.capacity = capacity
    default_model.batch_size = 4 * params.n  # one engine batch, as the reference
    for run, p in ((got, params.model_copy(update={"stop": ()})), (with_stop, params)):
        reference = transformers_generate(default_model, prompts, p, seeds)
        samples = [c for row in run for c in row]
        assert len(samples) == len(reference) == len(prompts) * params.n
        for sample, (tokens, logprobs) in zip(samples, reference):
            end = len(sample.token_ids)
            assert sample.token_ids == tokens[:end]
            assert max((abs(a - b) for a, b in zip(sample.logprobs, logprobs)), default=0) < 1e-4
            if sample.finish_reason == "length":
                assert end == len(tokens) == params.max_new_tokens
    if params.stop:  # prompts finish at different steps: rows do leave the batch
        assert len({len(c.token_ids) for row in with_stop for c in row}) > 1


def test_prompts_with_different_params_decode_together_as_each_would_alone(default_model):
    """`generate_mixed`: a greedy rationale-like prompt, n=3 sampled and n=2 top-p prompts with their own
    limits and stop strings in one decode loop; each equals transformers' generate for it alone."""
    prompts = [CHAT, "Count: 1, 2, 3,", "Tell me a story about a dragon who lives in a cave by the sea", "Hi"]
    params = [
        SamplingParams(max_new_tokens=10, stop=("\n",)),
        SamplingParams(n=3, temperature=0.9, max_new_tokens=20, stop=(".", "\n"), seed=1),
        SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=4),
        SamplingParams(n=3, temperature=0.9, max_new_tokens=6, seed=7),
    ]
    default_model.prefix_cache.capacity, capacity = 0, default_model.prefix_cache.capacity
    default_model.batch_size, batch_size = 16, default_model.batch_size  # one loop for all 9 rows
    try:
        got = default_model.generate_mixed(prompts, params)
    finally:
        default_model.prefix_cache.capacity, default_model.batch_size = capacity, batch_size
    lengths = set()
    for prompt, p, samples in zip(prompts, params, got):
        reference = transformers_generate(default_model, [prompt], p, [p.seed])
        assert len(samples) == len(reference) == p.n
        for sample, (tokens, logprobs) in zip(samples, reference):
            end = len(sample.token_ids)
            assert end <= p.max_new_tokens and sample.token_ids == tokens[:end]
            assert max((abs(a - b) for a, b in zip(sample.logprobs, logprobs)), default=0) < 1e-4
            if sample.finish_reason == "length":
                assert end == len(tokens) == p.max_new_tokens
            lengths.add(end)
    assert len(lengths) > 2  # rows ended at different steps, by their own limits and stops


def test_prompts_joining_a_running_decode_loop_decode_as_each_would_alone(default_model):
    """`HFStream` (continuous batching): a long greedy prompt starts alone; a short sampled prompt (n=3)
    joins at its third step (the batch is padded to it); the long one leaves, the batch drops the
    padding columns nobody needs; a longer prompt joins late (the batch is padded to it). Each prompt's
    samples equal transformers' generate for it alone (tokens exactly, log-probs to 1e-4)."""
    long_prompt = "Tell me a story about a dragon who lives in a cave by the sea, and about the fisherman " * 2
    late = "Write a list of ten fruits, one per line, starting with apples and pears and then " * 2
    plan = {
        "long": (long_prompt, SamplingParams(max_new_tokens=6), 0),
        "short": ("Count: 1, 2, 3,", SamplingParams(n=3, temperature=0.9, max_new_tokens=24, seed=5), 2),
        "chat": (CHAT, SamplingParams(max_new_tokens=16, stop=("\n",)), 4),
        "late": (late, SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=9), 9),
    }
    default_model.prefix_cache.capacity, capacity = 0, default_model.prefix_cache.capacity
    default_model.batch_size, batch_size = 16, default_model.batch_size
    try:
        got, joined, trimmed = run_with_joins(default_model, plan)
    finally:
        default_model.prefix_cache.capacity, default_model.batch_size = capacity, batch_size
    assert joined["short"] == ["long", "short"] and joined["chat"] == ["chat", "long", "short"]
    assert "long" not in joined["late"] and "short" in joined["late"]  # the long prompt had left, not the short
    assert max(trimmed) >= TRIM_COLUMNS  # the long prompt's columns went with it
    for tag, (prompt, params, _) in plan.items():
        reference = transformers_generate(default_model, [prompt], params, [params.seed])
        assert len(got[tag]) == params.n
        for sample, (tokens, logprobs) in zip(got[tag], reference):
            end = len(sample.token_ids)
            assert end <= params.max_new_tokens and sample.token_ids == tokens[:end]
            assert max((abs(a - b) for a, b in zip(sample.logprobs, logprobs)), default=0) < 1e-4


def _greedy_cut_at_stop(model, prompt: str, params: SamplingParams) -> tuple[list[int], str, str]:
    """The reference, by hand: transformers' greedy ``generate`` without stop strings, cut after the first
    token whose decoded completion (the generated tokens only, as vLLM and llama.cpp search) holds a
    stop string: (tokens, text before the stop string, finish reason)."""
    import torch

    ids = torch.tensor([model.tokenizer(prompt)["input_ids"]])
    out = model.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=params.max_new_tokens,
        pad_token_id=model.pad_id, temperature=None, top_p=None, top_k=None,
    )
    tokens = out[0, ids.shape[1] :].tolist()
    for end in range(1, len(tokens) + 1):
        if tokens[end - 1] in model.eos_ids:
            return tokens[: end - 1], model.tokenizer.decode(tokens[: end - 1]), "stop"
        text = model.tokenizer.decode(tokens[:end])
        found = [text.find(s) for s in params.stop if s in text]
        if found:
            return tokens[:end], text[: min(found)], "stop"
    return tokens, model.tokenizer.decode(tokens), "length"


def test_stop_strings_are_matched_in_the_generated_text_only(default_model):
    """A stop string that begins in the prompt does not end a row: "...9\\n" then "1" completes "\\n1" and
    "9\\n1" across the prompt's end, yet the completion goes on to "10\\n1" (stopped, text "10") or to its
    limit (finish "length"); a row ended by a stop string says "stop". As the transformers reference cut by
    hand, alone and decoded together with other prompts (the continuous-batching loop)."""
    prompts = ["1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "Count: 1, 2, 3,"]
    params = [
        SamplingParams(max_new_tokens=12, stop=("\n1",)),
        SamplingParams(max_new_tokens=12, stop=("9\n1",)),
        SamplingParams(max_new_tokens=12, stop=(", 4", ", 6")),
    ]
    references = [_greedy_cut_at_stop(default_model, prompt, p) for prompt, p in zip(prompts, params)]
    assert [finish for *_, finish in references] == ["stop", "length", "stop"]
    alone = [default_model.generate([prompt], p)[0] for prompt, p in zip(prompts, params)]
    together = default_model.generate_mixed(prompts, params)
    for (tokens, text, finish), (first,), (second,) in zip(references, alone, together):
        for completion in (first, second):
            assert (completion.token_ids, completion.text, completion.finish_reason) == (tokens, text, finish)


def test_stop_string_checks_kept_are_bounded(default_model, monkeypatch):
    """A server takes stop strings from its requests: the built checks (a few MiB each) are kept for the
    `STOP_CHECKS` sets last used, not for every set ever sent; a set in use is one check, built once."""
    from rationalyst.lm import hf
    from rationalyst.lm.hf import HFModel

    monkeypatch.setattr(hf, "STOP_CHECKS", 3)
    model = HFModel(default_model.model, default_model.tokenizer)
    first = model._stop_criteria(("Answer 0:",))
    for i in range(1, 6):
        assert model._stop_criteria(("Answer 0:",)) is first  # used again: the most recent, kept
        model._stop_criteria((f"Answer {i}:", "\n\n"))
        assert len(model._stop_checks) <= 3
    assert list(model._stop_checks) == [("Answer 4:", "\n\n"), ("Answer 0:",), ("Answer 5:", "\n\n")]  # oldest first


def test_empty_stop_strings_are_refused():
    """An empty stop string is found at the start of every text: it would empty every completion. Refused
    when the params are made (the CLI's --stop too), in the words of the serve protocol, which refuses a
    request with one."""
    from pydantic import ValidationError

    from rationalyst.serve.protocol import CompletionRequest

    for stop in [("",), ("\n", "")]:
        with pytest.raises(ValidationError, match="stop strings must not be empty"):
            SamplingParams(max_new_tokens=5, stop=stop)
        with pytest.raises(ValidationError, match="stop strings must not be empty"):
            CompletionRequest(model="m", prompt="The cat", stop=list(stop))


def test_a_pad_token_the_model_generates_does_not_end_a_completion(default_model):
    """Only end-of-sequence tokens end a completion: a tokenizer whose pad token is an ordinary token
    (it pads the batch's left side, masked) generates exactly what the model makes without it."""
    import copy

    from rationalyst.lm.hf import HFModel

    params = SamplingParams(max_new_tokens=10)
    ((plain,),) = default_model.generate(["The days of the week are Monday,"], params)
    assert len(plain.token_ids) == 10 and plain.finish_reason == "length"
    tokenizer = copy.deepcopy(default_model.tokenizer)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(plain.token_ids[2])
    model = HFModel(default_model.model, tokenizer, batch_size=2)
    assert model.pad_id == plain.token_ids[2] and model.pad_id not in model.eos_ids
    ((padded,),) = model.generate(["The days of the week are Monday,"], params)
    assert (padded.token_ids, padded.text, padded.finish_reason) == (plain.token_ids, plain.text, "length")
