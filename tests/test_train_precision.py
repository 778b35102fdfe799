"""Stage 4's precision on each kind of machine (`rationalyst.stages.train.training_precision`): the mixed
precision and weights dtype a training gets with the GPU's compute capability faked, what `run` hands
to `TrainingArguments` and to the model's loading, the refusals (before any model is loaded), and on
the CPU the fp16 step the choice exists for: autocast to float16 with a gradient scaler, which takes
the LoRA adapter over a float16 base and refuses a float16 full fine-tune.

The GPU itself is in tests/test_cuda.py (``test_lora_training_in_fp16_on_the_device``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rationalyst.errors import RationalystError
from rationalyst.stages import train
from rationalyst.stages.train import TrainConfig, training_precision
from tests.test_train import fixture_records

CPU = None  # no CUDA


@pytest.fixture
def gpu(monkeypatch):
    """``gpu((7, 5))``: torch answers as on a machine with one CUDA GPU of that compute capability;
    ``gpu(CPU)``: as on one without CUDA."""

    def fake(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: capability is not None)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what torch answers on a T4 too

    return fake


def _config(tmp_path: Path, **values) -> TrainConfig:
    jsonl = tmp_path / "records.jsonl"
    if not jsonl.exists():
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in fixture_records()), "utf-8")
    fields = dict(input=jsonl, output=tmp_path / "out", max_steps=2, max_length=128, dev_fraction=0.0)
    return TrainConfig.model_validate({**fields, **values})


def _settings(precision) -> tuple[str, str, str]:
    return precision.device, precision.mixed, precision.weights


# ----------------------------------------------------------------------------- the choice

#: (capability, LoRA training, full fine-tune): (device, mixed precision, base weights dtype)
BY_MACHINE = [
    (CPU, ("cpu", "no", "float32"), ("cpu", "no", "float32")),
    ((5, 2), ("cuda", "no", "float32"), ("cuda", "no", "float32")),  # Maxwell: no fast float16
    ((6, 1), ("cuda", "fp16", "float16"), ("cuda", "fp16", "float32")),  # P40, GTX 10xx
    ((7, 0), ("cuda", "fp16", "float16"), ("cuda", "fp16", "float32")),  # V100
    ((7, 5), ("cuda", "fp16", "float16"), ("cuda", "fp16", "float32")),  # T4
    ((8, 0), ("cuda", "bf16", "float32"), ("cuda", "bf16", "float32")),  # A100
    ((9, 0), ("cuda", "bf16", "float32"), ("cuda", "bf16", "float32")),  # H100
]


@pytest.mark.parametrize("capability, lora, full", BY_MACHINE, ids=["cpu", "5.2", "6.1", "7.0", "7.5", "8.0", "9.0"])
def test_unset_switches_follow_the_gpu(gpu, tmp_path, capability, lora, full):
    """fp16 before Ampere with the frozen base in float16 (the adapter is float32, test below), and
    float32 weights wherever they are trained; bf16 from 8.0 over float32 master weights; float32 on a CPU."""
    gpu(capability)
    assert _settings(training_precision(_config(tmp_path))) == lora
    assert _settings(training_precision(_config(tmp_path, full_finetune=True))) == full


AS_SET = [
    ((7, 5), {"fp16": False}, ("cuda", "no", "float32")),  # float32 on a T4, as asked
    ((7, 5), {"bf16": False}, ("cuda", "fp16", "float16")),  # not bf16: the T4 does fp16 still
    ((8, 0), {"bf16": False}, ("cuda", "no", "float32")),  # never fp16 unasked on a GPU with bf16
    ((9, 0), {"fp16": True}, ("cuda", "fp16", "float16")),  # asked for: taken where it computes
    ((8, 0), {"bf16": True, "fp16": False}, ("cuda", "bf16", "float32")),
    (CPU, {"bf16": True}, ("cpu", "bf16", "float32")),  # a CPU runs it (slowly without AVX512-BF16), as before
    ((7, 5), {"base": {"spec": "builtin:smollm2-135m", "dtype": "float32"}}, ("cuda", "fp16", "float32")),
    ((7, 5), {"base": {"spec": "builtin:smollm2-135m", "dtype": "fastest"}}, ("cuda", "fp16", "float16")),
    ((9, 0), {"base": {"spec": "builtin:smollm2-135m", "device": "cpu"}}, ("cpu", "no", "float32")),
]


@pytest.mark.parametrize("capability, values, expected", AS_SET, ids=[
    "7.5-fp16-false", "7.5-bf16-false", "8.0-bf16-false", "9.0-fp16", "8.0-bf16", "cpu-bf16", "7.5-dtype-float32",
    "7.5-dtype-fastest", "9.0-device-cpu",
])
def test_switches_and_base_dtype_as_set(gpu, tmp_path, capability, values, expected):
    gpu(capability)
    assert _settings(training_precision(_config(tmp_path, **values))) == expected


REFUSED = [
    ((7, 5), {"bf16": True}, r"bf16: true, but this GPU \(compute capability 7.5\) does not compute bfloat16"),
    ((6, 1), {"bf16": True}, r"compute capability 6.1\) does not compute bfloat16 natively"),
    (CPU, {"fp16": True}, "fp16: true needs a CUDA GPU"),
    ((9, 0), {"base": {"spec": "builtin:smollm2-135m", "device": "cpu"}, "fp16": True}, "fp16: true needs a CUDA GPU"),
    ((8, 0), {"bf16": True, "fp16": True}, "both true"),
    ((7, 5), {"full_finetune": True, "base": {"spec": "builtin:smollm2-135m", "dtype": "float16"}},
     "full fine-tuning in fp16 mixed precision needs float32 weights, and base.dtype float16 loads float16"),
    ((7, 0), {"full_finetune": True, "base": {"spec": "builtin:smollm2-135m", "dtype": "fastest"}},
     "base.dtype fastest loads float16"),
    ((9, 0), {"full_finetune": True, "fp16": True, "base": {"spec": "builtin:smollm2-135m", "dtype": "bfloat16"}},
     "base.dtype bfloat16 loads bfloat16"),
]


@pytest.mark.parametrize("capability, values, message", REFUSED, ids=[
    "7.5-bf16", "6.1-bf16", "cpu-fp16", "9.0-device-cpu-fp16", "bf16-and-fp16", "7.5-full-float16",
    "7.0-full-fastest", "9.0-full-fp16-bfloat16",
])
def test_what_cannot_train_is_refused(gpu, tmp_path, capability, values, message):
    gpu(capability)
    with pytest.raises(RationalystError, match=message):
        training_precision(_config(tmp_path, **values))


def test_the_refusal_names_the_gpu_where_torch_can(gpu, tmp_path, monkeypatch):
    gpu((7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(RationalystError, match=r"\(Tesla T4, compute capability 7.5\).*Set fp16: true, or leave"):
        training_precision(_config(tmp_path, bf16=True))


# ----------------------------------------------------------------------------- what run does with it


class LoadedAModel(Exception):
    """Raised where the training would load a model."""


class Recorded(Exception):
    """Raised where the base model's weights would be read: `run` got as far as loading them."""


