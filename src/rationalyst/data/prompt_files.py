"""One loader for every prompt file: the packaged ``rationalyst/prompts/<folder>/<name>`` or the same name
in a folder the user gives, read as text or YAML, with an error naming the file when it cannot be read.

Prompts live in files, not in code (extract's per-kind prompts, the agent's few-shot demos, the
rationalist's instruction, the judge's question); each reader parses and checks its own content.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rationalyst.errors import RationalystError


def prompt_path(folder: str, name: str, directory: str | Path | None = None) -> Any:
    """``<directory>/<name>`` when a directory is given, else the packaged ``prompts/<folder>/<name>``."""
    if directory is not None:
        return Path(directory) / name
    return resources.files("rationalyst").joinpath("prompts", folder, name)


def read_prompt_text(folder: str, name: str, directory: str | Path | None = None, *, what: str = "prompt") -> str:
    """A prompt file's text, stripped; `RationalystError` naming the file when it cannot be read."""
    source = prompt_path(folder, name, directory)
    try:
        return source.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RationalystError(f"cannot read the {what} {source}: {exc}") from None


def read_prompt_yaml(folder: str, name: str, directory: str | Path | None = None, *, what: str = "prompt") -> tuple[Any, Any]:
    """(where it was read from, parsed YAML) of a prompt file; `RationalystError` naming the file when it
    cannot be read or parsed."""
    source = prompt_path(folder, name, directory)
    try:
        return source, yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RationalystError(f"cannot read the {what} {source}: {exc}") from None
