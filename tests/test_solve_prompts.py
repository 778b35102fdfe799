"""The agent's few-shot step prompts (rationalyst.data.solve_prompts) and how questions are shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from rationalyst.data.answers import extract_answer, has_final_answer
from rationalyst.data.benchmarks import FAMILIES, load_benchmark
from rationalyst.data.solve_prompts import format_question, format_question_text, load_solve_prompt
from rationalyst.errors import RationalystError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"


@pytest.mark.parametrize("family", FAMILIES)
def test_packaged_prompts_follow_the_step_format(family):
    prompt = load_solve_prompt(family)
    assert prompt.family == family
    assert "The answer is" in prompt.instruction and "step" in prompt.instruction
    assert 2 <= len(prompt.demos) <= 3
    for demo in prompt.demos:
        assert 2 <= len(demo.steps) <= 5
        n = len(demo.choices) if demo.choices else None
        # only the last step states the answer, in a form the search reads
        assert [has_final_answer(s, family, n_choices=n) for s in demo.steps] == [False] * (len(demo.steps) - 1) + [True]
        assert all("\n" not in s and len(s) < 120 for s in demo.steps)
        if family in ("multiple_choice", "logic"):
            assert extract_answer(demo.steps[-1], family, n_choices=n) in "ABCDEFGHIJ"[:n]


def test_demo_answers_are_the_ones_written():
    answers = {
        family: [extract_answer(d.steps[-1], family) for d in load_solve_prompt(family).demos] for family in FAMILIES
    }
    assert answers == {
        "arithmetic": ["26", "15", "64"],
        "math": ["6", "\\frac{11}{12}", "4"],
        "multiple_choice": ["B", "C", "A"],
        "logic": ["A", "B", "C"],
    }


def test_format_question_lists_options_with_letters():
    assert format_question_text("Which?", ["x", " y "]) == "Which?\nA) x\nB) y"
    assert format_question_text(" Q? ", None) == "Q?"
    item = load_benchmark("proofwriter", FIXTURES / "proofwriter.jsonl")[0]
    text = format_question(item)
    assert text.endswith("The bear visits the lion.\nA) True\nB) False\nC) Unknown")
    demo = load_solve_prompt("logic").demos[0]
    assert demo.question_text.endswith("\nA) True\nB) False\nC) Unknown")


def test_a_prompt_folder_replaces_the_packaged_prompts(tmp_path):
    (tmp_path / "arithmetic.yaml").write_text(
        "instruction: Solve it.\ndemos:\n  - question: 1 + 1?\n    steps: ['1 + 1 = 2.', 'The answer is 2.']\n"
    )
    prompt = load_solve_prompt("arithmetic", tmp_path)
    assert prompt.instruction == "Solve it." and prompt.demos[0].steps[-1] == "The answer is 2."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("instruction: Solve.\ndemos:\n  - question: q\n    steps: ['2 + 2 = 4.']\n", "last step states no final answer"),
        ("instruction: Solve.\ndemos:\n  - question: q\n    steps: ['The answer is 3.', 'The answer is 4.']\n", "step 1 already states"),
        ("instruction: Solve.\ndemos:\n  - question: q\n    steps: []\n", "steps"),
        ("instruction: Solve.\ndemos:\n  - question: q\n    steps: ['The answer is 4.']\n    extra: 1\n", "extra"),
        ("- not a mapping\n", "expected a mapping"),
        ("instruction: [unclosed\n", "cannot read"),
    ],
)
def test_bad_prompt_files_are_clear_errors(tmp_path, text, message):
    (tmp_path / "arithmetic.yaml").write_text(text)
    with pytest.raises(RationalystError, match=message):
        load_solve_prompt("arithmetic", tmp_path)


def test_option_families_need_choices(tmp_path):
    (tmp_path / "logic.yaml").write_text("instruction: Decide.\ndemos:\n  - question: q\n    steps: ['The answer is A.']\n")
    with pytest.raises(RationalystError, match="needs choices"):
        load_solve_prompt("logic", tmp_path)
    with pytest.raises(RationalystError, match="no solve prompt"):
        load_solve_prompt("geometry")
