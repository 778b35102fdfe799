"""Reference computations written out by hand for the tests, independent of the helpers under test."""

from __future__ import annotations

import json

import torch


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


class OwnGeneratorSampler:
    """The reference's sampling, written here: transformers' temperature and top-p warpers, softmax, then one
    ``multinomial`` per prompt per step over the prompt's n rows, from that prompt's own generator on the
    device; returns -inf except at the drawn tokens (for generate's greedy pick)."""

    def __init__(self, seeds, n: int, temperature: float, top_p: float, device) -> None:
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.n = n
        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else [])

    def __call__(self, input_ids, scores):
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        probs = torch.softmax(scores, dim=-1)
        drawn = [torch.multinomial(probs[i * self.n : (i + 1) * self.n], 1, generator=g) for i, g in enumerate(self.generators)]
        return torch.full_like(scores, float("-inf")).scatter_(1, torch.cat(drawn), 0.0)


def transformers_generate(model, prompts, params, seeds) -> list[tuple[list[int], list[float]]]:
    """transformers' ``generate`` on the left-padded prompts on the device, every row run to the end:
    (token ids, log-probs) per sample, cut after the first end-of-sequence token or stop string."""
    from transformers import LogitsProcessorList

    encoded = [model._encode(p) for p in prompts]
    width = max(map(len, encoded))
    ids = torch.tensor([[model.pad_id] * (width - len(e)) + e for e in encoded]).repeat_interleave(params.n, 0)
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded]).repeat_interleave(params.n, 0)
    kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=False, return_dict_in_generate=True,
                  output_logits=True, pad_token_id=model.pad_id, eos_token_id=model.eos_ids,
                  temperature=None, top_p=None, top_k=None)
    if not params.greedy:
        sampler = OwnGeneratorSampler(seeds, params.n, params.temperature, params.top_p, model.device)
        kwargs["logits_processor"] = LogitsProcessorList([sampler])
    if params.stop:
        kwargs.update(stop_strings=list(params.stop), tokenizer=model.tokenizer)
    with torch.no_grad():
        out = model.model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), **kwargs)
    rows = []
    for r in range(out.sequences.shape[0]):
        tokens, logprobs = [], []
        for j, step in enumerate(out.logits):
            tok = int(out.sequences[r, width + j])
            tokens.append(tok)
            logprobs.append(float(torch.log_softmax(step[r].float(), -1)[tok]))
            if tok in model.eos_ids or any(s in model.tokenizer.decode(tokens) for s in params.stop):
                break
        rows.append((tokens, logprobs))
    return rows


def trace_without_timings(trace: dict) -> dict:
    """A trace without what may differ between runs that made the same choices: seconds, token counts
    (a prefix cache saves more or less depending on what ran before) and the scores' float noise."""
    trace = json.loads(json.dumps(trace))
    trace.pop("seconds")
    trace.pop("tokens")
    for step in trace["steps"]:
        for candidate in step["candidates"]:
            candidate.pop("score", None)
        step.pop("step_scores", None)
    trace.pop("path_score", None)
    return trace
