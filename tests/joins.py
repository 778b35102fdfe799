"""Drive an `HFStream` by a plan: prompts joining the decode loop at given steps (for the generation tests
on CPU and on CUDA)."""

from __future__ import annotations

from rationalyst.lm import hf_decode


def run_with_joins(model, plan: dict) -> tuple[dict, dict, list[int]]:
    """``plan``: tag -> (prompt, params, step at which it joins). Returns the samples by tag, the tags live
    right after each join (by the joining tag), and the columns each trim dropped."""
    joined, trimmed, got = {}, [], {}
    trim = hf_decode.DecodeSession._trim

    def spy(session):
        before = session.attention.shape[1]
        trim(session)
        trimmed.append(before - session.attention.shape[1])

    hf_decode.DecodeSession._trim = spy
    try:
        stream = model.open_stream()
        last = max(at for *_, at in plan.values())
        for step in range(10_000):
            for tag, (prompt, params, at) in plan.items():
                if at == step:
                    stream.add([prompt], [params], [tag])
                    joined[tag] = sorted(p.tag for p in stream.session.prompts)
            if step > last and not stream.busy:
                break
            for tag, completions, seconds in stream.step():
                got[tag] = completions
                assert seconds > 0
    finally:
        hf_decode.DecodeSession._trim = trim
    return got, joined, trimmed
