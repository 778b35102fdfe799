"""Discriminative process reward models (PRMs): the probability that each step of a solution is good.

A PRM reads the question and the steps, each followed by a separator, and gives one probability per
step, read at the step's *tag* token (by default the separator's last token). Two conventions cover
the open PRMs in use:

* ``token-classification`` — a token-classification head with two labels, P(good) = softmax(logits)[1]
  at the tag. This is what TRL's ``PRMTrainer`` trains (``AutoModelForTokenClassification``; each step
  tokenized alone, the separator's tokens appended, the label on their last token; a BOS token before
  the prompt when the tokenizer has one; default separator ``"\\n"``: trl/experimental/prm/prm_trainer.py,
  ``tokenize_row``) and what Qwen2.5-Math-PRM computes (separator ``<extra_0>``, the question in a chat
  template with the system prompt "Please reason step by step, and put your final answer within
  \\boxed{}."; its model card). Use ``prompt: chat`` for the latter.
* ``label-tokens`` — a causal LM whose next-token distribution at the tag is read over two label
  tokens, P(good) = softmax(logit(good), logit(bad))[0]: Math-Shepherd (Wang et al. 2024; its model
  card: step tag ``ки`` after each step, steps on separate lines, labels ``+`` and ``-``), i.e.
  ``separator: " ки\\n"``, ``tag: "ки"``, ``good: "+"``, ``bad: "-"``.

Inputs are built token by token in the trainer's way (prompt, then each step's tokens + the separator's),
so a PRM trained here by TRL is read exactly where it was trained. Rows are batched with right padding;
the model is causal, so padding after a row never changes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rationalyst.config import StrictModel
from rationalyst.errors import ModelNotFoundError, RationalystError
from rationalyst.lm.model_location import not_found_hint, require_model_location
from rationalyst.lm.precision import DtypeName

QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


class PrmConfig(StrictModel):
    """A process reward model and how to read it (see the module docstring for the two conventions)."""

    spec: str = Field(description="hf:<hub id or folder> of the PRM.")
    convention: Literal["token-classification", "label-tokens"] = Field(
        "token-classification",
        description="token-classification (TRL PRMTrainer, Qwen2.5-Math-PRM) or label-tokens (Math-Shepherd).",
    )
    separator: str = Field("\n", description="Text appended after each step (TRL: '\\n'; Qwen2.5-Math-PRM: '<extra_0>'; Math-Shepherd: ' ки\\n').")
    tag: str | None = Field(None, description="Text whose last token carries the step's label, within the separator (default: the separator's last token; Math-Shepherd: ' ки').")
    good: str = Field("+", description="label-tokens: the token of a good step.")
    bad: str = Field("-", description="label-tokens: the token of a bad step.")
    prompt: Literal["plain", "chat"] = Field("plain", description="plain: the question and a newline; chat: the tokenizer's chat template (Qwen2.5-Math-PRM).")
    system: str = Field(QWEN_PRM_SYSTEM, description="prompt: chat: the system message.")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, ...")
    dtype: DtypeName = Field("auto", description="Weights dtype (see ModelConfig.dtype).")
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass.")

    execution_fields = frozenset({"device", "batch_size"})

    @model_validator(mode="before")
    @classmethod
    def _from_spec_string(cls, value: Any) -> Any:
        return {"spec": value} if isinstance(value, str) else value

    @field_validator("spec")
    @classmethod
    def _hf_only(cls, spec: str) -> str:
        if not spec.startswith("hf:"):
            raise ValueError(f"a PRM is loaded by transformers: use hf:<hub id or folder>, not {spec!r}")
        return spec


@dataclass(frozen=True)
class RewardRequest:
    """The steps of one solution to rate, after ``question`` (the problem as the PRM should read it)."""

    question: str
    steps: Sequence[str]


class ProcessRewardModel:
    """A transformers PRM: `step_rewards` gives P(good) for every step of every request."""

    def __init__(self, model: Any, tokenizer: Any, config: PrmConfig) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.name = config.spec
        self.device = next(model.parameters()).device
        self.separator_ids = self._encode(config.separator)
        if not self.separator_ids:
            raise RationalystError(f"PRM {config.spec}: the separator {config.separator!r} encodes to no tokens")
        # The tag's last token, as Math-Shepherd's reader takes it (``tokenizer.encode("ки")[-1]``).
        self.tag_id = self.separator_ids[-1] if config.tag is None else (self._encode(config.tag) or [None])[-1]
        if self.tag_id not in self.separator_ids:
            raise RationalystError(f"PRM {config.spec}: the tag {config.tag!r} is not a token of the separator {config.separator!r}")
        if config.convention == "label-tokens":
            self.label_ids = [self._single_token(config.good, "good"), self._single_token(config.bad, "bad")]
        elif getattr(model.config, "num_labels", 0) != 2:
            raise RationalystError(f"PRM {config.spec}: a token-classification PRM needs 2 labels, the model has {model.config.num_labels}")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        #: Tokens run through the model (padding excluded), in all and per request of the last call.
        self.forwarded_tokens = 0
        self.forwarded_per_request: list[int] = []

    @classmethod
    def load(cls, config: PrmConfig) -> ProcessRewardModel:
        from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

        from rationalyst.lm.hf import resolve_device
        from rationalyst.lm.precision import resolve_dtype

        path = config.spec.removeprefix("hf:")
        require_model_location(path, "PRM")
        device = resolve_device(config.device)
        auto = AutoModelForTokenClassification if config.convention == "token-classification" else AutoModelForCausalLM
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = auto.from_pretrained(path, dtype=resolve_dtype(config.dtype, device))
        except OSError as exc:
            raise ModelNotFoundError(f"cannot load PRM {path!r}: {exc}{not_found_hint(path)}") from None
        return cls(model.to(device), tokenizer, config)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _single_token(self, text: str, field: str) -> int:
        ids = self._encode(text)
        if len(ids) != 1:
            raise RationalystError(f"PRM {self.name}: {field} {text!r} must be one token of its tokenizer, it is {len(ids)}")
        return ids[0]

    def _prompt_ids(self, question: str) -> list[int]:
        if self.config.prompt == "chat":
            messages = [{"role": "system", "content": self.config.system}, {"role": "user", "content": question}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self._encode(text)
        ids = self._encode(question + "\n")
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + ids

    def encode(self, request: RewardRequest) -> tuple[list[int], list[int]]:
        """The input ids of a request and the position of each step's tag."""
        ids = self._prompt_ids(request.question)
        positions = []
        for step in request.steps:
            piece = self._encode(step) + self.separator_ids
            last_tag = max(i for i, t in enumerate(piece) if t == self.tag_id)
            positions.append(len(ids) + last_tag)
            ids += piece
        return ids, positions

    def step_rewards(self, requests: Sequence[RewardRequest]) -> list[list[float]]:
        """P(good) of each step of each request (an empty request gives an empty list)."""
        import torch

        encoded = [self.encode(r) for r in requests]
        self.forwarded_per_request = [len(ids) if positions else 0 for ids, positions in encoded]
        out: list[list[float]] = [[] for _ in requests]
        order = sorted((i for i, (_, p) in enumerate(encoded) if p), key=lambda i: -len(encoded[i][0]))
        for start in range(0, len(order), self.config.batch_size):
            chunk = order[start : start + self.config.batch_size]
            width = max(len(encoded[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                seq = encoded[i][0]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
            for row, i in enumerate(chunk):
                at = logits[row, encoded[i][1]]
                if self.config.convention == "label-tokens":
                    probs = at[:, self.label_ids].softmax(-1)[:, 0]
                else:
                    probs = at[:, :2].softmax(-1)[:, 1]
                out[i] = [float(p) for p in probs.cpu()]
            self.forwarded_tokens += int(mask.sum())
        return out
