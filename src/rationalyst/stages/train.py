"""Stage 4: train the rationalist on the kept rationales (METHOD.md, Stage 4).

Supervised fine-tuning. For each kept record the user turn is a short instruction (the packaged
``rationalyst/prompts/train/instruction.txt``, or ``instruction_file``) followed by the record's
``preceding`` text, and the assistant turn is its ``rationale``, both in the base model's own chat
template. The loss covers the rationale's tokens and the end-of-turn token(s) the template writes
after an assistant message (``<|im_end|>`` for SmolLM2, ``<|eot_id|>`` for Llama-3); every other
label is -100. When a sequence is over ``max_length`` the *start of the preceding text* is cut (whole
tokens, on the left), so the rationale always survives whole; the authors' code truncated on the
right and lost rationales. A record whose rationale cannot fit even with an empty context is dropped
and counted.

Records are split into train and dev by document (``doc_id``, seeded), so no document's text is on
both sides. Training uses the plain transformers `Trainer` with our own tokenization and collator:
LoRA through PEFT by default (fits a CPU), full fine-tuning with ``full_finetune: true``; mixed
precision (``bf16``, ``fp16``; see Precision below) and gradient checkpointing are switches for GPUs.
Checkpoints go to ``<output>/checkpoints``; a run that was killed resumes from the last one when
started again with the same output, and one that finished is not redone when started again with the
same config and records (``summary.json`` holds their fingerprint).

Output layout::

    <output>/config.yaml         the config of the run
    <output>/instruction.txt     the instruction used in the user turn, also in merged/ and adapter/,
                                 where Stage 5 reads it (empty: the paper-release profile, text alone)
    <output>/split.json          train/dev doc_ids and counts (records used, dropped, truncated)
    <output>/checkpoints/        Trainer checkpoints (checkpoint-<step>/), for resuming
    <output>/adapter/            the LoRA adapter (PEFT safetensors), LoRA runs only
    <output>/merged/             the full model in safetensors + tokenizer (LoRA merged in), loadable
                                 as ``load_model("hf:<output>/merged")``
    <output>/metrics.jsonl       one JSON object per logging/eval step (step, loss / eval_loss, ...)
    <output>/loss.png            train and dev loss curves
    <output>/summary.json        losses and the dev log-likelihood of the rationales before/after

CPU, the embedded default model::

    python -m rationalyst.stages.train --help
    python -m rationalyst.stages.train input=runs/filter output=runs/train max_steps=50

The paper's setting (Llama-3-8B-Instruct, full fine-tune, 2 GPUs; see the recipe for the numbers)::

    accelerate launch --config_file recipes/accelerate-fsdp.yaml \\
        -m rationalyst.stages.train recipes/paper-train-llama3-8b.yaml input=runs/filter output=runs/train
    accelerate launch --config_file recipes/accelerate-deepspeed-zero3.yaml \\
        -m rationalyst.stages.train recipes/paper-train-llama3-8b.yaml input=runs/filter output=runs/train

(DeepSpeed needs ``pip install deepspeed``; both accelerate configs assume 2 processes on one machine.)

Precision (`training_precision`, decided before anything is loaded). Left unset, ``bf16`` and ``fp16``
follow the GPU (`rationalyst.lm.precision.training_mixed_precision`): bf16 mixed precision on compute
capability 8.0 on (A100, L4, H100), fp16 mixed precision with a gradient scaler on 6.0 to 7.x (T4,
V100, P100), float32 on a CPU. A switch set false takes its kind away (both false: float32
everywhere); one set true is that kind, and bf16 asked of a GPU before Ampere (which only emulates
bfloat16) or fp16 asked of a CPU (where accelerate would silently not autocast) is refused at once.
The weights: ``base.dtype: auto`` loads float32 master weights, except that a LoRA training in fp16
loads the frozen base in float16 (half the memory; peft keeps the adapter float32). What is trained
under fp16 must be float32, as the scaler refuses float16 gradients ("Attempting to unscale FP16
gradients"): a full fine-tune in fp16 with ``base.dtype`` float16 or bfloat16 is refused. A T4 user
gets fp16 with nothing set; ``fp16: false`` trains in float32 there. Under ``accelerate launch`` the
train config decides too (`launcher_mixed_precision`): the shipped configs' bf16 becomes fp16 on a V100.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from rationalyst.config import StrictModel, config_hash, load_config
from rationalyst.data.rationale_text import (
    INSTRUCTION_FILE,
    RationalistFormat,
    instruction_for,
    load_instruction,
    rationalist_messages,
)
from rationalyst.runs import read_json_lines
from rationalyst.errors import InputError, RationalystError
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.memory import release_memory
from rationalyst.lm.precision import MixedPrecision
from rationalyst.lm.registry import ModelConfig, base_model_folder
from rationalyst.stages.training_data import (  # noqa: F401 - IGNORE_INDEX re-exported for callers
    IGNORE_INDEX,
    ChatEncoder,
    Example,
    ExampleDataset,
    PadCollator,
    encode_records,
)

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
#: The `resume_key` (config and records) of the training the checkpoints belong to, written when it starts.
STARTED_FILE = "started.json"
DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSettings(StrictModel):
    """LoRA adapter settings (PEFT)."""

    r: int = Field(16, ge=1, description="Rank of the adapter matrices.")
    alpha: float = Field(32, gt=0, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES), description="Module names that get an adapter."
    )


class TrainConfig(StrictModel):
    """`python -m rationalyst.stages.train`: fine-tune the rationalist on the kept rationales."""

    input: Path = Field(description="The filter stage's run directory, or a JSONL file of its records.")
    output: Path = Field(description="Output folder: checkpoints, adapter, merged model, metrics.")
    base: ModelConfig = Field(
        default_factory=lambda: ModelConfig(spec=DEFAULT_LM),
        description="Base model: builtin:<name>, gguf:<file> or hf:<hub id or folder>.",
    )
    full_finetune: bool = Field(False, description="Train every weight instead of a LoRA adapter.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (unused when full_finetune).")
    instruction_file: Path | None = Field(
        None, description="Text file with the user-turn instruction (default: the packaged prompts/train/instruction.txt)."
    )
    rationalist_format: RationalistFormat = Field(
        "rationalyst",
        description="The user turn: 'rationalyst' (instruction, blank line, preceding text) or 'paper-release' "
        "(the preceding text alone, as the authors' released rationalist was trained).",
    )
    min_delta: float | None = Field(
        None,
        description="Train only on kept records whose filter delta is at least this: a stricter tau chosen "
        "after filtering (on a dev slice, say), without scoring the rationales again.",
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training records (unless max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    per_device_batch_size: int = Field(4, ge=1, description="Sequences per device per forward pass.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of the steps spent warming the lr up.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = Field(
        "cosine", description="Learning-rate schedule after the warmup."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_length: int = Field(1024, ge=16, description="Most tokens per sequence; the context is cut on the left to fit.")
    dev_fraction: float = Field(0.1, ge=0, lt=1, description="Fraction of documents (doc_ids) held out for dev.")
    train_documents_fraction: float = Field(
        1.0, gt=0, le=1,
        description="Train on this fraction of the training documents (a seeded subset; the dev split is "
        "unchanged): how the rationalist depends on the amount of mined data.",
    )
    max_dev_records: int = Field(200, ge=0, description="At most this many dev records for the before/after log-likelihood.")
    seed: int = Field(0, description="Seed for the split, the adapter init and data order.")
    bf16: bool | None = Field(
        None,
        description="bf16 mixed precision; None = on when the CUDA GPU computes bfloat16 natively (compute "
        "capability 8.0 on); true on an older GPU is refused (it only emulates bfloat16).",
    )
    fp16: bool | None = Field(
        None,
        description="fp16 mixed precision with a gradient scaler; None = on for CUDA GPUs of compute capability "
        "6.0 to 7.x (T4, V100, P100), which lack bfloat16; needs a CUDA GPU. Both false: float32.",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    save_steps: int = Field(200, ge=1, description="Save a checkpoint every this many steps.")
    save_total_limit: int | None = Field(2, ge=1, description="Checkpoints kept on disk (oldest deleted).")
    logging_steps: int = Field(10, ge=1, description="Log train loss and evaluate dev loss every this many steps.")
    eval_steps: int | None = Field(
        None, ge=1,
        description="Evaluate dev loss every this many steps instead (None: every logging_steps). On a CPU an "
        "evaluation of the dev records can cost as much as several training steps.",
    )
    dataloader_num_workers: int = Field(0, ge=0, description="Data loader worker processes.")
    overwrite: bool = Field(False, description="Ignore existing checkpoints in output and start over.")

    execution_fields = frozenset(
        {"output", "save_steps", "save_total_limit", "logging_steps", "eval_steps", "dataloader_num_workers",
         "overwrite"}
    )
    added_fields = frozenset({"train_documents_fraction", "fp16"})  # at its default, a finished training stays finished


# ============================================================================ data


def read_kept_records(path: Path, min_delta: float | None = None) -> tuple[list[dict], dict[str, int]]:
    """Kept records with text fields, from a run directory or a JSONL file; and counts of what was not used.

    With ``min_delta``, a kept record whose ``delta`` is below it is not used either (counted as
    ``below_min_delta``): the filter's decisions tightened to a larger tau.
    """
    kept, counts = [], {"not_kept": 0, "invalid": 0, "below_min_delta": 0}

    def count_invalid(reason: str, file: Path, line: int) -> None:
        counts["invalid"] += 1

    for _, _, record in read_json_lines(Path(path), count_invalid, stage="filter"):
        if not all(
            isinstance(record.get(k), str) for k in ("doc_id", "preceding", "rationale")
        ) or not record["rationale"].strip():
            counts["invalid"] += 1
            continue
        if record.get("kept") is not True:
            counts["not_kept"] += 1
            continue
        if min_delta is not None:
            delta = record.get("delta")
            if isinstance(delta, bool) or not isinstance(delta, (int, float)):
                counts["invalid"] += 1
                continue
            if delta < min_delta:
                counts["below_min_delta"] += 1
                continue
        kept.append(record)
    if not kept:
        at_least = f" with delta >= {min_delta:g}" if min_delta is not None else ""
        raise InputError(f"{path}: no kept records{at_least} to train on")
    return kept, counts


def split_by_document(records: Sequence[dict], dev_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Train and dev records; every document's records go to one side. With >1 document and a
    positive fraction, dev gets at least one document and train keeps at least one."""
    doc_ids = sorted({r["doc_id"] for r in records})
    random.Random(seed).shuffle(doc_ids)
    n_dev = round(len(doc_ids) * dev_fraction)
    if dev_fraction > 0 and len(doc_ids) > 1:
        n_dev = min(max(n_dev, 1), len(doc_ids) - 1)
    dev_docs = set(doc_ids[:n_dev])
    train = [r for r in records if r["doc_id"] not in dev_docs]
    dev = [r for r in records if r["doc_id"] in dev_docs]
    return train, dev


