"""Reference computations written out by hand for the tests, independent of the helpers under test."""

from __future__ import annotations


def rationale_insertion(preceding: str, rationale: str, following: str) -> tuple[str, str, str]:
    """(context without, context with, scored text) as the method defines them, spelled out case by case.

    At a line break the break belongs to the context and the rationale is a line of its own; at spaces
    the scored text keeps its leading spaces and the rationale follows one space.
    """
    assert not preceding[-1:].isspace(), "the fixtures cut preceding right after a sentence"
    gap = following[: len(following) - len(following.lstrip())]
    if "\n" in gap:
        return preceding + gap, preceding + gap + rationale.strip() + gap, following[len(gap) :]
    return preceding, preceding + " " + rationale.strip(), following
