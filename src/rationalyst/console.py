"""Logging and progress bars for the CLI: rich on a terminal, quiet for scripts.

Library code logs through `logging` and wraps long loops in `progress`; only the CLI decides how
much of that reaches the user (``--quiet`` keeps warnings and errors only, and hides progress bars).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")

#: Results go to stdout; logs and progress go to stderr so they never mix with piped output.
stdout = Console()
stderr = Console(stderr=True)

_state = {"quiet": False}


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    _state["quiet"] = quiet
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)],
        force=True,
    )
    # Third-party chatter (weight-loading bars, deprecation notes) only with --verbose.
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|peft|accelerate)\b")
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_info() if verbose else hf_logging.set_verbosity_error()
        if not verbose:
            hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass


def progress(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (none under --quiet or when stderr is not a tty)."""
    if _state["quiet"] or not stderr.is_terminal:
        yield from items
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
