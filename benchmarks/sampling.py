"""Drawing a sampled token on CPU: `lm.sampling.draw_one` against ``torch.multinomial``.

Both draw the same tokens from the same generator (torch's exponential race, ``argmax(p / q)``); torch
makes the ``q ~ Exp(1)`` variates one at a time, ``draw_one`` in one vectorized pass. Measured side by
side in one process:

- one draw for 3 rows over the default model's vocabulary, at the search's candidate settings
  (temperature 0.7, top-p 1.0): milliseconds each and the ratio;
- the search's candidate call on the default model (hf backend): 3 samples of up to 64 tokens for each
  of 8 prompts, seeded, once with each sampler (the decode loop's ``draw_one`` swapped for
  ``multinomial``), best of two rounds: seconds each, whether the texts are the same, and
  ``ratio: X`` (multinomial over draw_one).

    OMP_NUM_THREADS=2 python benchmarks/sampling.py [--prompts 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from rationalyst.lm import hf_decode, load_model
from rationalyst.lm.base import SamplingParams
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.sampling import draw_one

PROMPTS = [
    "Question: A baker makes {n} loaves a day and sells them at 3 dollars each. How much does she earn in a week?\nAnswer:",
    "Question: Tom has {n} marbles and gives a third of them to his sister. How many does he keep?\nAnswer:",
]


def multinomial(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(probs, 1, generator=generator)


def time_draws(vocabulary: int, repeats: int = 200) -> tuple[float, float]:
    """Milliseconds per draw of 3 rows, (draw_one, multinomial), over softmax(logits / 0.7)."""
    logits = torch.randn(3, vocabulary, generator=torch.Generator().manual_seed(0)) * 4
    probs = torch.softmax(logits / 0.7, -1)
    out = []
    for draw in (draw_one, multinomial):
        generator = torch.Generator().manual_seed(1)
        draw(probs, generator)
        start = time.perf_counter()
        for _ in range(repeats):
            draw(probs, generator)
        out.append(1000 * (time.perf_counter() - start) / repeats)
    return out[0], out[1]


def time_generation(model, prompts: list[str], rounds: int) -> dict[str, tuple[float, list[list[str]]]]:
    """Best seconds of ``rounds`` for the candidate call with each sampler, and its texts."""
    params = SamplingParams(n=3, temperature=0.7, max_new_tokens=64, stop=("\n",), seed=0, logprobs=False)
    seeds = list(range(len(prompts)))
    results: dict[str, tuple[float, list[list[str]]]] = {}
    for _ in range(rounds):
        for name, draw in (("draw_one", draw_one), ("multinomial", multinomial)):
            hf_decode.draw_one = draw
            try:
                start = time.perf_counter()
                out = model.generate_seeded(prompts, params, seeds)
                seconds = time.perf_counter() - start
            finally:
                hf_decode.draw_one = draw_one
            texts = [[c.text for c in row] for row in out]
            if name not in results or seconds < results[name][0]:
                results[name] = (seconds, texts)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_LM)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model = load_model(args.model)
    vocabulary = model.model.config.vocab_size
    ours, theirs = time_draws(vocabulary)
    print(f"one draw, 3 rows x {vocabulary:,} tokens: draw_one {ours:.2f} ms, multinomial {theirs:.2f} ms ({theirs / ours:.2f}x)")
    prompts = [PROMPTS[i % len(PROMPTS)].format(n=12 + 7 * i) for i in range(args.prompts)]
    results = time_generation(model, prompts, args.rounds)
    (fast, fast_texts), (slow, slow_texts) = results["draw_one"], results["multinomial"]
    tokens = sum(len(model.tokenizer.encode(text)) for row in fast_texts for text in row)
    print(f"candidate call, {len(prompts)} prompts x 3 samples (~{tokens} tokens): draw_one {fast:.2f} s, "
          f"multinomial {slow:.2f} s; same texts: {fast_texts == slow_texts}")
    print(f"ratio: {slow / fast:.2f}")


if __name__ == "__main__":
    main()
