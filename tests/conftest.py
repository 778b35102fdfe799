"""Shared fixtures: the real embedded default model, loaded once per test session."""

from __future__ import annotations

import pytest

from rationalyst.lm import load_model
from rationalyst.lm.builtin import DEFAULT_LM


@pytest.fixture(scope="session")
def default_model():
    """SmolLM2-135M-Instruct through the hf backend (converted from GGUF once, then cached)."""
    return load_model(DEFAULT_LM, batch_size=4)