def _no_model_loading(monkeypatch) -> None:
    """Every way `run` loads a model (the base's folder, the dev scorer, the weights) raises LoadedAModel."""

    def refuse(*_a, **_k):
        raise LoadedAModel

    monkeypatch.setattr(train, "base_model_folder", refuse)
    monkeypatch.setattr(train, "dev_log_likelihood", refuse)
    monkeypatch.setattr(train, "_load_model", refuse)


def _run_until_the_weights_load(monkeypatch, config: TrainConfig) -> tuple[dict, dict]:
    """`run` up to reading the weights: the keyword arguments it gives `TrainingArguments` and
    `from_pretrained`. (A fake accelerate state: the real one would look for the faked GPU.)"""
    import accelerate
    from transformers import AutoModelForCausalLM, TrainingArguments

    seen: dict[str, dict] = {}

    def arguments(self, **kwargs):
        seen["arguments"] = kwargs

    class State:
        is_main_process = True

    def from_pretrained(folder, **kwargs):
        seen["load"] = kwargs
        raise Recorded

    # The class's attributes, not the transformers module's: the first access to TrainingArguments puts a
    # new transformers module in sys.modules (transformers 5.24), from which `run` would take the real class.
    monkeypatch.setattr(TrainingArguments, "__init__", arguments)
    monkeypatch.setattr(TrainingArguments, "device", property(lambda self: torch.device("cpu")))
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(accelerate, "PartialState", State)
    with pytest.raises(Recorded):
        train.run(config)
    return seen["arguments"], seen["load"]


@pytest.mark.parametrize("capability, expected", [
    (CPU, (False, False, True, torch.float32)),
    ((6, 1), (False, True, False, torch.float16)),
    ((7, 0), (False, True, False, torch.float16)),
    ((7, 5), (False, True, False, torch.float16)),
    ((8, 0), (True, False, False, torch.float32)),
    ((9, 0), (True, False, False, torch.float32)),
], ids=["cpu", "6.1", "7.0", "7.5", "8.0", "9.0"])
def test_run_trains_in_what_the_gpu_computes(gpu, tmp_path, monkeypatch, capability, expected):
    """A LoRA training with nothing set: the TrainingArguments' bf16, fp16 and use_cpu and the dtype the
    base model loads in."""
    gpu(capability)
    arguments, load = _run_until_the_weights_load(monkeypatch, _config(tmp_path))
    assert (arguments["bf16"], arguments["fp16"], arguments["use_cpu"], load["dtype"]) == expected


