"""bfloat16 against float32 on this CPU: what ``dtype: fastest`` (`lm.precision`) decides and why.

The default model is loaded in float32 and in bfloat16, alternating (best of two rounds each), and
times a greedy generation of 8 rows x 48 new tokens and one prefill forward of 8 x 256 tokens. Prints
the seconds of each, whether this CPU has native bfloat16, what ``fastest`` resolves to here, and
``ratio: X`` (bfloat16 over float32 generation time: above 1, bfloat16 is the slower).

    OMP_NUM_THREADS=2 python benchmarks/cpu_dtype.py
"""

from __future__ import annotations

import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.precision import cpu_has_native_bf16, resolve_dtype
from rationalyst.lm.registry import base_model_folder

PROMPT = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:"


def timings(folder: str, dtype: torch.dtype) -> tuple[float, float]:
    """Seconds of an 8 x 48 greedy generation and of an 8 x 256 prefill, in ``dtype``."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    batch = tokenizer([PROMPT] * 8, return_tensors="pt", padding=True)
    tokens = torch.randint(0, 1000, (8, 256), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=4, do_sample=False)  # warm-up
        start = time.perf_counter()
        model.generate(**batch, max_new_tokens=48, min_new_tokens=48, do_sample=False)
        generate = time.perf_counter() - start
        start = time.perf_counter()
        model(tokens)
        prefill = time.perf_counter() - start
    return generate, prefill


def main() -> None:
    folder = base_model_folder(DEFAULT_LM)
    best: dict[torch.dtype, tuple[float, float]] = {}
    for dtype in (torch.float32, torch.bfloat16) * 2:
        generate, prefill = timings(folder, dtype)
        old = best.get(dtype, (float("inf"), float("inf")))
        best[dtype] = (min(old[0], generate), min(old[1], prefill))
    for dtype, (generate, prefill) in best.items():
        print(f"{str(dtype):15s} generate 8x48: {generate:.2f} s   prefill 8x256: {prefill:.2f} s")
    print(f"native bfloat16 on this CPU: {cpu_has_native_bf16()}; fastest resolves to "
          f"{resolve_dtype('fastest', torch.device('cpu'))}")
    print(f"ratio: {best[torch.bfloat16][0] / best[torch.float32][0]:.2f}")


if __name__ == "__main__":
    main()
