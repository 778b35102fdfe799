"""PNG plots of a stage's numbers (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def histogram(
    values: Sequence[float], path: Path, *, title: str, xlabel: str, ylabel: str,
    markers: Sequence[tuple[float, str]] = (),
) -> Path | None:
    """A histogram of ``values`` with vertical dashed lines at ``markers`` (x, label); None if empty."""
    if not values:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(values, bins=min(50, max(10, len(values) // 5)), color="#4C72B0")
    for x, label in markers:
        ax.axvline(x, color="#C44E52", linestyle="--", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if markers:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
