"""`benchmarks/dev_step_gain.py`, the dev-slice yardstick of issue 15: its wrong candidates, and the two
controls (a fixed line; another problem's rationale) on the default model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "benchmarks" / "gsm8k.jsonl"


def _script():
    spec = importlib.util.spec_from_file_location("dev_step_gain", ROOT / "benchmarks" / "dev_step_gain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wrong_candidates():
    gain = _script()
    assert gain.wrong_result("He pays 3 * 12 = 36 dollars.") == "He pays 3 * 12 = 46 dollars."
    assert gain.wrong_result("So 9 + 90 = 99") == "So 9 + 90 = 19"  # 9 wraps to 1, not to 0
    assert gain.wrong_result("No numbers here.") is None
    steps = ["A is 2 + 2 = 4.", "B is 4 * 3 = 12.", "The answer is 12."]
    assert gain.distractors(steps, 0) == {"wrong number": "A is 2 + 2 = 5.", "skipped step": "B is 4 * 3 = 12."}
    assert gain.distractors(steps, 2) == {"wrong number": "The answer is 22."}


def test_each_case_gets_a_rationale_written_for_another_problem():
    gain = _script()
    ids = ["p1", "p1", "p2", "p3", "p3"]
    moved = gain.other_problems_rationales(["a1", "b1", "a2", "a3", "b3"], ids)
    assert sorted(moved) == ["a1", "a2", "a3", "b1", "b3"]  # a permutation
    own = {"p1": {"a1", "b1"}, "p2": {"a2"}, "p3": {"a3", "b3"}}
    assert all(r not in own[i] for r, i in zip(moved, ids))
    with pytest.raises(SystemExit, match="two problems"):
        gain.other_problems_rationales(["a", "b"], ["p", "p"])


def _run(gain, monkeypatch, tmp_path, name: str, *extra: str) -> list[dict]:
    ids = tmp_path / "ids.txt"
    ids.write_text("# dev ids\ngsm8k-train-0\ngsm8k-train-1\ngsm8k-train-2\n", "utf-8")
    saved = tmp_path / f"{name}.jsonl"
    argv = ["dev_step_gain.py", "--ids", str(ids), "--data", str(FIXTURE), "--scorer", "builtin:smollm2-135m",
            "--steps", "1", "--max-rationale-tokens", "12", "--batch", "2", "--save", str(saved), *extra]
    monkeypatch.setattr(sys, "argv", argv)
    gain.main()
    return [json.loads(line) for line in saved.read_text("utf-8").splitlines()]


def test_controls_change_only_the_inserted_line(monkeypatch, tmp_path):
    """The controls score the same steps against the same wrong ones; only the line before them changes:
    the fixed text everywhere, or the rationales of the plain run moved to other problems."""
    gain = _script()
    plain = _run(gain, monkeypatch, tmp_path, "plain", "--rationalist", "builtin:smollm2-135m")
    shuffled = _run(gain, monkeypatch, tmp_path, "shuffled", "--rationalist", "builtin:smollm2-135m", "--shuffle")
    fixed = _run(gain, monkeypatch, tmp_path, "fixed", "--fixed-rationale", "Let's work out the next step.")
    assert [r["id"] for r in plain] == [r["id"] for r in shuffled] == [r["id"] for r in fixed] == [
        "gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"]
    written = [r["rationale"] for r in plain]
    assert [r["rationale"] for r in shuffled] == written[1:] + written[:1]
    assert {r["rationale"] for r in fixed} == {"Let's work out the next step."}
    for control in (shuffled, fixed):
        for a, b in zip(plain, control):
            assert b["without"] == pytest.approx(a["without"], abs=1e-4)
            assert b["margin_without"] == pytest.approx(a["margin_without"], abs=1e-4)
            assert b["gain"] == pytest.approx(b["with"] - b["without"])
    # The line is what moves the scores: the same step after another line scores differently.
    assert any(abs(a["with"] - b["with"]) > 1e-3 for a, b in zip(plain, fixed))
