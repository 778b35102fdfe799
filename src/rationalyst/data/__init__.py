"""Data readers: streaming corpora and benchmark questions (see `rationalyst.data.corpus`)."""

from rationalyst.data.corpus import (
    SKIP_BAD_CHOICES,
    SKIP_BAD_ID,
    SKIP_EMPTY_TEXT,
    SKIP_INVALID_JSON,
    SKIP_INVALID_UNICODE,
    SKIP_INVALID_UTF8,
    SKIP_MISSING_TEXT,
    SKIP_NOT_OBJECT,
    SKIP_READ_ERROR,
    SKIP_TEXT_NOT_STRING,
    SKIP_UNSUPPORTED_FILE,
    Document,
    SkipCallback,
    parse_hf_spec,
    read_corpus,
    read_questions,
)

__all__ = [
    "SKIP_BAD_CHOICES",
    "SKIP_BAD_ID",
    "SKIP_EMPTY_TEXT",
    "SKIP_INVALID_JSON",
    "SKIP_INVALID_UNICODE",
    "SKIP_INVALID_UTF8",
    "SKIP_MISSING_TEXT",
    "SKIP_NOT_OBJECT",
    "SKIP_READ_ERROR",
    "SKIP_TEXT_NOT_STRING",
    "SKIP_UNSUPPORTED_FILE",
    "Document",
    "SkipCallback",
    "parse_hf_spec",
    "read_corpus",
    "read_questions",
]
