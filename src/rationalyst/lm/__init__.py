"""The model layer: one narrow contract (`base`), several backends, chosen by a spec string (`registry`)."""

from rationalyst.lm.base import (
    Completion,
    ContinuationScore,
    DocumentScoreRequest,
    Embedder,
    LanguageModel,
    Prompt,
    SamplingParams,
    ScoreRequest,
)
from rationalyst.lm.registry import load_embedder, load_model

__all__ = [
    "Completion",
    "ContinuationScore",
    "DocumentScoreRequest",
    "Embedder",
    "LanguageModel",
    "Prompt",
    "SamplingParams",
    "ScoreRequest",
    "load_embedder",
    "load_model",
]
