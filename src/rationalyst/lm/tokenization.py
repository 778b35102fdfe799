"""The `hf` backend's prompt rules for engines that take token ids: render, encode, split, spans.

The `vllm` backend (whose engine is fed token ids), the `openai` backend with a local tokenizer, and
the server (which reports tokens and character offsets) all need exactly the prompt rules of the `hf`
backend, so that every backend scores the same token sequences:

* chat messages go through the tokenizer's chat template (with the generation prompt) and get no
  extra special tokens; raw text gets the tokenizer's usual special tokens (a BOS where it adds one);
* a (context, continuation) pair is tokenized jointly and split at the context's end (`boundary`);
  an empty context is scored after BOS, or after EOS where the tokenizer has no BOS (Qwen's), as
  lm-evaluation-harness does.

All of it needs a Hugging Face *fast* tokenizer, for character offsets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rationalyst.errors import ModelNotFoundError, PromptTooLongError, RationalystError
from rationalyst.lm.base import Prompt
from rationalyst.lm.boundary import SplitSequence, count_context_tokens


class HFTextCodec:
    """Prompt rendering and tokenization with a Hugging Face fast tokenizer, as the `hf` backend does."""

    def __init__(self, tokenizer: Any, *, name: str = "", max_length: int | None = None) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise RationalystError(
                f"{name or 'model'}: a fast (Rust) tokenizer is needed for character offsets; "
                "use a tokenizer folder with a tokenizer.json"
            )
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, path: str | Path, *, name: str = "", max_length: int | None = None) -> HFTextCodec:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"cannot load tokenizer {str(path)!r}: {exc}") from None
        return cls(tokenizer, name=name, max_length=max_length)

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if not self.tokenizer.chat_template:
            raise RationalystError(f"{self.name}: the tokenizer has no chat template; pass plain text")
        return self.tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)

    def _start(self) -> list[int]:
        """The token an empty context stands for: BOS, else EOS (a document boundary either way)."""
        for token in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id):
            if token is not None:
                return [int(token)]
        raise RationalystError(f"{self.name}: empty context and the tokenizer has neither a BOS nor an EOS token")

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt, as generation sees it (never empty: BOS, else EOS, for an empty text)."""
        ids = self.tokenizer(self.render(prompt), add_special_tokens=isinstance(prompt, str))["input_ids"]
        return list(ids) or self._start()

    def split(self, context: Prompt, continuation: str) -> SplitSequence:
        """Tokenize context + continuation jointly and split at the context's end (see `boundary`)."""
        text = self.render(context)
        ids, spans = self.spans(text + continuation, add_special_tokens=isinstance(context, str))
        n_context = count_context_tokens([end for _, end in spans], len(text))
        if n_context == 0:
            ids, n_context = self._start() + ids, 1
        if self.max_length is not None and len(ids) > self.max_length:
            raise PromptTooLongError(
                f"{self.name}: context + continuation is {len(ids)} tokens, "
                f"over the model's limit of {self.max_length}"
            )
        return SplitSequence(ids, n_context)

    def spans(self, text: str, *, add_special_tokens: bool = True) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's (start, end) character span; added specials are (0, 0)."""
        enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
        return list(enc["input_ids"]), [(int(s), int(e)) for s, e in enc["offset_mapping"]]

    def token_strings(self, ids: list[int]) -> list[str]:
        """Tokens as the vocabulary spells them (e.g. ``Ġ42``), for debugging."""
        return list(self.tokenizer.convert_ids_to_tokens(list(ids)))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def eos_ids(self, extra: Any = None) -> set[int]:
        """End-of-sequence ids: the tokenizer's, plus ``extra`` (an id or list, e.g. a generation config's)."""
        ids = set()
        for value in (self.tokenizer.eos_token_id, extra):
            if isinstance(value, int):
                ids.add(value)
            elif value:
                ids.update(int(v) for v in value)
        return ids
