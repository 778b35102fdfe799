"""`rationalyst train-prm`: a discriminative process reward model trained by TRL's ``PRMTrainer``.

The comparison the `prm` scorer exists for: a PRM trained on human step labels (PRM800K) against the
rationalist mined from unlabeled text. Input: step records as in ``shared/benchmarks/prm800k`` (one
rated step per line: ``question``, ``meta.prefix_steps``, ``meta.step``, ``meta.rating`` 1 / 0 / -1);
neutral and unrated steps are left out, bad lines skipped and counted. Each becomes a TRL PRM row: the
question (with options, as the search shows it) and a newline as the prompt (the `prm` reader's
``prompt: plain``), the earlier steps and the
rated one as completions, the rating (1 good, -1 bad) as the last step's label; ``train_on_last_step_only``
because only that step is rated. The base is any causal LM spec (``builtin:``, ``gguf:``, ``hf:``) loaded
as a two-label token-classification model; the output folder reads back with
``prm: {spec: hf:<output>}`` (convention ``token-classification``, separator ``"\\n"``).

TRL removed ``PRMTrainer`` in 1.14: install the extra ``rationalyst[prm]`` (trl >= 1.0, < 1.14).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field

from rationalyst.config import StrictModel
from rationalyst.data.solve_prompts import format_question_text
from rationalyst.errors import RationalystError
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.registry import base_model_folder
from rationalyst.runs import atomic_write, dumps, read_json_lines

log = logging.getLogger(__name__)


class PrmTrainConfig(StrictModel):
    """Train a PRM on rated steps."""

    data: Path = Field(description="JSONL of rated steps (PRM800K's shape: question, meta.prefix_steps, meta.step, meta.rating).")
    output: Path = Field(description="Folder for the trained PRM (and its tokenizer).")
    base: str = Field(DEFAULT_LM, description="The model it starts from (builtin:, gguf: or hf:).")
    limit: int | None = Field(None, ge=1, description="Rated steps to train on (default: all).")
    max_steps: int = Field(100, ge=1, description="Optimizer steps.")
    batch_size: int = Field(4, ge=1, description="Rows per device per step.")
    learning_rate: float = Field(5e-5, gt=0, description="AdamW learning rate.")
    max_length: int = Field(512, ge=16, description="Tokens per row (prompt + steps), cut at the end.")
    seed: int = Field(0, description="Seed of the head's initialisation and the data order.")


def prm_rows(path: Path, limit: int | None = None, on_skip=None) -> list[dict[str, Any]]:
    """TRL PRM rows (``prompt``, ``completions``, ``labels``) from rated step records; neutral ones left out."""
    rows = []
    on_skip = on_skip or (lambda reason, file, line: None)
    for file, line, record in read_json_lines(path, on_skip, stage="train-prm"):
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        prefix = meta.get("prefix_steps") if meta.get("prefix_steps") is not None else []
        step, rating = meta.get("step"), meta.get("rating")
        if not isinstance(record.get("question"), str) or not isinstance(step, str) or not step.strip():
            on_skip("missing question or meta.step", file, line)
            continue
        if not isinstance(prefix, list) or not all(isinstance(s, str) for s in prefix):
            on_skip("meta.prefix_steps not a list of strings", file, line)
            continue
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int) or rating not in (-1, 0, 1)):
            on_skip("meta.rating not -1, 0, 1 or null", file, line)
            continue
        if rating in (0, None):  # neutral or unrated (PRM800K has both): no good or bad step to learn from
            continue
        steps = [s.strip() for s in prefix] + [step.strip()]
        choices = record.get("choices") if isinstance(record.get("choices"), list) else None
        prompt = format_question_text(record["question"], choices) + "\n"  # as the search asks the prm role
        rows.append({"prompt": prompt, "completions": steps,
                     "labels": [True] * (len(steps) - 1) + [rating == 1]})
        if limit and len(rows) == limit:
            break
    return rows


def run(config: PrmTrainConfig) -> dict[str, Any]:
    """Train and save the PRM; returns the summary written beside it (``summary.json``)."""
    try:
        from trl.experimental.prm import PRMConfig, PRMTrainer
    except ImportError:
        raise RationalystError(
            "train-prm needs TRL's PRMTrainer (removed in trl 1.14): pip install 'rationalyst[prm]'"
        ) from None
    import datasets
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    skipped: dict[str, int] = {}

    def skip(reason: str, file: Any = None, line: Any = None) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    rows = prm_rows(config.data, config.limit, skip)
    if not rows:
        raise RationalystError(f"{config.data}: no step rated 1 or -1 to train a PRM on")
    folder = base_model_folder(config.base)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForTokenClassification.from_pretrained(folder, num_labels=2, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = PRMConfig(
        output_dir=str(config.output / "checkpoints"), max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
        max_length=config.max_length, train_on_last_step_only=True, step_separator="\n", seed=config.seed,
        save_strategy="no", report_to=[], logging_steps=max(1, config.max_steps // 10),
        gradient_checkpointing=False, optim="adamw_torch", use_cpu=not torch.cuda.is_available(),
        dataset_num_proc=None,
    )
    trainer = PRMTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer)
    result = trainer.train()
    config.output.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(config.output))
    tokenizer.save_pretrained(str(config.output))
    summary = {
        "rows": len(rows), "good": sum(r["labels"][-1] for r in rows), "skipped": skipped, "base": config.base,
        "max_steps": config.max_steps, "training_loss": round(float(result.training_loss), 6),
        "trl_convention": {"convention": "token-classification", "separator": "\n", "prompt": "plain"},
    }
    atomic_write(config.output / "summary.json", dumps(summary))
    return summary
