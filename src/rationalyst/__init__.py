"""rationalyst: process supervision for LLM reasoning, mined from unlabeled text (RATIONALYST)."""

__version__ = "0.1.0"
