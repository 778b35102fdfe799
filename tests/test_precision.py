"""`dtype` names: what each means on which hardware (rationalyst.lm.precision)."""

from __future__ import annotations

import pytest
import torch

from rationalyst.errors import RationalystError
from rationalyst.lm import precision
from rationalyst.lm.precision import resolve_dtype
from rationalyst.lm.registry import ModelConfig
from rationalyst.preflight import _dtype_bytes

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_fastest_is_bfloat16_only_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve_dtype("fastest", CPU) == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("fastest", CUDA) == torch.bfloat16
    # auto never depends on the CPU: scores stay float32 on every machine
    assert resolve_dtype("auto", CPU) == torch.float32
    assert resolve_dtype("auto", CUDA) == torch.bfloat16


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((7, 0), torch.float16), ((8, 0), torch.bfloat16), ((8, 9), torch.bfloat16)])
def test_gpus_before_ampere_get_float16_not_emulated_bfloat16(monkeypatch, capability, expected):
    """T4 (7.5) and V100 (7.0) only emulate bfloat16 (vLLM refuses it there); A100 (8.0) on compute it."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what torch answers on a T4 too
    assert resolve_dtype("auto", CUDA) == expected
    assert resolve_dtype("fastest", CUDA) == expected
    assert resolve_dtype("bfloat16", CUDA) == torch.bfloat16  # asked by name: taken literally


def test_amx_alone_counts_as_native(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precision.cpu_has_native_bf16()


def test_named_dtypes_are_taken_literally_and_unknown_ones_refused():
    assert resolve_dtype("bfloat16", CPU) == torch.bfloat16
    assert resolve_dtype("float16", CUDA) == torch.float16
    assert resolve_dtype("float32", CUDA) == torch.float32
    with pytest.raises(RationalystError, match="fastest"):
        resolve_dtype("fp8", CPU)


def test_a_config_accepts_fastest_and_the_memory_check_sizes_it(monkeypatch):
    config = ModelConfig(spec="builtin:smollm2-135m", dtype="fastest")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert _dtype_bytes(config, on_gpu=False) == 4 and _dtype_bytes(config, on_gpu=True) == 2
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert _dtype_bytes(config, on_gpu=False) == 2


@pytest.mark.parametrize("capability, expected", [
    (None, "no"), ((5, 2), "no"), ((6, 0), "fp16"), ((6, 1), "fp16"), ((7, 0), "fp16"), ((7, 5), "fp16"),
    ((8, 0), "bf16"), ((8, 9), "bf16"), ((9, 0), "bf16"),
], ids=["cpu", "5.2", "6.0", "6.1", "7.0", "7.5", "8.0", "8.9", "9.0"])
def test_training_mixes_in_what_the_gpu_computes(monkeypatch, capability, expected):
    """bf16 where the GPU computes bfloat16, fp16 before that from Pascal (T4, V100, P100), none on a CPU
    (None: no CUDA) or an older GPU. The training's own choice, switches and refusals: tests/test_train_precision.py."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: capability is not None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what torch answers on a T4 too
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert precision.training_mixed_precision(CUDA if capability else CPU) == expected
    assert precision.training_mixed_precision(CPU) == "no"  # a CPU beside any GPU


def test_a_gpu_is_described_by_name_where_torch_can_say_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert precision.describe_gpu(CUDA).endswith("compute capability 7.5")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert precision.describe_gpu(CUDA) == "Tesla T4, compute capability 7.5"
