"""Final answers: find the one a solution states, and check it against the gold answer.

The step search (Stage 5 of RATIONALYST) stops when the trajectory states a final answer that parses,
and scores a problem by comparing that answer with the gold one. Both must agree on what "states a
final answer" means, so `has_final_answer` is defined as "`extract_answer` finds one".

What counts as a stated answer, per family (see `rationalyst.data.benchmarks.FAMILIES`):

* ``arithmetic`` (GSM8K-style): a number right after "The answer is" / "Answer:" (optionally after
  ``$``, ``\\$``, ``**``, ``(`` or the brace closing ``\\text{The answer is }``), after ``####``, or
  inside ``\\boxed{}``. Thousands separators and currency signs are dropped (``"$1,000.50"`` ->
  ``"1000.50"``), a sentence's final period is not part of the number, a fraction ``3/4`` and a percent
  sign are kept. Words between the marker and the number ("The answer is twelve", "The answer is that
  she has 12") do not count, nor does a number
  that a comparison follows ("The answer is 5 times larger", "3 more than Tom").
* ``math`` (MATH): the content of the last complete ``\\boxed{...}`` (balanced braces); failing that,
  the rest of the sentence after "The answer is", without ``$`` delimiters and the final period;
  outside ``$...$`` it may hold at most two words ("5 apples", "x = 5", "Evelyn"), more is prose
  ("The answer is the sum of the two numbers" states no answer), and lower-case words alone describe
  rather than state ("The answer is positive.").
* ``multiple_choice`` and ``logic``: an option letter after "The answer is" / "Answer:" (``(B)``,
  ``B``, ``B)``, ``b)``, ``(b)``, ``option B``), or inside ``\\boxed{}``. Only letters of existing options
  count: with an item, its choices; with a family name, ``A``-``J`` (MMLU-Pro has up to ten options)
  or ``A``-``C`` for logic. A lowercase letter counts only when set off (``b)``, ``(b)``, ``b.``), so
  "the answer is a dog" is not option A, and "A" or "I" followed by a lower-case word is prose
  ("Answer: I think ..." is not option I; "The answer is B because ..." is B). When no letter is given, an answer that repeats an option's
  text exactly (case and final punctuation aside) names that option: with an item, any of its
  choices; for logic also the words True / False / Unknown (= A / B / C).

Where the text states several answers, the last one that parses is returned (markers that do not
parse, like "The answer is found by adding...", are passed over).

Correctness (`is_correct`): option letters are compared with the item's acceptable letters (ECQA
lists every letter of a duplicated correct option). Numbers and LaTeX are compared by mathematical
equivalence with `math-verify` (gold and prediction are each parsed as the content of a
``\\boxed{}``; ``verify(gold, prediction)``). Facts measured with math-verify 0.9.0 that follow from
this: ``"18.0" == "18"``, ``"1,000" == "1000"``, ``"\\dfrac{1}{2}" == "0.5" == "1/2"``,
``"10\\text{ cm}" == "10"``, ``"50%"`` equals both ``50`` and ``0.5`` (math-verify accepts a percentage
either way), ``"0.333" != "1/3"``, ``"2, 3"`` is the set {2, 3} and not 3. An answer that does not
parse is wrong; nothing is ever guessed in its place.

math-verify bounds its parsing with ``signal.alarm``, which works only in the main thread; in other
threads the checks run without that time limit.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator

from rationalyst.data.benchmarks import FAMILIES, LETTERS, BenchmarkItem
from rationalyst.data.latex import boxed_spans, last_boxed

logger = logging.getLogger(__name__)

#: Letters accepted for a family when no item (and so no option count) is given.
DEFAULT_OPTION_COUNT = {"multiple_choice": 10, "logic": 3}
#: Option texts of the logic family (ProofWriter): A / B / C.
LOGIC_OPTIONS = ("True", "False", "Unknown")
#: Seconds math-verify may spend parsing or comparing one answer (main thread only), and the longer
#: budget of the one retry a timed-out call gets: the alarm counts wall-clock time, so on a loaded machine
#: a parse that takes 0.1 s can run past 5 s, and a verdict must not depend on the machine's load.
VERIFY_TIMEOUT_S = 5
VERIFY_RETRY_TIMEOUT_S = 60

# "The answer is", "the final answer is:", "Answer:", "answer =" (case-insensitive).
_MARKER = re.compile(
    r"\b(?:the\s+)?(?:final\s+)?answer\s*(?:\*\*)?\s*(?:is\s*:?|:|=)\s*(?:\*\*)?\s*", re.IGNORECASE
)
_HASHES = re.compile(r"####\s*")
# A number: optional minus, digits with or without thousands separators, decimals, a fraction, a %.
_NUMBER = re.compile(
    r"(?P<num>[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|[-−]?\.\d+)(?P<pct>\s*\\?%)?"
)
_NUMBER_PREFIX = re.compile(r"(?:\*\*|\$|\\\$|\\\(|\(|\s|\\boxed\{|\{|\})*")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")
_LETTER_AFTER_MARKER = re.compile(
    r"(?:\*\*)?(?:(?i:option|choice)\s+)?(?:\*\*)?"
    r"(?:\(\s*(?P<paren>[A-Za-z])\s*\)|(?P<upper>[A-Z])(?![A-Za-z0-9])|(?P<lower>[a-z])(?=\s*[).:,;]|\s*$))"
)
# After a stated number, these characters mean an expression goes on ("18 + 2 = 20", "3 x 4 = 12"): not an answer.
_EXPRESSION_GOES_ON = re.compile(r"\s*(?:[-+/×÷=^<>]|\*(?!\*)|\\times|\\cdot|\\div|[xX]\s*\d)")
# After a stated number, more of a number that the pattern does not read ("2 1/2", "1 000", "1e6"): not a
# clean answer.
_NUMBER_GOES_ON = re.compile(r"\s\d+\s*/\s*\d|\s\d{3}(?!\d)|[eE][-+]?\d")
# After a stated answer, another one offered beside it ("5 or 6", "B, C", "B and C", "B/C"): a hedge, not
# an answer. A letter alone (not a word: "B, because") or a number follows the connective.
_ALTERNATIVE_NUMBER = re.compile(r"\s*(?:,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+)[-−]?(?:\\?\$)?\d")
_ALTERNATIVE_LETTER = re.compile(
    r"\s*[).]?\s*(?:,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+|\s*/\s*)(?:\*\*)?\(?[A-Z]\)?(?![A-Za-z0-9])"
)
# Words just before an answer marker that make it no statement of the answer ("If the answer is 5",
# "whether the answer is True", "I don't think the answer is 12", "unlikely that the answer is D").
_NOT_A_STATEMENT = re.compile(
    r"(?:\b(?:if|whether|suppose|supposing|assume|assuming|unless|not|never|unlikely)|n't)\W+(?:\w+\W+)?$",
    re.IGNORECASE,
)
# After a stated number, a comparison means it is not the answer itself ("5 times larger", "3 more than").
_COMPARISON_GOES_ON = re.compile(
    r"\s+(?:times|more|less|fewer|larger|smaller|greater|bigger|higher|lower|longer|shorter|older|younger|than)\b",
    re.IGNORECASE,
)
# "Answer: I think ...", "The answer is A good ...": the letters A and I are also English words; followed by
# a lower-case word other than a connective they start prose, not an option.
_WORD_LETTER_PROSE = re.compile(
    r"[AI]\s+(?!(?:because|since|as|which|is|was|and|or|with|for|from|by|of|in|on|at|to)\b)[a-z]"
)


# ----------------------------------------------------------------------------------------- extraction


def _family_and_options(item_or_family: BenchmarkItem | str, n_choices: int | None) -> tuple[str, int, list[str]]:
    """(family, number of options, option texts) for an item or a family name."""
    if isinstance(item_or_family, str):
        family = item_or_family
        if family not in FAMILIES:
            raise ValueError(f"unknown answer family {family!r} (known: {', '.join(FAMILIES)})")
        if family == "logic":
            options = list(LOGIC_OPTIONS)
            return family, n_choices or 3, options[: n_choices or 3]
        return family, n_choices or DEFAULT_OPTION_COUNT.get(family, 0), []
    choices = list(item_or_family.choices or [])
    return item_or_family.family, n_choices or len(choices), choices


def _number(text: str) -> str | None:
    """The number at the start of ``text`` (after ``$``, ``**``, ``(`` and the like), canonicalized."""
    prefix = _NUMBER_PREFIX.match(text)
    rest = text[prefix.end() :] if prefix else text
    m = _NUMBER.match(rest)
    if not m:
        return None
    after = rest[m.end() :]
    if after[:1].isdigit() or (after[:1] in ".," and after[1:2].isdigit()):
        return None  # a malformed number such as "1,00,000" or "1.2.3": not a clean answer
    if any(p.match(after) for p in (_EXPRESSION_GOES_ON, _COMPARISON_GOES_ON, _NUMBER_GOES_ON, _ALTERNATIVE_NUMBER)):
        return None
    num = m.group("num").replace("−", "-").replace(",", "")
    num = re.sub(r"\s*/\s*", "/", num)
    return num + ("%" if m.group("pct") else "")


def _markers(text: str) -> Iterator[re.Match]:
    """The answer markers of ``text`` that state an answer (not "if the answer is ...")."""
    for m in _MARKER.finditer(text):
        if not _NOT_A_STATEMENT.search(text[max(0, m.start() - 40) : m.start()]):
            yield m


def _arithmetic_candidates(text: str) -> list[tuple[int, str | None]]:
    found: list[tuple[int, str | None]] = []
    for m in _markers(text):
        found.append((m.start(), _number(text[m.end() :])))
    for m in _HASHES.finditer(text):
        found.append((m.start(), _number(text[m.end() :])))
    for start, _end, content in boxed_spans(text):
        found.append((start, _number_or_latex(content)))
    return found


def _number_or_latex(content: str) -> str | None:
    """A boxed arithmetic answer: its number when it is one (``\\$1,000`` -> ``1000``), else as is."""
    number = _number(content)
    if number is not None and _number_is_whole(content, number):
        return number
    return content or None


def _number_is_whole(content: str, number: str) -> bool:
    """Whether ``content`` is just that number with currency / unit decoration around it."""
    stripped = re.sub(r"[\s$,]|\\\$|\\%|%|\\text\{[^}]*\}|\\!|\\,", "", content)
    return stripped.replace("−", "-") == number.replace("%", "")


def _sentence(text: str) -> str:
    """``text`` up to the end of its first sentence (a period before whitespace, or a newline)."""
    m = _SENTENCE_END.search(text)
    return text[: m.start()] if m else text


def _strip_math_delimiters(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            inner = answer[len(left) : len(answer) - len(right)]
            if left.startswith("$") and re.search(r"(?<!\\)\$", inner):
                continue  # "$7$ because $x=2$": two spans, not one
            answer = inner.strip()
    return answer.rstrip(".").strip()


# A stated answer that opens with a $...$ span: the span is the answer ("$5$, but let's check").
_FIRST_DOLLAR_SPAN = re.compile(r"\s*(?:\*\*)?\s*(\$\$?)(.+?)(?<!\\)\1")


#: A stated math answer outside $...$ with more words than this is prose ("The answer is the sum of
#: the two numbers"), not an answer.
MAX_PROSE_WORDS = 2
# Outside $...$, lower-case words alone ("positive", "not defined") describe an answer, they are not one
# (names like "Evelyn" and expressions like "x = 5" or "5 apples" still count).
_LOWERCASE_WORDS_ONLY = re.compile(r"[a-z]{2,}(?:\s+[a-z]{2,})*")


def _math_statement(text: str) -> str | None:
    answer = None
    for m in _markers(text):
        sentence = _math_sentence(text[m.end() :])
        span = _FIRST_DOLLAR_SPAN.match(sentence)
        if span and span.end() < len(sentence.rstrip().rstrip("*").rstrip()):  # more follows the span
            candidate = span.group(2).strip()
            if candidate and "\\boxed" not in candidate:
                answer = candidate
            continue
        candidate = _strip_math_delimiters(sentence)
        if not candidate or "\\boxed" in candidate or "\\fbox" in candidate:  # none, or a truncated box
            continue
        delimited = candidate != sentence.strip().strip("*").strip().rstrip(".").strip()
        latex_free = re.sub(r"\\[A-Za-z]+", " ", candidate)
        if delimited or (
            len(re.findall(r"[A-Za-z]{2,}", latex_free)) <= MAX_PROSE_WORDS and not _LOWERCASE_WORDS_ONLY.fullmatch(candidate)
        ):
            answer = candidate
    return answer


def _math_sentence(text: str) -> str:
    """The rest of the line, cut at a sentence-final period that lies outside ``$...$``."""
    line = text.split("\n", 1)[0]
    in_math = False
    for i, ch in enumerate(line):
        if ch == "$" and (i == 0 or line[i - 1] != "\\"):
            in_math = not in_math
        elif ch == "." and not in_math and (i + 1 == len(line) or line[i + 1].isspace()):
            return line[:i]
    return line


def _normalize_option_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip("\"'*`").rstrip(".!").strip().strip("\"'*`"))


class _OptionTexts:
    """The letter an answer names by quoting its option's text: an exact (case-kept) match first, else
    a case-free match only where one option alone has that text ("Rr" is not "rr" or "RR")."""

    def __init__(self, options: list[str]) -> None:
        self.exact: dict[str, str] = {}
        self.folded: dict[str, str | None] = {}
        for i, option in enumerate(options):
            text = _normalize_option_text(option)
            self.exact.setdefault(text, LETTERS[i])
            folded = text.lower()
            self.folded[folded] = LETTERS[i] if folded not in self.folded else None

    def __bool__(self) -> bool:
        return bool(self.exact)

    def letter(self, text: str) -> str | None:
        text = _normalize_option_text(text)
        return self.exact.get(text) or self.folded.get(text.lower())


def _letter_candidates(text: str, n_options: int, options: list[str]) -> list[tuple[int, str | None]]:
    valid = LETTERS[:n_options]
    by_text = _OptionTexts(options[:n_options])
    found: list[tuple[int, str | None]] = []
    for m in _markers(text):
        rest = text[m.end() :]
        quoted = _sentence(rest)
        # An option quoted whole ("A $500 fine.") is that option, whatever letter its text starts with.
        letter = by_text.letter(quoted) if by_text and len(_normalize_option_text(quoted)) > 1 else None
        if letter is None:
            lm = _LETTER_AFTER_MARKER.match(rest)
            if lm and lm.group("upper") and _WORD_LETTER_PROSE.match(rest, lm.start("upper")):
                lm = None
            if lm and _ALTERNATIVE_LETTER.match(rest, lm.end()):
                lm, quoted = None, ""  # "B or C": a hedge
            if lm:
                letter = (lm.group("paren") or lm.group("upper") or lm.group("lower")).upper()
            elif by_text and quoted:
                letter = by_text.letter(quoted)
        found.append((m.start(), letter if letter is not None and letter in valid else None))
    for start, _end, content in boxed_spans(text):
        inner = re.sub(r"^\\text\{(.*)\}$", r"\1", content).strip().strip("()").strip()
        letter = inner.upper() if len(inner) == 1 and inner.isalpha() else (by_text.letter(inner) if by_text else None)
        found.append((start, letter if letter is not None and letter in valid else None))
    return found


def extract_answer(text: str, item_or_family: BenchmarkItem | str, *, n_choices: int | None = None) -> str | None:
    """The final answer ``text`` states, or None (see the module docstring for what counts).

    ``item_or_family``: a `BenchmarkItem` (its family and, for option letters, its choices) or a family
    name. ``n_choices`` overrides the number of options (with a family name: default ten for
    ``multiple_choice``, three for ``logic``). Returns a number string for ``arithmetic``
    (``"1000"``, ``"-2.5"``, ``"3/4"``, ``"50%"``), a LaTeX string for ``math``, an uppercase option
    letter for ``multiple_choice`` and ``logic``.
    """
    if not text:
        return None
    family, n_options, options = _family_and_options(item_or_family, n_choices)
    if family == "math":
        boxed = last_boxed(text)
        return boxed if boxed else _math_statement(text)
    if family == "arithmetic":
        candidates = _arithmetic_candidates(text)
    else:
        candidates = _letter_candidates(text, n_options, options)
    for _pos, answer in sorted(candidates, key=lambda c: c[0], reverse=True):
        if answer is not None:
            return answer
    return None


def has_final_answer(text: str, item_or_family: BenchmarkItem | str, *, n_choices: int | None = None) -> bool:
    """Whether ``text`` states a final answer: exactly when `extract_answer` returns one."""
    return extract_answer(text, item_or_family, n_choices=n_choices) is not None


# ----------------------------------------------------------------------------------------- checking


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _parse_math(answer: str) -> list:
    """math-verify's parse of ``answer`` as the content of a ``\\boxed{}`` (empty if it does not parse)."""
    from math_verify import parse

    text = "\\boxed{" + _brace_arguments(answer) + "}"
    if not _in_main_thread():  # math-verify's alarm works in the main thread only
        return parse(text, parsing_timeout=None)
    return _retrying_timeouts(lambda seconds: parse(text, parsing_timeout=seconds, raise_on_error=True), [], text)


# TeX's one-token arguments, "\frac \pi4", "\frac12", "\sqrt2", which math-verify misreads.
_TOKEN = r"(\\[A-Za-z]+|[0-9A-Za-z])"
_BRACELESS_FRAC = re.compile(r"\\(d?frac|tfrac)\s*" + _TOKEN + r"\s*" + _TOKEN)
_BRACELESS_SQRT = re.compile(r"\\sqrt\s*" + _TOKEN)


def _brace_arguments(answer: str) -> str:
    """``\\frac \\pi4`` -> ``\\frac{\\pi}{4}``, ``\\sqrt2`` -> ``\\sqrt{2}``; braced arguments are left as they are."""
    answer = _BRACELESS_FRAC.sub(r"\\\1{\2}{\3}", answer)
    return _BRACELESS_SQRT.sub(r"\\sqrt{\1}", answer)


def _verify(gold: list, prediction: list) -> bool:
    from math_verify import verify

    if not _in_main_thread():
        return bool(verify(gold, prediction, timeout_seconds=None))
    # pair by pair, as math-verify's own loop, so that an error in one pair leaves the others to decide;
    # the warning names the prediction by its text (printing a sympy object can itself hang)
    text = next((x for x in prediction if isinstance(x, str)), "a parsed answer")
    return any(
        _retrying_timeouts(lambda seconds: verify(g, p, timeout_seconds=seconds, raise_on_error=True), False, text)
        for g in gold
        for p in prediction
    )


def _retrying_timeouts(call, failed, subject):
    """``call(seconds)`` under math-verify's timeout; one retry with a longer budget if it timed out.

    Any other error means "does not parse" / "not equal", as math-verify itself reads it (``failed``).
    """
    from math_verify.errors import TimeoutException

    for seconds in (VERIFY_TIMEOUT_S, VERIFY_RETRY_TIMEOUT_S):
        try:
            return call(seconds)
        except TimeoutException:
            continue
        except Exception:
            return failed
    logger.warning("math-verify timed out twice (%d s, then %d s) on %.200r", VERIFY_TIMEOUT_S, VERIFY_RETRY_TIMEOUT_S, subject)
    return failed


def _clean_numeric(answer: str, family: str) -> str:
    """An answer string ready for math-verify: delimiters, a final period and unit words removed."""
    answer = _strip_math_delimiters(answer)
    if family == "arithmetic":
        number = _number(answer)
        if number is not None:
            rest = answer[_NUMBER_PREFIX.match(answer).end() :]
            rest = rest[_NUMBER.match(rest).end() :]
            rest = re.sub(r"\\(?:text|mbox|mathrm)\{([^}]*)\}", r"\1", rest).strip().rstrip(".").strip()
            # "18 dollars", "$18.00", "12 apples." are the number; "2, 3" or "5 + 1" are not.
            if rest in ("", "}", "**") or re.fullmatch(r"[A-Za-z][A-Za-z .'/-]*", rest):
                return number
    return answer


def _option_letter(prediction: str, item: BenchmarkItem) -> str | None:
    """A bare option letter (``"B"``, ``"(b)"``, ``"B."``) or the letter an answer text states."""
    bare = prediction.strip().strip("()[]*").rstrip(".):").strip()
    if len(bare) == 1 and bare.isalpha():
        letter = bare.upper()
        return letter if letter in LETTERS[: len(item.choices or [])] else None
    return extract_answer(prediction, item)


def is_correct(prediction: str | None, item: BenchmarkItem) -> bool:
    """Whether ``prediction`` (an extracted answer) is the item's gold answer; None is wrong.

    Option families: the letter must be one of ``item.acceptable_answers``. ``arithmetic`` and
    ``math``: mathematical equivalence by math-verify (see the module docstring). A prediction that
    is a whole solution text is first reduced to its stated answer with `extract_answer`.
    """
    if prediction is None or not str(prediction).strip():
        return False
    prediction = str(prediction)
    if item.family in ("multiple_choice", "logic"):
        letter = _option_letter(prediction, item)
        return letter is not None and letter in item.acceptable_answers
    if "\\boxed" in prediction or "\\fbox" in prediction or _MARKER.search(prediction) or "####" in prediction:
        stated = extract_answer(prediction, item)
        if stated is None:
            return False
        prediction = stated
    gold = _parse_math(_clean_numeric(item.answer, item.family))
    if not gold:
        return False
    predicted = _parse_math(_clean_numeric(prediction, item.family))
    if not predicted:
        return False
    return _verify(gold, predicted)
