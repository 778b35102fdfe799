"""The `vllm` backend: vLLM's offline `LLM` engine on one or more GPUs (the optional ``vllm`` extra).

It keeps the `hf` backend's contract and semantics: prompts are tokenized here with the model's own
Hugging Face tokenizer by the same rules (`tokenization.HFTextCodec`) and handed to the engine as
``TokensPrompt`` token ids, so vLLM scores exactly the token sequences the `hf` backend scores.

* **generate**: one ``LLM.generate`` call for all prompts, one ``SamplingParams`` per prompt (``n``,
  temperature, top-p, stop strings, ``max_tokens``, ``logprobs=0`` for the sampled token's log-prob).
  With a seed, prompt *i* samples with seed ``seed + i * n`` (vLLM seeds per request, and sample *j*
  of a request with its seed + j: the same seed for every prompt would give prompts with equal text
  equal samples, and seeds spaced by 1 would give prompt i's sample j+1 to prompt i+1 as its sample
  j). vLLM V1 returns log-probs of the raw model output (before temperature), which is what
  `Completion.logprobs` means. A trailing end-of-sequence token is dropped, as the `hf` backend does.
* **sampling values vLLM refuses**: vLLM's ``SamplingParams`` raises on ``n > 1`` with temperature 0
  ("n must be 1 when using greedy sampling") and on temperatures above 2, where the `hf` backend
  accepts both. Greedy decoding is deterministic, so greedy ``n > 1`` asks the engine for one greedy
  sample and returns it ``n`` times (the `hf` backend's n greedy samples are equal too). A
  temperature above ``MAX_TEMPERATURE`` (2) is a `RationalystError` raised here, before any request
  reaches the engine. (vLLM also raises temperatures in (0, 0.01) to 0.01, with a warning.)
* **score**: each (context, continuation) becomes one prompt run with ``prompt_logprobs=0`` and
  ``max_tokens=1``; ``RequestOutput.prompt_logprobs`` has a ``None`` for the first prompt token and
  then, per token, a dict ``token_id -> Logprob`` that always holds the prompt's own token.

Version floor: vLLM 0.8.0 (the ``vllm`` extra asks for ``vllm>=0.8.0``). It is the first release that
serves prompt log-probs with prefix caching enabled: vLLM 0.7.x's V1 engine refused such a request
("Prefix caching with prompt logprobs not yet supported on VLLM V1", vllm-project/vllm#13414), and
vllm-project/vllm#13949, merged on main by 2025-03-08 (after 0.7.3 of 2025-02-20), made the request
bypass the cache; 0.8.0 (2025-03-18) is the first release after it, and the first with V1 as default.
Known open issue (vllm-project/vllm#42019, 2026): with prefix caching on, prompt log-probs have been
reported to change with the order of requests in a batch. `VLLMModel.load` leaves the engine's
``enable_prefix_caching`` at vLLM's default (on); scoring requests never read the cache anyway.

Cost: vLLM V1 does not serve prompt log-probs from its prefix cache; a request that asks for them
recomputes its whole prefill. Scoring K continuations of one context therefore costs K full passes
over the context (the `hf` backend runs the context once). All pairs of a `score_many` call go to the
engine in one ``generate`` call, so its scheduler packs them into large batches; that recovers most of
the throughput on a GPU, and batching more requests per call amortizes it further.

The request building and result conversion are plain functions (`sampling_kwargs`, `score_kwargs`,
`tokens_prompt`, `completion_from_output`, `score_from_prompt_logprobs`), tested against vLLM's real
types where vLLM is installed and against stand-ins of the same shape elsewhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from rationalyst.errors import ModelNotFoundError, PromptTooLongError, RationalystError
from rationalyst.lm.base import (
    Completion,
    ContinuationScore,
    LanguageModel,
    Prompt,
    SamplingParams,
    ScoreRequest,
)
from rationalyst.lm.boundary import SplitSequence
from rationalyst.lm.model_location import require_model_location
from rationalyst.lm.tokenization import HFTextCodec

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the vllm backend needs vLLM and an NVIDIA GPU; install it with:\n"
    "  pip install 'rationalyst[vllm]'\n"
    "(on a machine without a GPU use the hf backend, or point the openai backend at a vLLM server)"
)


# ----------------------------------------------------------------------------- request building


MAX_TEMPERATURE = 2.0
"""vLLM's ``SamplingParams`` refuses temperatures above this."""


def check_sampling(params: SamplingParams, name: str = "vllm") -> None:
    """Raise `RationalystError` for sampling values vLLM refuses and this backend does not map."""
    if params.temperature > MAX_TEMPERATURE:
        raise RationalystError(
            f"{name}: temperature {params.temperature} is over vLLM's limit of {MAX_TEMPERATURE:g}; "
            f"use a temperature in [0, {MAX_TEMPERATURE:g}] (or the hf backend)"
        )


