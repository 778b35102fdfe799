"""The hook that turns the rationale-guided search into a chat model for `rationalyst serve --guided`.

``build_guided(config, models)`` returns ``guided(messages, params) -> str`` (see `GuidedFn`): the
step search (`rationalyst.search.chat.make_guided`) configured by the `SolveConfig` recipe given with
``--guided-config`` (None: its defaults), reusing the served ``models`` where the recipe names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rationalyst.lm.base import LanguageModel
from rationalyst.serve.engine import GuidedFn


def build_guided(config: Path | None, models: Mapping[str, LanguageModel]) -> GuidedFn:
    """The guided-search chat callable."""
    from rationalyst.search.chat import make_guided

    return make_guided(config, models)
