"""The server's engine in process (`serve.engine`), with stand-in models that carry the default
model's real tokenizer: token texts and offsets, seeds, token-id prompts and echo, against references
computed here independently of the engine."""

from __future__ import annotations

import pytest

from rationalyst.lm.base import Completion, LanguageModel
from rationalyst.lm.builtin import builtin_path
from rationalyst.lm.gguf_cache import converted_gguf
from rationalyst.lm.tokenization import HFTextCodec
from rationalyst.serve.engine import ServedModel


@pytest.fixture(scope="module")
def codec() -> HFTextCodec:
    """SmolLM2's byte-level BPE tokenizer (no model weights)."""
    return HFTextCodec.from_pretrained(converted_gguf(builtin_path("smollm2-135m")), name="smollm2")


class _Tokenizing(LanguageModel):
    """A model of which only the tokenizer is used."""

    name = "tokenizing"

    def __init__(self, codec: HFTextCodec) -> None:
        self.codec = codec

    def generate(self, prompts, params):
        raise NotImplementedError

    def score_many(self, requests):
        raise NotImplementedError


def _byte_level_texts(tokenizer, ids: list[int]) -> list[str]:
    """Reference token texts from the tokens' bytes: each token's text is the characters its bytes
    complete. Byte-level BPE spells byte b as chr(b) where that is printable Latin-1, else as
    chr(256 + k) for the k-th other byte (GPT-2's map)."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    others = [b for b in range(256) if b not in printable]
    byte_of = {chr(b): b for b in printable} | {chr(256 + k): b for k, b in enumerate(others)}
    texts, data, given = [], b"", ""
    for token in tokenizer.convert_ids_to_tokens(ids):
        data += bytes(byte_of[char] for char in token)
        complete = data.decode("utf-8", errors="ignore")  # drops only a character still cut at the end
        texts.append(complete[len(given) :])
        given = complete
    return texts


def test_generated_token_texts_hold_a_multibyte_character_until_its_last_byte(codec):
    """A character split over byte tokens is the text of the token that completes it; the tokens before
    give only the characters they complete. The texts join to the completion and the offsets are where each text starts."""
    served = ServedModel("m", _Tokenizing(codec))

    def run_of(text: str, start: int = 0):
        ids = codec.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids, served.generated(Completion(text, ids, [-0.5] * len(ids), "stop"), start)

    ids, run = run_of(" naïve café ☺ ok", start=4)
    # By hand: ☺ (3 UTF-8 bytes) is split over three tokens, the first also carrying the space.
    assert codec.tokenizer.convert_ids_to_tokens(ids)[3:6] == ["Ġâ", "ĺ", "º"]
    assert run.pieces == [" na", "ïve", " café", " ", "", "☺", " ok"]
    assert run.offsets == [4, 7, 10, 15, 16, 16, 17]
    assert run.ids == ids and run.logprobs == [-0.5] * 7
    for text in ["日本語のテキスト", " 😀 done", "naïve 😀😀 ☺"]:
        ids, run = run_of(text)
        assert run.pieces == _byte_level_texts(codec.tokenizer, ids)
        assert "".join(run.pieces) == text
        assert run.offsets == [len("".join(run.pieces[:i])) for i in range(len(ids))]
    # A character the last token leaves cut stays visible as U+FFFD rather than vanishing.
    ids = codec.tokenizer("☺", add_special_tokens=False)["input_ids"][:-1]
    assert served.generated(Completion("", ids, [0.0] * len(ids), "length"), 0).pieces == ["", "\ufffd"]
