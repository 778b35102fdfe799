"""Final-answer extraction and checking (rationalyst.data.answers), case by case.

Every case states the exact string `extract_answer` must return (None: no answer stated) or whether
`is_correct` must accept the prediction for the gold answer. The facts about math-verify that the
module docstring documents are pinned here too, so a math-verify upgrade that changes them fails.
"""

from __future__ import annotations

import threading

import pytest

from rationalyst.data.answers import extract_answer, has_final_answer, is_correct
from rationalyst.data.benchmarks import BenchmarkItem


def _item(family: str, answer: str, choices: list[str] | None = None, **meta) -> BenchmarkItem:
    return BenchmarkItem(
        id="t", benchmark="test", family=family, question="q?", choices=choices, answer=answer, meta=meta
    )


MC5 = ["horror", "anxiety and fear", "rejection", "increased workload", "being employed"]
LOGIC = ["True", "False", "Unknown"]

# ---------------------------------------------------------------------------------------- extraction

ARITHMETIC_EXTRACT = [
    ("The answer is 72.", "72"),
    ("the answer is: 42", "42"),
    ("Answer: 7", "7"),
    ("The final answer is **42**", "42"),
    ("The answer is 1,000.", "1000"),
    ("The answer is 1,234,567.", "1234567"),
    ("The answer is $18.00.", "18.00"),
    ("The answer is \\$1,234.50", "1234.50"),
    ("The answer is -3.", "-3"),
    ("The answer is −4", "-4"),  # a Unicode minus sign
    ("The answer is 18 dollars.", "18"),
    ("The answer is 50%.", "50%"),
    ("The answer is 3/4.", "3/4"),
    ("The answer is 0.5.", "0.5"),
    ("The answer is .5", ".5"),
    ("The answer is (7).", "7"),
    ("\\[\n\\text{The answer is } -5\n\\]", "-5"),  # the marker inside \text{}, as Qwen writes it
    ("So \\boxed{42}.", "42"),
    ("So \\boxed{\\$1,000}.", "1000"),
    ("So \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("She has 5 + 3 = 8 apples.\n#### 8", "8"),
    ("#### 1,000", "1000"),
    # the last stated answer wins; markers that state no number are passed over
    ("The answer is 5. Wait, the answer is 6.", "6"),
    ("The answer is 5.\nThe answer is found by adding.", "5"),
    ("#### 4\nThe answer is 5.", "5"),
    # no answer stated: never a guess
    ("The answer is twelve.", None),
    ("The answer is 5 times larger than Tom's.", None),  # a comparison, not the answer
    ("The answer is 3 more than the number of cats.", None),
    ("The answer is 12 apples.", "12"),
    ("The answer is 18 + 2 = 20.", None),
    ("The answer is 1.2.3", None),
    ("The answers are 7 and 8", None),
    ("She sold 48 / 2 = 24 clips in May.", None),
    ("", None),
]

MATH_EXTRACT = [
    ("Thus $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("First \\boxed{1} then \\boxed{\\sqrt{2}}", "\\sqrt{2}"),
    ("$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("so it is \\fbox{7}", "7"),
    ("so it is \\boxed 5.", "5"),
    ("\\boxed{\\boxed{3}}", "3"),
    ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("The answer is \\(x^2+1\\).", "x^2+1"),
    ("The answer is 3.5.", "3.5"),
    ("The answer is $3.$", "3"),
    ("The answer is $\\boxed{6}$.", "6"),
    ("Final Answer: The final answer is $5$. I hope it is correct.", "5"),
    # \boxed wins over an earlier or later "The answer is"
    ("The answer is 4. Check: \\boxed{5}", "5"),
    ("The answer is 5 apples.", "5 apples"),
    ("The answer is x = 5.", "x = 5"),
    ("The answer is \\text{Evelyn}.", "\\text{Evelyn}"),
    # prose after the marker is not an answer (outside $...$ at most two words)
    ("The answer is the sum of the two numbers.", None),
    ("The answer is positive.", None),  # lower-case words describe an answer, they are not one
    ("The answer is not defined.", None),
    ("The answer is Evelyn.", "Evelyn"),
    ("The answer is $\\text{the sum of all}$.", "\\text{the sum of all}"),
    # a truncated box is no answer
    ("The answer is \\boxed{\\frac{1}{2}", None),
    ("no answer here", None),
]

MC_EXTRACT = [
    ("The answer is (B).", "B"),
    ("The answer is B.", "B"),
    ("answer: b)", "B"),
    ("The answer is (a)", "A"),
    ("The answer is a.", "A"),
    ("The answer is option C", "C"),
    ("The correct answer is: (E)", "E"),
    ("**Answer:** C", "C"),
    ("The answer is: **B**", "B"),
    ("The answer is \\boxed{D}", "D"),
    ("The answer is \\boxed{\\text{(D)}}", "D"),
    ("The answer is B because fear comes first.", "B"),
    ("I think B. The answer is C", "C"),
    ("The answer is C. The answer is Z.", "C"),  # Z is no option: the last answer that parses
    ("The answer is I.", "I"),  # MMLU-Pro has ten options, A-J
    ("The answer is a dog.", None),  # a lowercase word is not an option letter
    ("Answer: I think the second option fits.", None),  # "I" starts prose here, not option I
    ("The answer is A good question to ask.", None),
    ("The answer is I.", "I"),
    ("The answer is B because fear comes first.", "B"),
    ("The answer is Z.", None),
    ("The answer is not clear yet.", None),
    ("Fear comes first, so B is likely.", None),
]

LOGIC_EXTRACT = [
    ("The answer is A.", "A"),
    ("The answer is (C)", "C"),
    ("The answer is True.", "A"),
    ("The answer is false", "B"),
    ("The answer is unknown.", "C"),
    ("The answer is (A) True.", "A"),
    ("The answer is D.", None),  # only A-C exist
    ("The statement is true.", None),
]


@pytest.mark.parametrize(("text", "expected"), ARITHMETIC_EXTRACT)
def test_extract_arithmetic(text, expected):
    assert extract_answer(text, "arithmetic") == expected
    assert has_final_answer(text, "arithmetic") is (expected is not None)


@pytest.mark.parametrize(("text", "expected"), MATH_EXTRACT)
def test_extract_math(text, expected):
    assert extract_answer(text, "math") == expected
    assert has_final_answer(text, "math") is (expected is not None)


@pytest.mark.parametrize(("text", "expected"), MC_EXTRACT)
def test_extract_multiple_choice(text, expected):
    assert extract_answer(text, "multiple_choice") == expected
    assert has_final_answer(text, "multiple_choice") is (expected is not None)


@pytest.mark.parametrize(("text", "expected"), LOGIC_EXTRACT)
def test_extract_logic(text, expected):
    assert extract_answer(text, "logic") == expected
    assert has_final_answer(text, "logic") is (expected is not None)


@pytest.mark.parametrize(
    ("text", "choices", "expected"),
    [
        ("The answer is E.", MC5, "E"),
        ("The answer is F.", MC5, None),  # five options: F does not exist
        ("The answer is D.", ["a", "b", "c"], None),
        ("The answer is anxiety and fear.", MC5, "B"),  # the option's text, exactly
        ("The answer is \"Rejection\"", MC5, "C"),
        ("The answer is fear.", MC5, None),  # not an option's whole text
        ("The answer is \\boxed{increased workload}", MC5, "D"),
        ("The answer is Unknown.", LOGIC, "C"),
        # Options that differ only in case (genotypes): the quoted one, not the first of the same letters.
        ("The answer is bb × bb.", ["Bb × Bb", "BB × bb", "bb × bb", "BB × BB"], "C"),
        ("The answer is Rr.", ["RR", "rr", "Rr"], "C"),
        ("The answer is rR.", ["RR", "rr", "Rr"], None),  # case-free, three options read alike
        ("The answer is A $500 fine.", ["Nothing.", "A warning.", "A $500 fine."], "C"),  # not letter A
        ("The answer is B or C.", MC5, None),  # a hedge names no answer
        ("The answer is B, C, or D.", MC5, None),
        ("The answer is (B) and (C).", MC5, None),
        ("The answer is B/C.", MC5, None),
        ("The answer is B, because fear comes first.", MC5, "B"),
        ("It is unlikely that the answer is D.", MC5, None),
        ("We must decide whether the answer is True.", LOGIC, None),
    ],
)
def test_extract_with_item_uses_its_options(text, choices, expected):
    family = "logic" if choices is LOGIC else "multiple_choice"
    item = _item(family, "A", choices)
    assert extract_answer(text, item) == expected
    assert has_final_answer(text, item) is (expected is not None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 5 or 6.", None),  # a hedge, not an answer
        ("The answer is 5, 6.", None),
        ("The answer is 5 and 6.", None),
        ("The answer is 5, and she keeps 2.", "5"),
        ("The answer is 1,000 or so.", "1000"),
        ("The answer is 3 x 4 = 12.", None),  # an expression goes on
        ("The answer is 2 1/2.", None),  # more of a number than is read
        ("The answer is 1 000.", None),
        ("The answer is 1e6.", None),
        ("If the answer is 5, then the total would be 10.", None),  # not a statement of the answer
        ("I don't think the answer is 12.", None),
        ("I think the answer is 12.", "12"),
        ("If we add them, we get 12. The answer is 12.", "12"),
    ],
)
def test_hedges_conditions_and_unread_numbers_state_no_arithmetic_answer(text, expected):
    assert extract_answer(text, "arithmetic") == expected
    assert has_final_answer(text, "arithmetic") is (expected is not None)


@pytest.mark.parametrize(
    ("text", "gold", "correct"),
    [
        ("The answer is $7$ because $x=2$.", "2", False),  # two spans: the first is the answer
        ("The answer is $7$ because $x=2$.", "7", True),
        ("The answer is $10$ when $n=4$.", "4", False),
        ("So the answer is $5$, but let's double-check.", "5", True),
        ("The answer is $\\frac{1}{2}$.", "0.5", True),
    ],
)
def test_a_math_answer_is_its_first_dollar_span(text, gold, correct):
    item = _item("math", gold)
    assert is_correct(extract_answer(text, item), item) is correct


def test_a_gold_written_with_one_token_arguments_parses_whole():
    """MATH's math-test-1714: ``\\frac \\pi4 + 2 - \\sqrt2`` is pi/4 + 2 - sqrt(2), not 2."""
    item = _item("math", "\\frac \\pi4 + 2 - \\sqrt2")
    assert is_correct("\\frac{\\pi}{4} + 2 - \\sqrt{2}", item) and not is_correct("2", item)
    assert is_correct("\\frac12", _item("math", "0.5"))


def test_n_choices_overrides_the_family_default():
    assert extract_answer("The answer is E.", "multiple_choice") == "E"
    assert extract_answer("The answer is E.", "multiple_choice", n_choices=4) is None


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="unknown answer family"):
        extract_answer("The answer is 5.", "geometry")


# ---------------------------------------------------------------------------------------- checking

ARITHMETIC_CORRECT = [
    ("72", "72", True),
    ("72", "72.", True),
    ("1000", "1,000", True),
    ("1000", "1,000.00", True),
    ("18", "$18.00", True),
    ("18", "\\$18", True),
    ("18", "18 dollars", True),
    ("18", "18.0", True),
    ("18", "18.5", False),
    ("-3", "-3", True),
    ("-3", "3", False),
    ("50", "50%", True),
    ("0.5", "1/2", True),
    ("0.5", "\\frac{1}{2}", True),
    ("0.5", "\\dfrac{1}{2}", True),
    ("10", "10\\text{ cm}", True),
    ("12", "12 apples.", True),
    ("5", "6", False),
    ("2", "2, 3", False),  # the set {2, 3}, not a guess at one of them
    ("12", "twelve", False),  # unparseable: wrong, never guessed
    ("0.333", "1/3", False),
    ("72", "The answer is 72.", True),  # a whole solution text is reduced to its answer
    ("72", "The answer is 71.", False),
    ("72", "#### 72", True),
    ("72", "", False),
    ("72", None, False),
]

MATH_CORRECT = [
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac12", "\\dfrac{1}{2}", True),
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{2}}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi)", False),
    ("5\\sqrt{2}", "\\sqrt{50}", True),
    ("x^2+1", "1+x^2", True),
    ("[1,2)", "[1,2)", True),
    ("[1,2)", "[1,2]", False),
    ("\\$18.90", "18.9", True),
    ("10^\\circ", "10", True),
    ("\\text{(C)}", "C", True),
    ("\\text{Evelyn}", "\\text{evelyn}", True),
    ("-\\frac{2}{3}", "-2/3", True),
    ("3", "$3$.", True),
    ("3", "4", False),
    ("3", "x", False),
    ("3", None, False),
]


