"""Finding ``\\boxed{...}`` answers in LaTeX text, with balanced braces.

MATH solutions state their final answer as the last ``\\boxed{...}`` (sometimes ``\\fbox{...}`` or the
brace-less ``\\boxed 5``). The content may itself hold braces (``\\boxed{\\frac{1}{2}}``), so a regular
expression cannot find its end; this module scans for the matching closing brace. Both the benchmark
loaders (MATH gold answers) and the answer extractor (`rationalyst.data.answers`) use it.
"""

from __future__ import annotations

import re

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """Every complete ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed x`` in ``text``, in order.

    Each is ``(start, end, content)``: ``text[start:end]`` is the whole command, ``content`` what is
    inside the braces, stripped. A box whose closing brace is missing (truncated text) is left out.
    The brace-less form ``\\boxed 5`` takes the following run of characters up to whitespace, ``$``
    or the end of the text.
    """
    spans: list[tuple[int, int, str]] = []
    for match in _BOX_COMMAND.finditer(text):
        i = match.end()
        n = len(text)
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == "{":
            depth = 0
            j = i
            while j < n:
                ch = text[j]
                if ch == "\\":  # \{, \} and \\ are escaped characters, not braces
                    j += 2
                    continue
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        spans.append((match.start(), j + 1, text[i + 1 : j].strip()))
                        break
                j += 1
        elif i > match.end():  # "\boxed 5": a space, then the content
            m = re.match(r"[^\s$]+", text[i:])
            if m:
                content = m.group(0).rstrip(".,;")
                if content:
                    spans.append((match.start(), i + m.end(), content))
    return spans


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` in ``text`` (stripped), or None."""
    spans = boxed_spans(text)
    return spans[-1][2] if spans else None