def subsample_documents(records: Sequence[dict], fraction: float, seed: int) -> list[dict]:
    """The records of a seeded ``fraction`` of their documents (at least one), in their order: a smaller
    mining run's training set, with every record of a chosen document kept together."""
    if fraction >= 1:
        return list(records)
    doc_ids = sorted({r["doc_id"] for r in records})
    random.Random(seed).shuffle(doc_ids)
    chosen = set(doc_ids[: max(1, round(len(doc_ids) * fraction))])
    return [r for r in records if r["doc_id"] in chosen]



# ============================================================================ model


@dataclass(frozen=True)
class TrainingPrecision:
    """How a training computes: where, which mixed precision, and the dtype the base model loads in."""

    device: Literal["cpu", "cuda"]
    mixed: MixedPrecision
    weights: str  # float32, float16 or bfloat16

    @property
    def arguments(self) -> dict[str, bool]:
        """The `TrainingArguments` that say it."""
        return {"bf16": self.mixed == "bf16", "fp16": self.mixed == "fp16", "use_cpu": self.device == "cpu"}


def training_precision(config: TrainConfig, gpu_capability: tuple[int, int] | None = None) -> TrainingPrecision:
    """The precision of this training on this machine (module docstring), or a `RationalystError` for
    one it cannot train in. Reads only the config and the GPU's compute capability: it is called first,
    so a refused config fails in seconds, before a model is downloaded, converted or loaded.

    ``gpu_capability``: decide for a GPU of that compute capability instead of this machine's
    (`rationalyst check` planning a run elsewhere); ``base.device: cpu`` still trains on the CPU."""
    import torch

    from rationalyst.lm.precision import capability_has_native_bf16, describe_capability, describe_gpu, mixed_precision_for

    if gpu_capability is not None:
        on_gpu, capability = config.base.device != "cpu", tuple(gpu_capability)
        gpu = describe_capability(capability)
    else:
        on_gpu = torch.cuda.is_available() and config.base.device != "cpu"
        capability = torch.cuda.get_device_capability(torch.device("cuda")) if on_gpu else None
        gpu = describe_gpu(torch.device("cuda")) if on_gpu else "none"
    if not on_gpu:
        capability = None
    if config.bf16 and config.fp16:
        raise RationalystError("bf16 and fp16 are both true: choose one mixed precision (or neither: float32)")
    if config.bf16:
        if on_gpu and not capability_has_native_bf16(capability):
            raise RationalystError(
                f"bf16: true, but this GPU ({gpu}) does not compute bfloat16 natively (that takes "
                "compute capability 8.0: A100, L4, H100, RTX 30xx on); torch would emulate it many times slower. "
                "Set fp16: true, or leave bf16 unset: fp16 mixed precision, which this GPU computes"
            )
        mixed: MixedPrecision = "bf16"
    elif config.fp16:
        if not on_gpu:
            raise RationalystError(
                "fp16: true needs a CUDA GPU: on a CPU accelerate does not autocast to float16 and would train "
                "in float32 without saying so. Leave fp16 unset (float32 on a CPU), or set bf16: true"
            )
        mixed = "fp16"
    else:
        mixed = mixed_precision_for(capability)
        if (mixed == "bf16" and config.bf16 is False) or (mixed == "fp16" and config.fp16 is False):
            mixed = "no"
    if config.base.dtype == "auto":
        # float32 master weights; a LoRA training in fp16 keeps only its adapter in float32 (peft upcasts it)
        weights = "float16" if mixed == "fp16" and not config.full_finetune else "float32"
    else:
        weights = _named_dtype(config.base.dtype, capability)
        if mixed == "fp16" and config.full_finetune and weights != "float32":
            raise RationalystError(
                f"full fine-tuning in fp16 mixed precision needs float32 weights, and base.dtype {config.base.dtype} "
                f"loads {weights}: the gradient scaler refuses float16 gradients "
                "('Attempting to unscale FP16 gradients'). Set base.dtype: auto (float32), or train a LoRA adapter"
            )
    return TrainingPrecision("cuda" if on_gpu else "cpu", mixed, weights)