@pytest.mark.parametrize(("gold", "prediction", "correct"), ARITHMETIC_CORRECT)
def test_is_correct_arithmetic(gold, prediction, correct):
    assert is_correct(prediction, _item("arithmetic", gold)) is correct


@pytest.mark.parametrize(("gold", "prediction", "correct"), MATH_CORRECT)
def test_is_correct_math(gold, prediction, correct):
    assert is_correct(prediction, _item("math", gold)) is correct


@pytest.mark.parametrize(
    ("prediction", "correct"),
    [("B", True), ("b", True), ("(B)", True), ("B.", True), ("B)", True), ("The answer is B.", True),
     ("A", False), ("F", False), ("anxiety and fear", False), ("", False), (None, False)],
)
def test_is_correct_multiple_choice(prediction, correct):
    assert is_correct(prediction, _item("multiple_choice", "B", MC5)) is correct


def test_is_correct_honours_ecqa_duplicate_options():
    choices = ["inevitability", "certainty", "possibility", "possible", "possibility"]
    item = _item("multiple_choice", "C", choices, acceptable_answers=["C", "E"])
    assert item.acceptable_answers == ("C", "E")
    assert is_correct("C", item) and is_correct("E", item)
    assert not is_correct("D", item)


def test_is_correct_logic_letters_and_words():
    item = _item("logic", "C", LOGIC)
    assert is_correct("C", item)
    assert is_correct("The answer is Unknown.", item)
    assert not is_correct("A", item)
    assert not is_correct("D", item)


