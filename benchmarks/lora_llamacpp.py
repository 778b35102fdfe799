"""A trained rationalist on llama.cpp (the GGUF + its LoRA, `lm.gguf_lora`) against transformers running
the merged model in float32, the way the CPU recipes ran it.

Both roles the rationalist's weights play in a search, side by side in one process: writing rationales
(greedy, up to 48 tokens) for 1 trajectory and for 8 at once (a batched search's rationale phases
rarely coincide: mostly one or two rows decode together), and scoring (3 candidate steps after each of
8 trajectories). Prints seconds and tokens per second for each engine, how far llama.cpp's scores are
from the merged model's (mean and max per token), how many rationales came out the same, and
``ratio: X`` (transformers over llama.cpp, writing one rationale: the rationalist's case).

    OMP_NUM_THREADS=2 python benchmarks/lora_llamacpp.py --base builtin:qwen2.5-coder-0.5b \\
        --adapter runs/cpu-gsm8k/train/adapter --merged runs/cpu-gsm8k/train/merged

Without ``--adapter`` a random LoRA (r 8, A and B of standard deviation ``--scale``) is made on the base's
weights, so it runs on a fresh machine: the default model by default.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rationalyst.lm import SamplingParams, ScoreRequest, load_model
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.registry import ModelConfig, base_model_folder

TRAJECTORIES = [
    "Question: A baker makes {n} loaves a day and sells them at 3 dollars each. How much does she earn in a week?\n"
    "Answer: She makes {n} loaves a day.\n",
    "Question: Tom has {n} marbles and gives a third of them to his sister. How many does he keep?\n"
    "Answer: A third of {n} is {n} / 3.\n",
]
CANDIDATES = ["She sells them for 3 dollars each.", "So she earns 3 * {n} dollars a day.", "A week has 7 days."]


def random_adapter(base: str, folder: Path, scale: float) -> tuple[Path, Path]:
    """(adapter folder, merged model folder) of a random LoRA on ``base``'s weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = base_model_folder(base)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets))
    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * scale
    model.save_pretrained(folder / "adapter")
    model.merge_and_unload().save_pretrained(folder / "merged")
    AutoTokenizer.from_pretrained(source).save_pretrained(folder / "merged")
    return folder / "adapter", folder / "merged"


def generation_seconds(model, prompts: list[str]) -> tuple[float, int, list[str]]:
    """(seconds, tokens, texts) of one greedy rationale for each prompt, all in one call."""
    params = SamplingParams(max_new_tokens=48, temperature=0.0, stop=("\n",), logprobs=False)
    start = time.perf_counter()
    outputs = model.generate(prompts, params)
    return time.perf_counter() - start, sum(len(row[0].token_ids) for row in outputs), [row[0].text for row in outputs]


def measure(model, prompts: list[str], requests: list[ScoreRequest]) -> dict:
    generation_seconds(model, prompts[:1])  # warm-up
    one = generation_seconds(model, prompts[:1])
    batch = generation_seconds(model, prompts)
    start = time.perf_counter()
    scores = model.score_many(requests)
    scoring = time.perf_counter() - start
    return {"one": one, "batch": batch, "scoring": scoring, "scores": scores,
            "scored": sum(len(s.token_ids) for row in scores for s in row)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=DEFAULT_LM, help="The GGUF the adapter was trained on (builtin: or a file).")
    parser.add_argument("--adapter", help="A trained adapter folder (default: a random LoRA on --base).")
    parser.add_argument("--merged", help="Its merged transformers folder (with --adapter).")
    parser.add_argument("--scale", type=float, default=0.02)
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.adapter:
            if not args.merged:
                parser.error("--adapter needs --merged")
            adapter, merged = Path(args.adapter), Path(args.merged)
        else:
            adapter, merged = random_adapter(args.base, Path(tmp), args.scale)
        prompts = [TRAJECTORIES[i % 2].format(n=12 + 7 * i) for i in range(args.rows)]
        requests = [ScoreRequest(p, [c.format(n=12 + 7 * i) for c in CANDIDATES]) for i, p in enumerate(prompts)]
        engines = {
            "transformers (merged, float32)": load_model(ModelConfig(spec=f"hf:{merged}", batch_size=args.rows, device="cpu")),
            "llama.cpp (GGUF + LoRA)": load_model(
                ModelConfig(spec=f"llamacpp:{args.base}", lora=str(adapter), batch_size=args.rows, n_ctx=1024)
            ),
        }
        results = {name: measure(model, prompts, requests) for name, model in engines.items()}
    hf, lc = results.values()
    for name, r in results.items():
        (one, one_tokens, _), (batch, batch_tokens, _) = r["one"], r["batch"]
        print(f"{name:32s} one rationale {one:5.2f} s ({one_tokens / one:5.1f} tokens/s), {len(prompts)} at once "
              f"{batch:5.2f} s ({batch_tokens / batch:5.1f} tokens/s), scoring {r['scoring']:5.2f} s "
              f"({r['scored'] / r['scoring']:6.1f} tokens/s)")
    diffs = [abs(a - b) for x, y in zip(hf["scores"], lc["scores"]) for s, t in zip(x, y) if s.token_ids == t.token_ids
             for a, b in zip(s.logprobs, t.logprobs)]
    same = sum(a == b for a, b in zip(hf["batch"][2], lc["batch"][2]))
    print(f"scores: llama.cpp - transformers per token: mean {np.mean(diffs):.3f}, max {np.max(diffs):.3f} ({len(diffs)} tokens); "
          f"the same rationale for {same} of {len(prompts)} trajectories")
    print(f"ratio: {hf['one'][0] / lc['one'][0]:.2f}")

if __name__ == "__main__":
    main()