def sampling_kwargs(params: SamplingParams, prompt_index: int = 0) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for generating from one prompt.

    Greedy decoding asks for one sample whatever ``params.n`` (vLLM refuses ``n > 1`` at temperature
    0); `VLLMModel.generate` copies it ``n`` times.
    """
    kwargs: dict[str, Any] = {
        "n": 1 if params.greedy else params.n,
        "temperature": params.temperature,
        "top_p": 1.0 if params.greedy else params.top_p,
        "max_tokens": params.max_new_tokens,
        "stop": list(params.stop),
        "logprobs": 0,  # the sampled token's own log-prob, no alternatives
        "skip_special_tokens": True,
        "include_stop_str_in_output": False,
    }
    if params.seed is not None and not params.greedy:
        kwargs["seed"] = params.seed + prompt_index * params.n
    return kwargs


def score_kwargs() -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for scoring: prompt log-probs, one throwaway token."""
    return {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "detokenize": False}


def tokens_prompt(token_ids: Sequence[int]) -> dict[str, Any]:
    """A ``vllm.inputs.TokensPrompt`` (a TypedDict, so a plain dict of the same keys)."""
    return {"prompt_token_ids": [int(t) for t in token_ids]}


# ----------------------------------------------------------------------------- result conversion


def _logprob_of(position: Mapping[int, Any] | None, token_id: int, where: str) -> float:
    """The log-prob of ``token_id`` in one position's ``{token_id: Logprob}`` dict."""
    if position is None or token_id not in position:
        raise RationalystError(f"vLLM returned no log-prob for token {token_id} at {where}")
    entry = position[token_id]
    return float(entry.logprob if hasattr(entry, "logprob") else entry)


def completion_from_output(output: Any, end_ids: set[int]) -> Completion:
    """A `Completion` from a ``vllm.CompletionOutput`` (``text``, ``token_ids``, ``logprobs``, ...).

    vLLM keeps the end-of-sequence (or stop-token) id that finished a sequence in ``token_ids``; the
    contract leaves it out, so a trailing id in ``end_ids`` (or equal to an integer ``stop_reason``)
    is dropped when the output finished by stopping on a token rather than on a stop string.
    """
    ids = [int(t) for t in output.token_ids]
    positions = output.logprobs
    if positions is None:
        raise RationalystError("vLLM returned no sample log-probs (SamplingParams.logprobs was not set)")
    logprobs = [_logprob_of(positions[i], tok, f"generated token {i}") for i, tok in enumerate(ids)]
    reason = output.finish_reason
    if reason not in ("stop", "length"):
        raise RationalystError(f"vLLM finished a sequence with reason {reason!r}")
    stop_reason = getattr(output, "stop_reason", None)
    stopped_on_token = reason == "stop" and not isinstance(stop_reason, str)
    if stopped_on_token and ids and (ids[-1] in end_ids or ids[-1] == stop_reason):
        ids, logprobs = ids[:-1], logprobs[:-1]
    return Completion(text=output.text, token_ids=ids, logprobs=logprobs, finish_reason=reason)


def score_from_prompt_logprobs(
    prompt_logprobs: Sequence[Mapping[int, Any] | None] | None, seq: SplitSequence, tokens: list[str]
) -> ContinuationScore:
    """The continuation's `ContinuationScore` from ``RequestOutput.prompt_logprobs`` of ``seq.token_ids``.

    Entry *i* holds the log-probs predicting token *i* (entry 0, the first token, is ``None``).
    """
    if prompt_logprobs is None:
        raise RationalystError("vLLM returned no prompt log-probs (SamplingParams.prompt_logprobs was not set)")
    if len(prompt_logprobs) != len(seq.token_ids):
        raise RationalystError(
            f"vLLM returned prompt log-probs for {len(prompt_logprobs)} tokens, expected {len(seq.token_ids)}"
        )
    ids = seq.continuation_ids
    values = [
        _logprob_of(prompt_logprobs[i], seq.token_ids[i], f"prompt position {i}")
        for i in range(seq.n_context, len(seq.token_ids))
    ]
    return ContinuationScore(list(ids), values, tokens)


# ----------------------------------------------------------------------------- the backend


