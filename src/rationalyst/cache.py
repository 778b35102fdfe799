"""Where rationalyst keeps files it can rebuild (converted models, joined model parts).

``$RATIONALYST_CACHE`` if set, else ``$XDG_CACHE_HOME/rationalyst``, else ``~/.cache/rationalyst``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("RATIONALYST_CACHE")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rationalyst"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
