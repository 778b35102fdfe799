"""Request and response bodies of the OpenAI-compatible API, as pydantic models.

Requests accept the fields OpenAI clients and evaluation harnesses send; fields this server does not
act on (penalties, ``user``, ...) are ignored rather than refused, so any client works, but values it
cannot honour (streaming, ``best_of`` > ``n``, a logit bias) are refused with a 400 that says so, as
are sampling values out of range whatever the backend: ``temperature`` outside [0, 2] (vLLM's and
OpenAI's range), ``top_p`` outside (0, 1], ``n`` < 1 (``n`` over the server's limit is refused by the
engine layer), non-finite numbers, and booleans where a number belongs. ``null`` for a field that has a
default means that default, as in OpenAI's API (clients send ``"temperature": null`` for "not set").
``return_tokens_as_token_ids`` is vLLM's extension: tokens are then spelled ``token_id:N``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TokenIds = list[Annotated[int, Field(ge=0, lt=2**31)]]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _null_is_the_default(cls, data):
        """``null`` for a field with a default (``n``, ``temperature``, ``echo``, ...) is that default."""
        if not isinstance(data, dict):
            return data
        defaulted = {name for name, field in cls.model_fields.items() if not field.is_required()}
        return {key: value for key, value in data.items() if value is not None or key not in defaulted}

    model: str = Field(description="A name from /v1/models.")
    n: int = Field(1, ge=1, description="Completions per prompt.")
    temperature: float = Field(1.0, ge=0, le=2, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: Union[str, list[str], None] = Field(None, description="Up to 4 stop strings.")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Sampling seed (a request's prompt i uses seed + i * n).")
    stream: bool = False
    logit_bias: dict[str, float] | None = None
    return_tokens_as_token_ids: bool = False

    @field_validator("n", "temperature", "top_p", mode="before")
    @classmethod
    def _plain_numbers(cls, value, info):
        # JSON's true/false would pass as 1/0, and Python's JSON reader accepts NaN and Infinity, which
        # fail the range checks with a misleading message ("should be less than or equal to 2").
        if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"must be a finite number, got {value!r}")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop strings")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value):
        if value:
            raise ValueError("streaming is not supported; send stream=false")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, value):
        if value:
            raise ValueError("logit_bias is not supported")
        return value


class CompletionRequest(_Request):
    """``POST /v1/completions``: a prompt (text, token ids, or a batch of either)."""

    prompt: Union[str, list[str], TokenIds, list[TokenIds]]
    max_tokens: int = Field(16, ge=0, description="0 with echo=true: score the prompt only.")
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20, description="Per-token log-probs (the chosen token's).")
    best_of: int | None = Field(None, ge=1)

    @field_validator("prompt", mode="wrap")
    @classmethod
    def _prompt_forms(cls, value, handler):
        try:
            return handler(value)
        except ValueError:
            raise ValueError(
                "expected a string, a list of strings, a list of token ids (0 <= id < 2**31) or a list of those"
            ) from None

    def prompts(self) -> list[str | TokenIds]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[list-item]
        return list(p)  # type: ignore[arg-type]


class ChatMessage(BaseModel):
    """A message; ``developer`` is OpenAI's newer name for ``system`` (and is given to the chat template
    as such), ``tool`` a tool's result. Only an assistant's content may be null (a tool call's)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[dict[str, Any]], None] = None

    @model_validator(mode="after")
    def _content_unless_assistant(self):
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        return self

    @field_validator("content")
    @classmethod
    def _text_parts(cls, value):
        if isinstance(value, list):
            for part in value:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError("only text content parts are supported")
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part["text"] for part in self.content or [])


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


# ----------------------------------------------------------------------------- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LegacyLogprobs(BaseModel):
    """OpenAI's legacy completions log-probs: one entry per token; the first prompt token's is null."""

    tokens: list[str]
    token_logprobs: list[float | None]
    text_offset: list[int]
    top_logprobs: list[dict[str, float] | None]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: LegacyLogprobs | None = None
    finish_reason: Literal["stop", "length"]


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rationalyst"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
