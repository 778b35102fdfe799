"""Training data of the rationalist (Stage 4): tokenization, label masking and collation.

A kept record (``preceding`` text, ``rationale``) becomes one chat in the base model's own template: the
user turn is the rationalist's prompt (`rationale_text.rationalist_messages`, the same text Stage 5
prompts with) and the assistant turn is the rationale. Labels cover the rationale's tokens and the
end-of-turn token(s) the template writes after an assistant message; every other label is
`IGNORE_INDEX`. A sequence over ``max_length`` loses the *start* of its preceding text (whole tokens),
so the rationale always survives whole; a rationale that cannot fit even with no context is dropped.

Document text and rationales are text: where they spell a control token (``<|im_end|>`` in a chat log,
``<|endoftext|>`` in code), it is tokenized as the characters it is, never as the token itself (which
would put an end of turn in the middle of the rationalist's prompt).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rationalyst.data.rationale_text import rationalist_messages
from rationalyst.errors import RationalystError

IGNORE_INDEX = -100


@dataclass
class Example:
    """One tokenized training sequence."""

    input_ids: list[int]
    labels: list[int]
    preceding: str  # the context actually used (after left truncation)
    rationale: str
    truncated_chars: int = 0


class ChatEncoder:
    """Turns (preceding, rationale) into token ids with labels on the rationale + end of turn only."""

    def __init__(self, tokenizer: Any, instruction: str | None, max_length: int) -> None:
        if not tokenizer.chat_template:
            raise RationalystError("the base model's tokenizer has no chat template")
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.max_length = max_length
        self.end_of_turn = self._end_of_turn_text()
        self.end_ids = tokenizer(self.end_of_turn, add_special_tokens=False)["input_ids"]
        #: How the control tokens are spelled (``<|im_end|>``): text that holds one is tokenized apart.
        self.special_texts = tuple(t.content for t in tokenizer.added_tokens_decoder.values() if t.special and t.content)

    def _end_of_turn_text(self) -> str:
        """What the template writes right after an assistant message, up to the end-of-turn marker
        (trailing whitespace after it is not trained: generation stops at the marker)."""
        probe = "RATIONALYST_PROBE"
        messages = rationalist_messages("x", self.instruction)
        prompt = self.prompt_text("x")
        full = self.tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": probe}], tokenize=False
        )
        if not full.startswith(prompt) or probe not in full:
            raise RationalystError("the chat template does not render the assistant turn after its generation prompt")
        end = full[full.index(probe) + len(probe) :].rstrip()
        if not end:
            raise RationalystError("the chat template writes no end-of-turn marker after an assistant message")
        return end

    def prompt_text(self, preceding: str) -> str:
        return self.tokenizer.apply_chat_template(
            rationalist_messages(preceding, self.instruction), add_generation_prompt=True, tokenize=False
        )

    def _template_ids(self, text: str) -> list[int]:
        # A chat template writes its own BOS, so no special tokens are added.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _text_ids(self, text: str, **kwargs: Any) -> Any:
        """``text`` as plain text: a control token's spelling in it stays characters."""
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True, **kwargs)

    def prompt_ids(self, preceding: str) -> list[int]:
        rendered = self.prompt_text(preceding)
        document = preceding.strip()  # as any template writes it (some trim a message)
        if not any(special in document for special in self.special_texts):
            return self._template_ids(rendered)  # the usual case: one pass, the template's tokens as they are
        start = rendered.rfind(document)
        if start < 0:
            raise RationalystError("the chat template rewrites the rationalist's text: cannot tell it from the template")
        end = start + len(document)
        return (
            self._template_ids(rendered[:start]) + self._text_ids(document)["input_ids"] + self._template_ids(rendered[end:])
        )

    def target_ids(self, rationale: str) -> list[int]:
        return self._text_ids(rationale.strip())["input_ids"] + list(self.end_ids)

    def encode(self, preceding: str, rationale: str) -> Example | None:
        """The example, with the preceding text cut on the left to fit; None if the rationale
        cannot fit even with an empty context."""
        target = self.target_ids(rationale)
        budget = self.max_length - len(target)
        if len(self.prompt_ids("")) > budget:
            return None
        kept = preceding
        prompt = self.prompt_ids(kept)
        if len(prompt) > budget:
            offsets = self._text_ids(preceding, return_offsets_mapping=True)["offset_mapping"]
            starts = [start for start, _ in offsets]
            overflow = len(prompt) - budget
            # Drop whole tokens from the start; re-rendering can merge differently at the cut, so
            # drop more until the rendered prompt fits.
            while True:
                cut = min(overflow, len(starts))
                kept = preceding[starts[cut] :] if cut < len(starts) else ""
                prompt = self.prompt_ids(kept)
                if len(prompt) <= budget or not kept:
                    break
                overflow += len(prompt) - budget
        if len(prompt) > budget:
            return None
        return Example(
            input_ids=prompt + target,
            labels=[IGNORE_INDEX] * len(prompt) + target,
            preceding=kept,
            rationale=rationale.strip(),
            truncated_chars=len(preceding) - len(kept),
        )


def encode_records(encoder: ChatEncoder, records: Sequence[dict]) -> tuple[list[Example], dict[str, int]]:
    examples, counts = [], {"too_long": 0, "truncated": 0}
    for record in records:
        example = encoder.encode(record["preceding"], record["rationale"])
        if example is None:
            counts["too_long"] += 1
            continue
        counts["truncated"] += example.truncated_chars > 0
        examples.append(example)
    return examples, counts


class ExampleDataset:
    """A map-style dataset of tokenized examples for the Trainer."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.examples[i].input_ids, "labels": self.examples[i].labels}


@dataclass
class PadCollator:
    """Right-pads a batch; padding gets label -100 and attention 0."""

    pad_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
