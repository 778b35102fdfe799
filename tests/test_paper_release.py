"""The authors' released rationalist format: trained on the preceding text alone (no instruction), and
prompted the same way by the search, here on a model folder trained and saved locally in that format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rationalyst.cli import app
from rationalyst.data.rationale_text import rationalist_instruction
from rationalyst.lm import SamplingParams, load_model

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"


@pytest.fixture(scope="module")
def paper_release_model(tmp_path_factory) -> Path:
    from rationalyst.stages.train import run
    from tests.test_train import _config

    tmp = tmp_path_factory.mktemp("paper-release")
    result = run(_config(tmp, max_steps=1, dev_fraction=0.0, rationalist_format="paper-release", save_steps=10))
    return result.merged


def test_the_saved_profile_says_text_alone(paper_release_model):
    assert (paper_release_model / "instruction.txt").read_text("utf-8") == ""
    assert rationalist_instruction(f"hf:{paper_release_model}") is None
    assert rationalist_instruction(f"hf:{paper_release_model}", "paper-release") is None


def test_solve_prompts_the_released_format_with_the_question_alone(paper_release_model):
    spec = f"hf:{paper_release_model}"
    result = CliRunner().invoke(app, [
        "solve", QUESTION, "--method", "implicit", "--rationalist", spec, "--rationalist-format", "paper-release",
        "--set", "search.max_steps=1", "--set", "search.max_rationale_tokens=12", "--set", "search.max_step_tokens=12",
        "--json",
    ])
    assert result.exit_code == 0, result.output
    trace = json.loads(result.output[result.output.index("{"):])
    # The reference: the same model, greedy, given a user turn that is the question and nothing else.
    model = load_model(spec, device="cpu")
    params = SamplingParams(max_new_tokens=12, stop=("\n", "<EOT>"))
    [[expected]] = model.generate([[{"role": "user", "content": QUESTION}]], params)
    assert trace["steps"][0]["rationale"] == expected.text.strip()
