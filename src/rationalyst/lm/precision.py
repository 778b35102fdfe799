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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rationalyst.errors import RationalystError

if TYPE_CHECKING:
    import torch

#: The dtype names a model config accepts.
DtypeName = Literal["auto", "fastest", "float32", "bfloat16", "float16"]


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

    return torch.cuda.get_device_capability(device) >= (8, 0)


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