def _named_dtype(dtype: str, capability: tuple[int, int] | None) -> str:
    """The dtype ``base.dtype`` loads in on a GPU of ``capability`` (None: the CPU), as
    `rationalyst.lm.precision.resolve_dtype` decides it, by name."""
    import torch

    from rationalyst.lm.precision import capability_has_native_bf16, resolve_dtype

    if capability is not None and dtype in ("auto", "fastest"):
        return "bfloat16" if capability_has_native_bf16(capability) else "float16"
    return str(resolve_dtype(dtype, torch.device("cpu"))).removeprefix("torch.")


def _load_tokenizer(folder: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_model(folder: str, config: TrainConfig) -> Any:
    """The base model. Called after `TrainingArguments` exist: under ``accelerate launch`` they set up
    the distributed state and DeepSpeed's config, so transformers loads with ZeRO-3's sharded init or
    FSDP's ``cpu_ram_efficient_loading`` (weights on rank 0 only) instead of a full copy per rank."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, training_precision(config).weights))


ACCUMULATION_ENV = "ACCELERATE_GRADIENT_ACCUMULATION_STEPS"


def gradient_accumulation_steps(config: TrainConfig, environ: dict[str, str] | None = None) -> int:
    """The one source of gradient accumulation: the train config. The accelerate configs leave it out
    (DeepSpeed then reads ``auto``, filled from `TrainingArguments`); a launcher that sets another
    number (``accelerate launch --gradient_accumulation_steps N`` or a config's
    ``gradient_accumulation_steps``) is refused instead of training with two different values."""
    import os

    env = os.environ if environ is None else environ
    launched = str(env.get(ACCUMULATION_ENV, "")).strip()
    if launched.isdigit() and int(launched) != config.gradient_accumulation_steps:
        raise InputError(
            f"the launcher sets gradient_accumulation_steps={launched} ({ACCUMULATION_ENV}) and the train config "
            f"{config.gradient_accumulation_steps}: set it once, in the train config (gradient_accumulation_steps=N), "
            "and drop it from the accelerate config"
        )
    return config.gradient_accumulation_steps


MIXED_PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"


def launcher_mixed_precision(precision: TrainingPrecision, environ: dict[str, str] | None = None) -> None:
    """The train config's precision against the launcher's (``accelerate launch`` puts its config's
    ``mixed_precision`` in ``ACCELERATE_MIXED_PRECISION``). `TrainingArguments` with bf16 or fp16 set
    replaces the launcher's value, so the shipped configs' bf16 becomes fp16 on a V100 (said in the
    log); but with neither set it takes the launcher's, and would autocast a training decided float32
    (``fp16: false``, a CPU, a GPU before 6.0). That conflict is refused before anything loads."""
    import os

    env = os.environ if environ is None else environ
    launched = str(env.get(MIXED_PRECISION_ENV, "")).strip().lower()
    if launched in ("", "no", precision.mixed):
        return
    if precision.mixed == "no":
        raise InputError(
            f"the launcher sets mixed_precision: {launched} ({MIXED_PRECISION_ENV}) and the train config trains "
            f"in float32 on this {precision.device} (bf16/fp16 false, or a machine without them): set mixed_precision: "
            "'no' in the accelerate config, or leave bf16 and fp16 unset in the train config"
        )
    log.info("mixed precision: the train config's %s replaces the launcher's %s (%s)", precision.mixed, launched, MIXED_PRECISION_ENV)


def _wrap_lora(model: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    # The adapter in float32 over a float16 or bfloat16 base (peft's default, said here because fp16 mixed
    # precision depends on it: the gradient scaler refuses float16 gradients).
    return get_peft_model(model, lora, autocast_adapter_dtype=True)


def _save_prompt_profile(folder: Path, instruction: str | None) -> None:
    """``instruction.txt`` beside the model: the user turn's instruction, empty for the paper-release
    profile (the text alone); Stage 5 reads it (`rationale_text.rationalist_instruction`)."""
    path = Path(folder) / INSTRUCTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(instruction + "\n" if instruction is not None else "", "utf-8")


def _warmup(ratio: float) -> dict[str, float]:
    """The warmup as a ratio on every supported transformers: ``warmup_ratio`` where it exists (4.x),
    else a float ``warmup_steps`` in [0, 1), which transformers 5 reads as a ratio (4.x reads it as a
    step count and would warm up for no step at all)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"warmup_ratio": ratio} if "warmup_ratio" in names else {"warmup_steps": ratio}


