"""The hook that turns the rationale-guided search into a chat model for `rationalyst serve --guided`.

The search package provides the callable: ``rationalyst.search.make_guided(config, models)`` returns
``guided(messages, params) -> str`` (see `GuidedFn`), where ``config`` is the search recipe path given
with ``--guided-config`` (or None for its defaults) and ``models`` the served models by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rationalyst.errors import RationalystError
from rationalyst.lm.base import LanguageModel
from rationalyst.serve.engine import GuidedFn


def build_guided(config: Path | None, models: Mapping[str, LanguageModel]) -> GuidedFn:
    """The guided-search chat callable, from the search package."""
    try:
        from rationalyst import search
    except ImportError:
        raise RationalystError("guided search is not available yet (the rationalyst.search package is missing)") from None
    make = getattr(search, "make_guided", None)
    if make is None:
        raise RationalystError("guided search is not available yet (rationalyst.search has no make_guided)")
    return make(config, models)
