"""A PRM trained by TRL's PRMTrainer on PRM800K steps from the default model (`rationalyst train-prm`),
read back by the `prm` scorer exactly where TRL put its labels (tier: ``-m prm``, needs ``.[prm]``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rationalyst.lm.prm import PrmConfig, ProcessRewardModel, RewardRequest
from rationalyst.stages import prm_train

pytestmark = pytest.mark.prm
trl_prm = pytest.importorskip("trl.experimental.prm")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "prm800k" / "phase1_test_steps.jsonl"
FIXTURE = Path(__file__).parent / "fixtures" / "benchmarks" / "prm800k.jsonl"
DATA = SHARED if SHARED.exists() else FIXTURE


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("prm") / "prm"
    config = prm_train.PrmTrainConfig(data=DATA, output=out, limit=300, max_steps=12, batch_size=4, max_length=256,
                                      learning_rate=1e-4)
    return config, prm_train.run(config)


def test_rows_follow_prm800k_ratings_and_leave_out_neutral_and_bad_lines(tmp_path):
    data = tmp_path / "steps.jsonl"
    lines = [
        {"question": "Q1", "meta": {"prefix_steps": ["a"], "step": "b", "rating": 1}},
        {"question": "Q1", "meta": {"prefix_steps": ["a"], "step": "c", "rating": -1}},
        {"question": "Q2", "meta": {"prefix_steps": [], "step": "d", "rating": 0}},
        {"question": "Q3", "meta": {"prefix_steps": []}},
        {"question": "Q4", "meta": {"prefix_steps": "Add them.", "step": "e", "rating": 1}},  # not a list
        {"question": "Q5", "meta": {"prefix_steps": ["a"], "step": "f", "rating": True}},
        {"question": "Q6", "meta": {"prefix_steps": ["a"], "step": "g", "rating": None}},  # unrated: left out
    ]
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    skipped = []
    rows = prm_train.prm_rows(data, on_skip=lambda reason, file, line: skipped.append((reason, line)))
    assert rows == [
        {"prompt": "Q1\n", "completions": ["a", "b"], "labels": [True, True]},
        {"prompt": "Q1\n", "completions": ["a", "c"], "labels": [True, False]},
    ]
    assert ("missing question or meta.step", 4) in skipped and ("malformed JSON", 8) in skipped
    assert ("meta.prefix_steps not a list of strings", 5) in skipped and ("meta.rating not -1, 0, 1 or null", 6) in skipped
    assert len(skipped) == 4


def test_trained_prm_is_read_where_trl_labels_each_step(trained):
    config, summary = trained
    assert summary["rows"] == min(300, len(prm_train.prm_rows(DATA))) and 0 < summary["good"] < summary["rows"]
    assert (config.output / "config.json").exists() and (config.output / "summary.json").exists()
    prm = ProcessRewardModel.load(PrmConfig(spec=f"hf:{config.output}", batch_size=3))
    rows = prm_train.prm_rows(DATA)[-3:]
    requests = [RewardRequest(r["prompt"].removesuffix("\n"), r["completions"]) for r in rows]
    got = prm.step_rewards(requests)
    for row, rewards in zip(rows, got):
        # TRL's own tokenization of the row, labels on every step (as at evaluation).
        features = {"prompt": row["prompt"], "completions": row["completions"], "labels": row["labels"]}
        tokenized = trl_prm.PRMTrainer.tokenize_row(features, prm.tokenizer, "\n", None, None, False, True)
        positions = [i for i, label in enumerate(tokenized["labels"]) if label != -100]
        with torch.no_grad():
            logits = prm.model(input_ids=torch.tensor([tokenized["input_ids"]])).logits[0]
        want = logits[positions].softmax(-1)[:, 1].tolist()
        assert rewards == pytest.approx(want, abs=1e-5)