# ============================================================================ metrics


def _metrics_callback(path: Path, start_step: int):
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Appends every log (train loss, dev loss) to metrics.jsonl, on the main process."""

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and path.exists():
                # After a resume, drop lines the killed run logged past its last checkpoint.
                lines = [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]
                kept = [x for x in lines if x.get("step", 0) <= start_step]
                path.write_text("".join(json.dumps(x) + "\n" for x in kept), "utf-8")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                row = {"step": state.global_step, "epoch": state.epoch, **logs}
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")

    return MetricsCallback()


def _cadence_callback():
    from transformers import TrainerCallback

    class CadenceFromArguments(TrainerCallback):
        """Log, evaluate and save at this run's steps after a resume too: transformers keeps the steps
        stored in the checkpoint's trainer state, while here they are execution fields that a resumed
        run may change (a CPU run that evaluates too often, say)."""

        def on_train_begin(self, args, state, control, **kwargs):
            state.compute_steps(args, state.max_steps)

    return CadenceFromArguments()


def _final_dev_loss(trainer: Any) -> float:
    """The dev loss after the last step. transformers evaluates there itself when it evaluates by steps,
    so the loss is read from its log (a pass over the dev records costs as much as several training
    steps on a CPU: 107 s of a 1.5B LoRA's 24 min); evaluated here only where the log lacks it."""
    step = trainer.state.global_step
    for row in reversed(trainer.state.log_history):
        if row.get("step") == step and "eval_loss" in row:
            return row["eval_loss"]
    return trainer.evaluate()["eval_loss"]


def _free_trainer(trainer: Any) -> None:
    """Drop the references the trainer's accelerator keeps (model, optimizer, scheduler, data loaders)
    and the trainer's own, so their GPU memory can be returned."""
    trainer.accelerator.free_memory()
    for name in ("model", "model_wrapped", "optimizer", "lr_scheduler", "deepspeed"):
        if hasattr(trainer, name):
            setattr(trainer, name, None)


def read_metrics(output: Path) -> list[dict]:
    path = Path(output) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]