def test_a_full_fine_tune_in_fp16_loads_float32_weights(gpu, tmp_path, monkeypatch):
    gpu((7, 5))
    arguments, load = _run_until_the_weights_load(monkeypatch, _config(tmp_path, full_finetune=True))
    assert arguments["fp16"] and not arguments["bf16"] and load["dtype"] == torch.float32


def test_bf16_asked_of_a_t4_fails_before_any_model_is_loaded(gpu, tmp_path, monkeypatch):
    """The refusal comes first: no model folder made, no weights read, no output written, an
    --overwrite's deletion not done."""
    gpu((7, 5))
    _no_model_loading(monkeypatch)
    config = _config(tmp_path, bf16=True, overwrite=True)
    config.output.mkdir()
    (config.output / "summary.json").write_text("{}", "utf-8")  # a training's file, which overwrite deletes
    with pytest.raises(RationalystError, match="does not compute bfloat16 natively"):
        train.run(config)
    assert [p.name for p in config.output.iterdir()] == ["summary.json"]
    gpu((8, 0))  # the same config where bf16 is computed gets past the check, to the model
    with pytest.raises(LoadedAModel):
        train.run(config)


# ----------------------------------------------------------------------------- the fp16 step, on the CPU


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A 2-layer Llama built from a config (random weights, no tokenizer): enough for a training step."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def _fp16_step(model) -> None:
    """One optimizer step as accelerate takes it under fp16 mixed precision on a GPU (autocast to float16,
    the loss scaled, the gradients unscaled before clipping), here on the CPU."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    scaler = torch.amp.GradScaler("cpu")
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.float16):
        loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # what refuses float16 gradients
    scaler.step(optimizer)
    scaler.update()


def test_lora_over_a_float16_base_takes_an_fp16_step_in_float32(gpu, tiny_folder, tmp_path):
    """The T4's LoRA training: the base loads in float16, every trainable weight (the adapter) is float32,
    and a scaled fp16 step moves the adapter and leaves the base as it was."""
    gpu((7, 5))
    config = _config(tmp_path, base={"spec": f"hf:{tiny_folder}"}, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    base = train._load_model(str(tiny_folder), config)
    assert {p.dtype for p in base.parameters()} == {torch.float16}
    model = train._wrap_lora(base, config)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert {p.dtype for p in trainable.values()} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.float16}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _fp16_step(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(trainable)
    assert {p.dtype for p in trainable.values()} == {torch.float32}


def test_a_full_fine_tune_takes_an_fp16_step_only_in_float32(gpu, tiny_folder, tmp_path):
    """What the refusal of float16 weights for a full fine-tune under fp16 is for: the scaler refuses
    their gradients. The weights the T4 gets (float32) take the step."""
    gpu((7, 5))
    config = _config(tmp_path, base={"spec": f"hf:{tiny_folder}"}, full_finetune=True)
    model = train._load_model(str(tiny_folder), config)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    before = next(model.parameters()).detach().clone()
    _fp16_step(model)
    assert not torch.equal(next(model.parameters()), before)
    from transformers import AutoModelForCausalLM

    half = AutoModelForCausalLM.from_pretrained(str(tiny_folder), dtype=torch.float16)
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        _fp16_step(half)


# ----------------------------------------------------------------------------- the launcher's mixed precision


def test_training_arguments_take_the_launcher_s_mixed_precision_unless_bf16_or_fp16_is_set(tmp_path, monkeypatch):
    """Why the check below exists, on the real TrainingArguments: with neither switch set they take
    ``accelerate launch``'s mixed_precision (a float32 training would autocast to bf16)."""
    from transformers import TrainingArguments

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]).mixed_precision == "bf16"
    assert TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], bf16=True).mixed_precision == "bf16"


@pytest.mark.parametrize("launched, ours, refused", [
    ("", "no", False), ("no", "no", False), ("bf16", "bf16", False), ("fp16", "fp16", False),
    ("bf16", "fp16", False),  # the shipped configs on a V100: TrainingArguments' fp16 replaces it
    ("bf16", "no", True), ("fp16", "no", True), ("BF16", "no", True),
])
def test_a_launcher_that_would_autocast_a_float32_training_is_refused(launched, ours, refused):
    precision = train.TrainingPrecision("cuda", ours, "float32")
    environ = {"ACCELERATE_MIXED_PRECISION": launched}
    if refused:
        with pytest.raises(RationalystError, match=rf"launcher sets mixed_precision: {launched.lower()}.*mixed_precision: 'no'"):
            train.launcher_mixed_precision(precision, environ)
    else:
        train.launcher_mixed_precision(precision, environ)


def test_fp16_false_under_a_bf16_launcher_fails_before_any_model_is_loaded(gpu, tmp_path, monkeypatch):
    gpu((7, 0))
    _no_model_loading(monkeypatch)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(RationalystError, match="launcher sets mixed_precision: bf16"):
        train.run(_config(tmp_path, fp16=False))
    with pytest.raises(LoadedAModel):  # left unset: fp16, which replaces the launcher's bf16
        train.run(_config(tmp_path))
