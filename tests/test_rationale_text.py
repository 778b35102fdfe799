"""The text a rationale is written about: the same at training and inference, the same tokens scored
with and without the rationale, benchmark documents in the shape of a search trajectory."""

from __future__ import annotations

from pathlib import Path

import pytest

from rationalyst.data.benchmarks import load_benchmark
from rationalyst.data.rationale_text import (
    document_text,
    load_instruction,
    scoring_texts,
    solution_steps,
    train_demo_prompt,
)
from rationalyst.search import prompts
from rationalyst.data.extraction_text import split_boundaries
from rationalyst.lm.registry import base_model_folder
from rationalyst.stages.train import TrainConfig
from rationalyst.stages.training_data import ChatEncoder

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_folder(TrainConfig(input="x", output="y").base))


@pytest.fixture(scope="module")
def llama3_style_tokenizer():
    """A byte-level BPE with Llama-3's pre-tokenizer pattern, trained here on a few lines: like Llama-3's
    tokenizer it makes ".\\n" one token (punctuation takes the line breaks after it)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    pattern = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    lines = ["She sold 48 clips.\nThen she sold 24.\n", "The answer is 72.\n\nNext problem.\n", "It rains. We stay in.\n"]
    tok.train_from_iterator(lines * 50, trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    ))
    assert tok.encode("clips.\nThen").tokens[-2:] == [".Ċ", "Then"]  # ".\n" is one token: the merge we guard against
    return tok


def following_ids(encode, context: str, following: str) -> list[int]:
    """Token ids of ``following`` when ``context + following`` is tokenized as one text: every token
    that ends past the context (the scorer's boundary rule), read off the tokenizer's own offsets."""
    ids, offsets = encode(context + following)
    return [i for i, (_, end) in zip(ids, offsets) if end > len(context)]


def _encoders(smollm, llama3):
    def smollm_encode(text):
        out = smollm(text, add_special_tokens=False, return_offsets_mapping=True)
        return out["input_ids"], out["offset_mapping"]

    def llama3_encode(text):
        out = llama3.encode(text)
        return out.ids, out.offsets

    return {"smollm2": smollm_encode, "llama3-style": llama3_encode}


BOUNDARIES = [
    ("Natalia sold 48 clips in April.", "\nIn May she sold half as many."),  # a line break: ".\n" merges
    ("Natalia sold 48 clips in April.", "\n\nIn May she sold half as many."),  # a paragraph break
    ("Natalia sold 48 clips in April.", " In May she sold half as many."),  # a space
    ("Natalia sold 48 clips in April.", "  In May she sold half as many."),  # two spaces
    ("The answer is 72.", "\n24 + 48 = 72"),  # digits after the break
    ("Water boils at 100 degrees.", "\r\nOn mountains it boils sooner."),
]


@pytest.mark.parametrize("preceding,following", BOUNDARIES)
def test_following_tokens_are_identical_with_and_without_the_rationale(smollm_tokenizer, llama3_style_tokenizer, preceding, following):
    rationale = "Half of April's clips were sold in May."
    texts = scoring_texts(preceding, rationale, following)
    assert texts.without + texts.following == preceding + following  # the document, unchanged
    assert rationale in texts.with_rationale and texts.with_rationale.startswith(preceding)
    for name, encode in _encoders(smollm_tokenizer, llama3_style_tokenizer).items():
        without = following_ids(encode, texts.without, texts.following)
        with_rationale = following_ids(encode, texts.with_rationale, texts.following)
        assert without and without == with_rationale, name


def test_the_old_insertion_scored_different_tokens(llama3_style_tokenizer):
    """The previous definition (rationale + one space before the unchanged following text) fails the
    same check at a line break, which is what the test above guards against."""
    encode = _encoders(None, llama3_style_tokenizer)["llama3-style"]
    preceding, following = BOUNDARIES[0]
    old_with = f"{preceding} Half of April's clips were sold in May. "
    assert following_ids(encode, preceding, following) != following_ids(encode, old_with, following)


def gsm8k_item():
    return load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl")[0]


def test_benchmark_document_is_question_then_solution_steps():
    item = gsm8k_item()
    assert document_text(item) == (
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?\n"
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May.\n"
        "The answer is 72."
    )
    ecqa = load_benchmark("ecqa", FIXTURES / "ecqa.jsonl")[0]
    lines = document_text(ecqa).splitlines()
    assert lines[: 1 + len(ecqa.choices)] == [ecqa.question.strip()] + [
        f"{letter}) {choice}" for letter, choice in zip("ABCDE", ecqa.choices)
    ]
    assert lines[-1] == f"The answer is {ecqa.answer}."


@pytest.mark.parametrize("k", [0, 1, 2])
def test_rationalist_prompt_is_the_same_string_at_training_and_inference(smollm_tokenizer, k):
    """Training path: the benchmark document, cut at the extract stage's boundary after step k, through
    the train stage's encoder. Inference path: the search's trajectory after k steps, through the model's
    chat template. The two prompts are one string, trailing whitespace included."""
    item = gsm8k_item()
    steps = solution_steps(item)
    document = document_text(item)
    question_end = len(item.question.strip())
    step_ends = [p for p in split_boundaries(document) if p >= question_end]
    preceding = document[: step_ends[k]]
    assert preceding.endswith(steps[k - 1] if k else item.question.strip())
    instruction = load_instruction()
    training = ChatEncoder(smollm_tokenizer, instruction, max_length=1024).prompt_text(preceding)
    inference = smollm_tokenizer.apply_chat_template(
        prompts.rationalist_prompt(item, steps[:k], instruction), add_generation_prompt=True, tokenize=False
    )
    assert training == inference


def test_train_demos_are_seeded_worked_solutions_one_step_per_line():
    items = load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl")
    prompt = train_demo_prompt("arithmetic", items, count=2, seed=3, exclude={items[0].id})
    assert len(prompt.demos) == 2 and items[0].question not in [d.question for d in prompt.demos]
    assert all(d.steps[-1].startswith("The answer is ") and "<<" not in "".join(d.steps) for d in prompt.demos)
    again = train_demo_prompt("arithmetic", items, count=2, seed=3, exclude={items[0].id})
    assert again == prompt
    with pytest.raises(Exception, match="needs 9 worked solutions"):
        train_demo_prompt("arithmetic", items, count=9, seed=0)


class _NoTemplate:
    def render(self, messages):
        raise NotImplementedError


def test_explicit_agent_keeps_earlier_rationales_in_view():
    item = gsm8k_item()
    steps = solution_steps(item)[:2]
    kept = prompts.agent_prompt(_NoTemplate(), item, steps, "Add both months.", ["Half of 48 is 24.", None])
    tail = kept[kept.rindex(item.question) :]
    assert tail.endswith(f"Half of 48 is 24.\n{steps[0]}\n{steps[1]}\nAdd both months.\n")
    current_only = prompts.agent_prompt(_NoTemplate(), item, steps, "Add both months.")
    assert "Half of 48 is 24." not in current_only and current_only.endswith(f"{steps[1]}\nAdd both months.\n")