def plot_losses(rows: Sequence[dict], path: Path) -> Path | None:
    """A small line plot of train loss and dev loss over steps."""
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    dev = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train and not dev:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), marker=".", label="train loss")
    if dev:
        ax.plot(*zip(*dev), marker="o", label="dev loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / rationale token)")
    ax.set_title("rationalist fine-tuning")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def dev_log_likelihood(spec: str, examples: Sequence[Example], instruction: str | None, device: str = "auto") -> float | None:
    """Mean over dev records of the mean per-token log-prob of the rationale given its chat-templated
    context (the context as trained, i.e. after left truncation), through the rationalyst model layer."""
    if not examples:
        return None
    from rationalyst.lm import load_model

    model = load_model(spec, device=device, batch_size=4)
    try:
        values = [
            model.score(rationalist_messages(ex.preceding, instruction), [ex.rationale])[0].mean for ex in examples
        ]
    finally:
        del model
        release_memory()
    return float(sum(values) / len(values))


# ============================================================================ run


@dataclass
class TrainResult:
    """What a training run produced."""

    output: Path
    merged: Path
    adapter: Path | None
    train_records: int
    dev_records: int
    global_step: int
    resumed_from: str | None
    first_train_loss: float | None
    last_train_loss: float | None
    dev_loss: float | None
    dev_loglik_before: float | None
    dev_loglik_after: float | None
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("output", "merged", "adapter"):
            out[k] = str(out[k]) if out[k] is not None else None
        return out


