"""The model contract every backend implements, and the plain result types it returns.

Every stage of the method needs only three things from a model: sample text (`generate`), the
log-probability of given text after a context (`score`), and sentence vectors (`embed`). Keeping the
contract this narrow is what lets `hf`, `llamacpp`, `vllm` and `openai` backends stand in for each
other, and lets the stages stay ignorant of which engine runs underneath.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

Message = dict[str, str]
#: A prompt is raw text, or chat messages that the model's own chat template turns into text.
Prompt = Union[str, Sequence[Message]]
FinishReason = Literal["stop", "length"]


class SamplingParams(BaseModel):
    """How to sample. ``temperature == 0`` means greedy decoding (``top_p`` and ``seed`` then unused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(1, ge=1, description="Completions per prompt.")
    temperature: float = Field(0.0, ge=0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(128, ge=1, description="Most tokens generated per completion.")
    stop: tuple[str, ...] = Field((), description="Generation stops at the first of these strings.")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Seed for reproducible sampling (what every engine takes).")
    logprobs: bool = Field(
        True,
        description="Whether the caller reads `Completion.logprobs`. False lets a backend that pays extra for them "
        "leave them empty (llamacpp: one batched re-evaluation of the sampled tokens, about a quarter of a search "
        "step's time with the 1.5B agent, benchmarks/llamacpp_sampling.py); the tokens sampled are the same either way.",
    )

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: tuple[str, ...]) -> tuple[str, ...]:
        """An empty stop string is found at the start of any text, so it would empty every completion
        (llamacpp skips it, the serve protocol refuses it): refused here, with the protocol's words."""
        if any(not s for s in stop):
            raise ValueError("stop strings must not be empty")
        return stop

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    """One sampled continuation.

    ``text`` excludes the end-of-sequence token and is cut before the first stop string;
    ``token_ids`` and ``logprobs`` cover every generated token up to (and including) the token that
    completed the stop string, without the end-of-sequence token. ``logprobs`` are the model's own
    log-probabilities (log-softmax of the raw logits), not those of the temperature-scaled sampler;
    they may be empty where the request said it would not read them (``SamplingParams.logprobs``).
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason


@dataclass(frozen=True)
class ContinuationScore:
    """Per-token log-probabilities of one continuation given its context.

    ``tokens`` are the token strings as the tokenizer spells them, for debugging prompts.
    """

    token_ids: list[int]
    logprobs: list[float]
    tokens: list[str] = field(default_factory=list)

    @property
    def sum(self) -> float:
        return _exact_sum(self.logprobs)

    @property
    def mean(self) -> float:
        return self.sum / len(self.logprobs) if self.logprobs else 0.0

    def discounted(self, gamma: float) -> float:
        """sum_i gamma**i * logprob_i: the METHOD's Stage 3 score of a following segment."""
        return _exact_sum([gamma**i * lp for i, lp in enumerate(self.logprobs)])


def _exact_sum(values: Sequence[float]) -> float:
    """``math.fsum`` (exact, so a cached and an uncached pass agree to the last bit), but a number where
    it raises: NaN for +inf beside -inf and inf past the float range, as IEEE addition gives, so that a
    scorer overflowing (float16) yields a score its callers can skip as not finite instead of a crash."""
    try:
        return float(math.fsum(values))
    except (ValueError, OverflowError):
        return float(sum(values))


@dataclass(frozen=True)
class ScoreRequest:
    """Score each continuation after the same context (raw text or chat messages)."""

    context: Prompt
    continuations: Sequence[str]


@dataclass(frozen=True)
class DocumentScoreRequest:
    """Score (context, continuation) pairs whose joined texts mostly repeat one document's text.

    Stage 3's shape: the document with and without each inserted rationale. Backends that can reuse
    a cache run the document once and each pair only past the prefix it shares with the document.
    """

    document: str
    pairs: Sequence[tuple[str, str]]


class LanguageModel(abc.ABC):
    """A causal language model that can sample and score text."""

    #: The spec string this model was loaded from, e.g. ``builtin:smollm2-135m``.
    name: str = ""

    @abc.abstractmethod
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Sample ``params.n`` completions for each prompt; one list of completions per prompt."""

    @abc.abstractmethod
    def score_many(self, requests: Sequence[ScoreRequest]) -> list[list[ContinuationScore]]:
        """Score every request's continuations; one list of scores per request, in order."""

    def generate_seeded(
        self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int | None]
    ) -> list[list[Completion]]:
        """Like `generate`, but prompt ``i`` is sampled as ``generate([prompts[i]], params)`` with
        ``params.seed = seeds[i]`` would sample it alone: its samples do not depend on the other rows.

        This default makes one call when the rows cannot differ by seed (greedy, or no seeds) and one
        call per row otherwise; a backend that can seed each row of one batch overrides it (hf).
        """
        if not prompts:
            return []
        if params.greedy or all(s is None for s in seeds):
            return self.generate(prompts, params.model_copy(update={"seed": None}))
        return [self.generate([p], params.model_copy(update={"seed": s}))[0] for p, s in zip(prompts, seeds)]

    def generate_mixed(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Completion]]:
        """Prompt *i* sampled by its own ``params[i]`` (its seed included), as ``generate_seeded`` would
        sample it: the answer to calls of several kinds at once (the batched search's rationales and
        candidates). This default makes one ``generate_seeded`` call per distinct params (seed aside), in
        order of first appearance; a backend that decodes rows of different params together overrides
        it (hf)."""
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        kinds: dict[SamplingParams, list[int]] = {}
        for i, p in enumerate(params):
            kinds.setdefault(p.model_copy(update={"seed": None}), []).append(i)
        out: list[list[Completion]] = [[] for _ in prompts]
        for kind, rows in kinds.items():
            answers = self.generate_seeded([prompts[i] for i in rows], kind, [params[i].seed for i in rows])
            for i, answer in zip(rows, answers):
                out[i] = answer
        return out

    def score(self, context: Prompt, continuations: Sequence[str]) -> list[ContinuationScore]:
        """Per-token log-probs of each continuation given the context."""
        return self.score_many([ScoreRequest(context, list(continuations))])[0]

    def score_in_documents(self, requests: Sequence[DocumentScoreRequest]) -> list[list[ContinuationScore]]:
        """Per request, the scores of its pairs; equal to scoring each pair on its own."""
        flat = self.score_many([ScoreRequest(context, [following]) for r in requests for context, following in r.pairs])
        out, i = [], 0
        for r in requests:
            out.append([scores[0] for scores in flat[i : i + len(r.pairs)]])
            i += len(r.pairs)
        return out

    def batch_dependence(self) -> str | None:
        """Why this engine's numbers for a prompt can depend on the other rows of its batch (then a
        problem's trace can change with ``batch_problems``), or None where they cannot: per-request
        seeds make the samples a row's own, but not the rounding of a batched matmul."""
        return None

    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees for a prompt (chat messages through its chat template)."""
        if isinstance(prompt, str):
            return prompt
        raise NotImplementedError(f"{type(self).__name__} does not support chat messages")


class Embedder(abc.ABC):
    """A sentence embedder: text in, one L2-normalised vector out per text."""

    name: str = ""

    @abc.abstractmethod
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Return an array of shape (len(texts), dim), each row of unit length."""
