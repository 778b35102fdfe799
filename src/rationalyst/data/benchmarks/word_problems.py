"""Short grade-school word problems with worked step-by-step solutions, generated from a seed.

GSM8K needs several steps of reasoning that a 135M model almost never gets right, so a CPU demo on
it shows 0% for every method and nothing to compare. These problems take one or two steps with
small numbers: the embedded default model solves some of them, so heuristics can differ. Problem i
of seed s comes from ``Random(s + i)`` alone: any count of a seed is a prefix of a larger count, and
sets from seeds far apart never share a problem's random stream.

Each problem is ``{"question", "steps", "answer"}``; its steps follow the arithmetic family's
format (one computation per line, last line "The answer is N.").
"""

from __future__ import annotations

import random
from collections.abc import Callable

NAMES = ("Tom", "Ana", "Ben", "Lila", "Sam", "Mia", "Omar", "Zoe", "Ravi", "Emma", "Leo", "Nina")
THINGS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "cards", "shells", "stamps", "toy cars")

Problem = dict[str, object]


def _problem(question: str, steps: list[str], answer: int) -> Problem:
    """A problem whose worked solution is ``steps`` and then "The answer is N."."""
    return {"question": question, "steps": [*steps, f"The answer is {answer}."], "answer": answer}


def _add(r: random.Random) -> Problem:
    name, things = r.choice(NAMES), r.choice(THINGS)
    a, b = r.randint(2, 30), r.randint(2, 30)
    return _problem(
        f"{name} has {a} {things} and buys {b} more. How many {things} does {name} have now?",
        [f"{name} has {a} + {b} = {a + b} {things}."],
        a + b,
    )


def _subtract(r: random.Random) -> Problem:
    name, things = r.choice(NAMES), r.choice(THINGS)
    a = r.randint(10, 50)
    b = r.randint(1, a - 1)
    return _problem(
        f"{name} has {a} {things} and gives {b} of them to a friend. How many {things} are left?",
        [f"{name} has {a} - {b} = {a - b} {things} left."],
        a - b,
    )


def _multiply(r: random.Random) -> Problem:
    things = r.choice(THINGS)
    a, b = r.randint(2, 9), r.randint(2, 12)
    return _problem(
        f"There are {a} boxes with {b} {things} in each box. How many {things} are there in all?",
        [f"There are {a} * {b} = {a * b} {things}."],
        a * b,
    )


def _price(r: random.Random) -> Problem:
    name, things = r.choice(NAMES), r.choice(THINGS)
    a, p = r.randint(2, 9), r.randint(2, 10)
    return _problem(
        f"{name} buys {a} {things} for {p} dollars each. How many dollars does {name} pay?",
        [f"{name} pays {a} * {p} = {a * p} dollars."],
        a * p,
    )


def _share(r: random.Random) -> Problem:
    things = r.choice(THINGS)
    a, b = r.randint(2, 8), r.randint(2, 10)
    return _problem(
        f"{a} children share {a * b} {things} equally. How many {things} does each child get?",
        [f"Each child gets {a * b} / {a} = {b} {things}."],
        b,
    )


def _buy_then_give(r: random.Random) -> Problem:
    name, things = r.choice(NAMES), r.choice(THINGS)
    a, b = r.randint(5, 30), r.randint(2, 20)
    c = r.randint(1, a + b - 1)
    return _problem(
        f"{name} has {a} {things}, buys {b} more, and then gives away {c}. How many {things} are left?",
        [
            f"After buying, {name} has {a} + {b} = {a + b} {things}.",
            f"After giving some away, {name} has {a + b} - {c} = {a + b - c} {things}.",
        ],
        a + b - c,
    )


def _earn_then_spend(r: random.Random) -> Problem:
    name = r.choice(NAMES)
    a, b = r.randint(3, 12), r.randint(2, 7)
    c = r.randint(1, a * b - 1)
    return _problem(
        f"{name} earns {a} dollars a day for {b} days and then spends {c} dollars. "
        f"How many dollars does {name} have left?",
        [
            f"{name} earns {a} * {b} = {a * b} dollars.",
            f"After spending, {name} has {a * b} - {c} = {a * b - c} dollars.",
        ],
        a * b - c,
    )


TEMPLATES: tuple[Callable[[random.Random], Problem], ...] = (
    _add, _subtract, _multiply, _price, _share, _buy_then_give, _earn_then_spend,
)


def word_problem(index: int, seed: int) -> Problem:
    """Problem ``index`` of ``seed``: drawn from ``Random(seed + index)`` only."""
    r = random.Random(seed + index)
    return r.choice(TEMPLATES)(r)


def word_problems(count: int, seed: int) -> list[Problem]:
    """The first ``count`` problems of ``seed``."""
    return [word_problem(i, seed) for i in range(count)]