def last_checkpoint(output: Path) -> str | None:
    """The newest *complete* checkpoint under ``<output>/checkpoints``. The Trainer writes a checkpoint
    in place, trainer_state.json last, so a run killed while saving leaves a folder without a readable
    state: it is passed over (transformers' get_last_checkpoint would pick it and fail to resume)."""
    folder = Path(output) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    steps = []
    for entry in folder.iterdir():
        name, _, step = entry.name.partition("-")
        if name == "checkpoint" and step.isdigit() and entry.is_dir():
            steps.append((int(step), entry))
    for _, entry in sorted(steps, reverse=True):
        try:
            json.loads((entry / "trainer_state.json").read_text("utf-8"))
        except (OSError, ValueError):
            log.warning("skipping incomplete checkpoint %s", entry)
            continue
        return str(entry)
    return None


def run(config: TrainConfig) -> TrainResult:
    """Train the rationalist; resume from ``<output>/checkpoints`` when a checkpoint of this training
    (same config, same records) is there, and refuse one of another."""
    from transformers import Trainer, TrainingArguments, set_seed

    precision = training_precision(config)  # first: a config this machine cannot train fails at once
    launcher_mixed_precision(precision)
    output = Path(config.output)
    instruction = instruction_for(
        config.rationalist_format, load_instruction(config.instruction_file) if config.instruction_file else None
    )
    records, counts = read_kept_records(config.input, config.min_delta)
    fingerprint = training_fingerprint(config, records)
    if config.overwrite:
        remove_training(output)
    finished = finished_result(output, fingerprint)
    if finished is not None:
        log.info("%s is trained already on these records with this config: nothing to do", output)
        return finished
    key = resume_key(config, records)
    check_resumable(output, key)
    output.mkdir(parents=True, exist_ok=True)
    train_records, dev_records = split_by_document(records, config.dev_fraction, config.seed)
    train_records = subsample_documents(train_records, config.train_documents_fraction, config.seed)
    if not train_records:
        raise InputError("no training records after the train/dev split")

    set_seed(config.seed)
    folder = base_model_folder(config.base)
    tokenizer = _load_tokenizer(folder)
    encoder = ChatEncoder(tokenizer, instruction, config.max_length)
    train_examples, train_counts = encode_records(encoder, train_records)
    dev_examples, dev_counts = encode_records(encoder, dev_records)
    counts.update(
        kept=len(records),
        too_long=train_counts["too_long"] + dev_counts["too_long"],
        truncated=train_counts["truncated"] + dev_counts["truncated"],
    )
    if not train_examples:
        raise InputError(f"no training record fits in max_length={config.max_length}")
    resume = None if config.overwrite else last_checkpoint(output)

    import accelerate

    main_process = accelerate.PartialState().is_main_process
    if main_process:
        (output / STARTED_FILE).write_text(json.dumps({"resume_key": key}) + "\n", "utf-8")
        (output / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), "utf-8")
        _save_prompt_profile(output, instruction)
        split = {
            "train_doc_ids": sorted({r["doc_id"] for r in train_records}),
            "dev_doc_ids": sorted({r["doc_id"] for r in dev_records}),
            "train_examples": len(train_examples),
            "dev_examples": len(dev_examples),
            "end_of_turn": encoder.end_of_turn,
            "counts": counts,
        }
        (output / "split.json").write_text(json.dumps(split, indent=2) + "\n", "utf-8")

    # Dev log-likelihood of the rationales under the base model, once (kept across resumes).
    dev_ll_examples = dev_examples[: config.max_dev_records]
    before_file = output / "dev_loglik_before.json"
    dev_ll_before = None
    if main_process and dev_ll_examples:
        if before_file.exists():
            dev_ll_before = json.loads(before_file.read_text("utf-8"))["dev_loglik"]
        else:
            dev_ll_before = dev_log_likelihood(f"hf:{folder}", dev_ll_examples, instruction, config.base.device)
            before_file.write_text(json.dumps({"dev_loglik": dev_ll_before}) + "\n", "utf-8")
        log.info("dev log-likelihood of the rationales before training: %.4f", dev_ll_before)

    log.info("mixed precision: %s; base weights in %s, on the %s", precision.mixed, precision.weights, precision.device)
    args = TrainingArguments(
        output_dir=str(output / CHECKPOINTS_DIR),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps(config),
        **_warmup(config.warmup_ratio),
        lr_scheduler_type=config.lr_scheduler,
        weight_decay=config.weight_decay,
        **precision.arguments,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if dev_examples else "no",
        eval_steps=config.eval_steps or config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=config.dataloader_num_workers,
        disable_tqdm=True,
    )
    # The model after the arguments: they created the distributed / DeepSpeed state that loading reads.
    _ = args.device
    model = _load_model(folder, config)
    if not config.full_finetune:
        model = _wrap_lora(model, config)
    start_step = 0
    if resume:
        state = json.loads((Path(resume) / "trainer_state.json").read_text("utf-8"))
        start_step = int(state.get("global_step", 0))
        log.info("resuming from %s (step %d)", resume, start_step)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ExampleDataset(train_examples),
        eval_dataset=ExampleDataset(dev_examples) if dev_examples else None,
        data_collator=PadCollator(tokenizer.pad_token_id),
        callbacks=[_metrics_callback(output / METRICS_FILE, start_step), _cadence_callback()],
    )
    trainer.train(resume_from_checkpoint=resume)
    dev_loss = _final_dev_loss(trainer) if dev_examples else None

    merged, adapter = output / MERGED_DIR, None
    if config.full_finetune:
        trainer.save_model(str(merged))  # gathers a sharded (FSDP/ZeRO-3) model on the main process
        if main_process:
            tokenizer.save_pretrained(str(merged))
    elif main_process:
        adapter = output / ADAPTER_DIR
        trainer.model.save_pretrained(str(adapter))
        tokenizer.save_pretrained(str(adapter))
        full = trainer.model.merge_and_unload()
        full.save_pretrained(str(merged), safe_serialization=True)
        tokenizer.save_pretrained(str(merged))
        del full
    if main_process:  # Stage 5 prompts the rationalist exactly as it was trained
        for folder in (merged, adapter):
            if folder is not None:
                _save_prompt_profile(folder, instruction)
    trainer.accelerator.wait_for_everyone()

    rows = read_metrics(output)
    train_losses = [r["loss"] for r in rows if "loss" in r]
    global_step = trainer.state.global_step
    _free_trainer(trainer)
    del trainer, model
    release_memory()  # the trainer's weights, gradients and optimizer state go before the merged model loads
    dev_ll_after = None
    if main_process:
        plot_losses(rows, output / "loss.png")
        if dev_ll_examples:
            dev_ll_after = dev_log_likelihood(f"hf:{merged}", dev_ll_examples, instruction, config.base.device)
            log.info("dev log-likelihood of the rationales: before %.4f, after %.4f", dev_ll_before, dev_ll_after)
    result = TrainResult(
        output=output,
        merged=merged,
        adapter=adapter,
        train_records=len(train_examples),
        dev_records=len(dev_examples),
        global_step=global_step,
        resumed_from=resume,
        first_train_loss=train_losses[0] if train_losses else None,
        last_train_loss=train_losses[-1] if train_losses else None,
        dev_loss=dev_loss,
        dev_loglik_before=dev_ll_before,
        dev_loglik_after=dev_ll_after,
        counts=counts,
    )
    if main_process:
        summary = {**result.to_json(), "fingerprint": fingerprint}
        (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return result


def training_fingerprint(config: TrainConfig, records: list[dict]) -> str:
    """What decides the trained weights: the config's result fields and the records read (the input
    folder may hold a newer filter run than the one trained on)."""
    payload = json.dumps([config_hash(config), records], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def remove_training(output: Path) -> None:
    """Delete what a training wrote in ``output`` (``--overwrite``), and nothing else that is there."""
    import shutil

    for name in (CHECKPOINTS_DIR, ADAPTER_DIR, MERGED_DIR):
        shutil.rmtree(output / name, ignore_errors=True)
    for name in (STARTED_FILE, SUMMARY_FILE, METRICS_FILE, INSTRUCTION_FILE, "config.yaml", "split.json",
                 "dev_loglik_before.json", "loss.png"):
        (output / name).unlink(missing_ok=True)


def resume_key(config: TrainConfig, records: list[dict]) -> str:
    """`training_fingerprint` but for the training's length (``max_steps``, ``epochs``): a longer run of
    the same training resumes its checkpoints; any other change may not."""
    return training_fingerprint(config.model_copy(update={"max_steps": None, "epochs": 1.0}), records)


def check_resumable(output: Path, key: str) -> None:
    """Refuse to resume checkpoints (and the base model's dev log-likelihood) of another training: a
    changed config or changed records in the same output would otherwise continue the old run and
    be recorded as the new one."""
    if not (output / CHECKPOINTS_DIR).is_dir() and not (output / STARTED_FILE).exists():
        return
    try:
        started = json.loads((output / STARTED_FILE).read_text("utf-8")).get("resume_key")
    except (OSError, ValueError, AttributeError):
        started = None
    if started is None:
        log.warning("%s holds checkpoints of a training that recorded no fingerprint; resuming them", output)
    elif started != key:
        raise RationalystError(
            f"{output} holds a training of another config or other records; pass --overwrite to start over "
            "(only the training's own files are deleted), or choose another output"
        )


def _finished_summary(output: Path) -> dict[str, Any] | None:
    """``summary.json`` of a finished training in ``output`` whose merged model is there, or None."""
    try:
        stored = json.loads((output / SUMMARY_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or not isinstance(stored.get("merged"), str):
        return None
    return stored if (Path(stored["merged"]) / "config.json").is_file() else None


def finished_fingerprint(output: str | Path) -> str | None:
    """The `training_fingerprint` of the finished training in ``output`` (None when there is none, or its
    merged model is gone): what the pipeline compares to see that the trained model changed, without
    reading the records."""
    stored = _finished_summary(Path(output))
    return stored.get("fingerprint") if stored is not None else None


def finished_result(output: Path, fingerprint: str) -> TrainResult | None:
    """The stored result when ``output`` holds a finished training with ``fingerprint`` and its merged
    model is there; a second run then loads nothing (the final evaluation and merge take minutes)."""
    stored = _finished_summary(output)
    if stored is None or stored.pop("fingerprint", None) != fingerprint:
        return None
    adapter = stored.get("adapter")
    return TrainResult(**{**stored, "output": Path(stored["output"]), "merged": Path(stored["merged"]),
                          "adapter": Path(adapter) if adapter else None})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rationalyst.stages.train [RECIPE.yaml] [key=value ...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        print("Fields:")
        for name, f in TrainConfig.model_fields.items():
            print(f"  {name}: {f.description}")
        return 0
    path = args.pop(0) if args and "=" not in args[0] else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(TrainConfig, path, args)
        result = run(config)
    except RationalystError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
