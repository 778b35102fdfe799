"""Say plainly when a model meant as a local folder is not there.

transformers and sentence-transformers read a target that is not an existing folder as a hub id, so a
mistyped or not-yet-written folder (``hf:runs/x/train/merged`` before training ran) fails with a message
about repo-id syntax or the network. A hub id is ``name`` or ``namespace/name``: a target with more parts,
or one spelled as a path (``./``, ``../``, ``/``, ``~``), can only be a folder, so it is checked here first.
"""

from __future__ import annotations

import re
from pathlib import Path

from rationalyst.errors import ModelNotFoundError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def could_be_hub_id(target: str) -> bool:
    """Whether ``target`` has the shape of a Hugging Face hub id (at most one slash, no path syntax)."""
    return _HUB_ID.fullmatch(target) is not None and ".." not in target


def require_model_location(target: str, what: str = "model", *, config_file: str | None = "config.json") -> None:
    """Raise a clear ModelNotFoundError when ``target`` can only be a local folder and is not one, or is a
    folder without ``config_file`` (an empty or half-written folder otherwise fails deep in the tokenizer)."""
    path = Path(target).expanduser()
    if path.is_dir():
        if config_file and not (path / config_file).is_file():
            raise ModelNotFoundError(f"{what} folder {target} has no {config_file}: not a saved transformers model")
        return
    if path.exists():
        raise ModelNotFoundError(f"{what} {target!r} is a file, not a model folder (config and weights)")
    if not could_be_hub_id(target):
        raise ModelNotFoundError(f"{what} folder not found: {target} (no such directory)")


def not_found_hint(target: str) -> str:
    """A note for a load failure on a hub-id-shaped target: it was not a local folder either."""
    return "" if Path(target).expanduser().exists() else f" (there is no local folder {target!r} either)"
