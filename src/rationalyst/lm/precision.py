"""Which floating-point type a model's weights get, by name and by hardware.

bfloat16 halves memory traffic and is what GPUs run LLMs in, but on a CPU it is fast only where the
CPU computes it natively (AVX512-BF16 or AMX). Elsewhere torch emulates it in float32 and every op
pays a conversion: on 2 cores without AVX512-BF16 (measured 2026-11-26, SmolLM2-135M) generating 8x48
tokens took 5.1 s in bfloat16 against 3.1 s in float32, a 8x256 prefill 9.7 s against 2.6 s, and a
LoRA step of the 0.5B Qwen 43 s under bf16 autocast against 14 s in float32. Hence ``fastest``:
bfloat16 where the hardware has it, float32 where it does not. ``auto`` stays float32 on every CPU,
so scores do not change with the machine. On a GPU both mean bfloat16 where it computes it natively
(compute capability 8.0 on: A100, L4, H100, RTX 30xx on) and float16 on older ones (T4, V100), where
torch only emulates bfloat16 and vLLM refuses it. (torch is imported inside the functions: configs name a
dtype without loading torch.)

Training mixes precisions by the same line (`training_mixed_precision`): bf16 autocast on GPUs that
compute bfloat16, fp16 autocast with a gradient scaler on those before (compute capability 6.0 to 7.x:
P100, V100, T4), where the alternative is float32 at several times the cost, and none on CPUs (the
43 s against 14 s above) and older GPUs. float16's range is narrow, so fp16 mixed precision scales the
loss, and the scaler refuses float16 gradients: what is trained stays float32 there (the train stage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rationalyst.errors import RationalystError

if TYPE_CHECKING:
    import torch

#: The dtype names a model config accepts.
DtypeName = Literal["auto", "fastest", "float32", "bfloat16", "float16"]
#: Mixed precision for training: autocast to bfloat16, to float16 (with a gradient scaler), or none.
MixedPrecision = Literal["bf16", "fp16", "no"]
#: The first compute capability that trains in fp16 unasked (Pascal). It pays most from 7.0 (V100, T4:
#: tensor cores); its speed on 6.1 (P40, GTX 10xx), whose float16 arithmetic is slow, was not measured.
FP16_CAPABILITY = (6, 0)


def cpu_has_native_bf16() -> bool:
    """True where this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles)."""
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def gpu_has_native_bf16(device: torch.device | None = None) -> bool:
    """True where this CUDA GPU computes bfloat16 in hardware (compute capability 8.0 or later).
    ``torch.cuda.is_bf16_supported()`` also answers True where torch merely emulates it."""
    import torch

    return capability_has_native_bf16(torch.cuda.get_device_capability(device))


def capability_has_native_bf16(capability: tuple[int, int]) -> bool:
    """True for a GPU of this compute capability that computes bfloat16 in hardware (8.0 on)."""
    return tuple(capability) >= (8, 0)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype a config's ``dtype`` name means on ``device``.

    auto and fastest on CUDA: bfloat16 where the GPU has it natively, else float16. On a CPU auto is
    float32, fastest bfloat16 where the CPU has it natively, else float32. Any other name is taken
    literally.
    """
    import torch

    if device.type == "cuda" and dtype in ("auto", "fastest"):
        return torch.bfloat16 if gpu_has_native_bf16(device) else torch.float16
    if dtype == "auto":
        return torch.float32
    if dtype == "fastest":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise RationalystError(f"unknown dtype {dtype!r}: use auto, fastest, float32, bfloat16 or float16") from None


def training_mixed_precision(device: torch.device) -> MixedPrecision:
    """The mixed precision a training on ``device`` uses unless its config says otherwise: bf16 on a GPU
    that computes bfloat16 natively (8.0 on), fp16 on one before it from 6.0 (T4, V100, P100), none on
    a CPU and on older GPUs."""
    if device.type != "cuda":
        return "no"
    import torch

    return mixed_precision_for(torch.cuda.get_device_capability(device))


def mixed_precision_for(capability: tuple[int, int] | None) -> MixedPrecision:
    """`training_mixed_precision` for a GPU of this compute capability (None: a CPU), wherever it is
    asked: `rationalyst check` plans for a machine it is not on."""
    if capability is None:
        return "no"
    if capability_has_native_bf16(capability):
        return "bf16"
    return "fp16" if tuple(capability) >= FP16_CAPABILITY else "no"


def describe_capability(capability: tuple[int, int] | None) -> str:
    """``compute capability 7.5`` (or ``compute capability unknown``), for messages."""
    return "compute capability unknown" if capability is None else f"compute capability {capability[0]}.{capability[1]}"


def describe_gpu(device: torch.device | None = None) -> str:
    """The GPU's name and compute capability, for messages: ``Tesla T4, compute capability 7.5``."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    try:
        name = torch.cuda.get_device_name(device)
    except (AssertionError, RuntimeError):  # a faked capability on a torch without CUDA
        return describe_capability((major, minor))
    return f"{name}, {describe_capability((major, minor))}"
