"""Reference computations written out by hand for the tests, independent of the helpers under test."""

from __future__ import annotations


def rationale_insertion(preceding: str, rationale: str, following: str) -> tuple[str, str, str]:
    """(context without, context with, scored text) as the method defines them, spelled out case by case.

    At a line break the break belongs to the context and the rationale is a line of its own; at spaces
    the scored text keeps its leading spaces and the rationale follows one space.
    """
    assert not preceding[-1:].isspace(), "the fixtures cut preceding right after a sentence"
    gap = following[: len(following) - len(following.lstrip())]
    if "\n" in gap:
        return preceding + gap, preceding + gap + rationale.strip() + gap, following[len(gap) :]
    return preceding, preceding + " " + rationale.strip(), following


def own_generator_sampler(generators, n: int, temperature: float, top_p: float):
    """A transformers logits processor for the hf decoding references: the rows come in groups of ``n``
    (one prompt's samples) and group *i* draws from ``generators[i]``, one ``multinomial`` per step
    over its rows, from transformers' own temperature and top-p warped distribution. It returns
    scores that are -inf except at the drawn token, so ``generate``'s greedy argmax picks it."""
    import torch
    from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

    class OwnGenerators(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if temperature != 1.0:
                scores = TemperatureLogitsWarper(temperature)(input_ids, scores)
            if top_p < 1.0:
                scores = TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1)(input_ids, scores)
            probs = torch.nn.functional.softmax(scores, dim=-1)
            drawn = torch.cat([
                torch.multinomial(probs[i * n : (i + 1) * n], num_samples=1, generator=g) for i, g in enumerate(generators)
            ])
            return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)

    return OwnGenerators()