class VLLMModel(LanguageModel):
    """A model run by vLLM's offline engine, behind the `LanguageModel` contract.

    ``engine`` is a ``vllm.LLM``; ``vllm`` is the imported module (both injectable for tests).
    """

    def __init__(self, engine: Any, codec: HFTextCodec, *, vllm: Any, name: str = "", end_ids: set[int] | None = None):
        self.engine = engine
        self.codec = codec
        self.vllm = vllm
        self.name = name
        self.end_ids = set(end_ids or codec.eos_ids())

    @classmethod
    def load(
        cls,
        model: str,
        *,
        name: str = "",
        tokenizer: str | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
    ) -> VLLMModel:
        try:
            import vllm
        except ImportError:
            raise ModelNotFoundError(INSTALL_HINT) from None
        require_model_location(model)  # before the engine spends a minute starting on a mistyped folder
        options: dict[str, Any] = dict(
            model=model,
            tokenizer=tokenizer or model,
            dtype="bfloat16" if dtype == "fastest" else dtype,  # vLLM runs on GPUs: bfloat16 is the fastest
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
        )
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        engine = vllm.LLM(**options)
        limit = max_model_len or getattr(getattr(getattr(engine, "llm_engine", None), "model_config", None), "max_model_len", None)
        name = name or f"vllm:{model}"
        codec = HFTextCodec.from_pretrained(tokenizer or model, name=name, max_length=limit)
        return cls(engine, codec, vllm=vllm, name=name, end_ids=codec.eos_ids(_generation_eos(model)))

    def batch_dependence(self) -> str | None:
        """vLLM's kernels (split reductions, chunked prefill) depend on the batch unless its batch-invariant
        mode is on (``VLLM_BATCH_INVARIANT=1``, beta, GPUs of compute capability 8.0 or higher)."""
        if os.environ.get("VLLM_BATCH_INVARIANT") == "1":
            return None
        return "vLLM's kernels depend on the batch unless VLLM_BATCH_INVARIANT=1 is set before it starts"

    def render(self, prompt: Prompt) -> str:
        return self.codec.render(prompt)

    def split(self, context: Prompt, continuation: str) -> SplitSequence:
        return self.codec.split(context, continuation)

    def _run(self, prompts: list[dict], params: list[Any]) -> list[Any]:
        outputs = self.engine.generate([self.vllm.TokensPrompt(**p) for p in prompts], params, use_tqdm=False)
        if len(outputs) != len(prompts):
            raise RationalystError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        return list(outputs)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        return self._generate(prompts, [params] * len(prompts), [sampling_kwargs(params, i) for i in range(len(prompts))])

    def generate_seeded(
        self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int | None]
    ) -> list[list[Completion]]:
        """One engine call whatever the seeds: vLLM seeds each request's sampling on its own, so row
        ``i`` is what ``generate([prompts[i]], params)`` with ``seed = seeds[i]`` samples alone."""
        kwargs = [sampling_kwargs(params.model_copy(update={"seed": seed}), 0) for seed in seeds]
        return self._generate(prompts, [params] * len(prompts), kwargs)

    def generate_mixed(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Completion]]:
        """One engine call: vLLM takes a `SamplingParams` per request, so the rationales and the candidates
        of a batched search round are scheduled together."""
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        return self._generate(prompts, list(params), [sampling_kwargs(p, 0) for p in params])

    def _generate(
        self, prompts: Sequence[Prompt], params: Sequence[SamplingParams], kwargs: list[dict[str, Any]]
    ) -> list[list[Completion]]:
        if not prompts:
            return []
        for p in dict.fromkeys(params):
            check_sampling(p, self.name)
        encoded = [self.codec.encode(p) for p in prompts]
        limit = self.codec.max_length
        for ids, p in zip(encoded, params):
            if limit is not None and len(ids) + p.max_new_tokens > limit:
                raise PromptTooLongError(
                    f"{self.name}: prompt of {len(ids)} tokens + {p.max_new_tokens} new tokens "
                    f"is over the model's limit of {limit}"
                )
        sampling = [self.vllm.SamplingParams(**k) for k in kwargs]
        outputs = self._run([tokens_prompt(ids) for ids in encoded], sampling)
        results = []
        for out, wanted in zip(outputs, params):
            ordered = sorted(out.outputs, key=lambda o: getattr(o, "index", 0))
            completions = [completion_from_output(o, self.end_ids) for o in ordered]
            if wanted.greedy and wanted.n > 1:
                if len(completions) != 1:
                    raise RationalystError(f"vLLM returned {len(completions)} greedy samples, expected 1")
                (c,) = completions  # greedy decoding: n equal samples, each its own lists
                completions = [replace(c, token_ids=list(c.token_ids), logprobs=list(c.logprobs)) for _ in range(wanted.n)]
            results.append(completions)
        return results

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[list[ContinuationScore]]:
        seqs = [[self.codec.split(r.context, c) for c in r.continuations] for r in requests]
        flat = [s for group in seqs for s in group]
        if not flat:
            return [[] for _ in requests]
        params = self.vllm.SamplingParams(**score_kwargs())
        outputs = self._run([tokens_prompt(s.token_ids) for s in flat], [params] * len(flat))
        scores = iter(
            score_from_prompt_logprobs(out.prompt_logprobs, s, self.codec.token_strings(s.continuation_ids))
            for s, out in zip(flat, outputs)
        )
        return [[next(scores) for _ in group] for group in seqs]


def _generation_eos(model: str) -> Any:
    """The end-of-sequence id(s) of the model's generation config, if it has one (e.g. Llama-3's eot)."""
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(model).eos_token_id
    except (OSError, ValueError):
        return None