def test_is_correct_works_outside_the_main_thread():
    # math-verify's timeout uses signal.alarm, which only the main thread may set.
    results = []
    thread = threading.Thread(target=lambda: results.append(is_correct("\\dfrac{1}{2}", _item("math", "0.5"))))
    thread.start()
    thread.join()
    assert results == [True]


def _stall(monkeypatch, module, name: str, stalled_calls: set[int], seconds: float) -> list[int]:
    """Make math-verify's own ``module.name`` sleep ``seconds`` on the given calls (1-based), as a loaded
    machine would; it still returns the real result. Returns the list of call numbers made."""
    import time

    real = getattr(module, name)
    calls: list[int] = []

    def stalled(*args, **kwargs):
        calls.append(len(calls) + 1)
        if calls[-1] in stalled_calls:
            time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, stalled)
    return calls


def test_a_parse_or_comparison_that_runs_past_its_budget_once_is_retried_not_marked_wrong(monkeypatch):
    import math_verify.grader
    import math_verify.parser

    from rationalyst.data import answers

    monkeypatch.setattr(answers, "VERIFY_TIMEOUT_S", 1)
    item = _item("math", "(-7, -2)")
    # the gold's parse stalls past its budget once: retried, then the prediction's parse
    calls = _stall(monkeypatch, math_verify.parser, "extract_target_from_pred", {1}, 1.5)
    assert is_correct("(-7,-2)", item)
    assert calls == [1, 2, 3]
    monkeypatch.undo()
    monkeypatch.setattr(answers, "VERIFY_TIMEOUT_S", 1)
    # the comparison of the two intervals stalls once (the two texts differ, so only it can say equal)
    calls = _stall(monkeypatch, math_verify.grader, "sympy_expr_eq", {1}, 1.5)
    assert is_correct("(-7,-2)", item)
    assert calls == [1, 2]


def test_a_comparison_that_times_out_twice_is_not_equal_and_says_so(monkeypatch, caplog):
    import math_verify.grader

    from rationalyst.data import answers

    monkeypatch.setattr(answers, "VERIFY_TIMEOUT_S", 1)
    monkeypatch.setattr(answers, "VERIFY_RETRY_TIMEOUT_S", 1)
    calls = _stall(monkeypatch, math_verify.grader, "sympy_expr_eq", {1, 2}, 1.5)
    assert not is_correct("(-7,-2)", _item("math", "(-7, -2)"))
    assert calls == [1, 2]
    assert "timed out twice" in caplog.text and "(-7,-2)" in caplog.text


def test_extraction_feeds_checking_on_a_worked_solution():
    solution = "In May she sold 48 / 2 = 24 clips.\nIn total she sold 48 + 24 = 72 clips.\nThe answer is 72."
    item = _item("arithmetic", "72")
    prediction = extract_answer(solution, item)
    assert prediction == "72"
    assert is_correct(prediction, item)
    # a step before the last states no answer, so the search goes on there
    assert not has_final_answer(solution.splitlines()[0], item)
