"""The `vllm` backend's request building and result conversion.

vLLM needs a GPU and is not installed here, so the engine is a stand-in: for scoring it computes
prompt log-probs with the `hf` backend's own transformers model and returns them in vLLM's shapes
(``prompt_logprobs`` = ``[None, {token_id: Logprob}, ...]``), which checks that the backend builds the
same token sequences as the `hf` backend and reads the right entries back. `TestRealVLLMTypes` runs
the same conversions on vLLM's real classes where vLLM is importable, and is skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import get_args

import pytest
import torch

from rationalyst.errors import ModelNotFoundError, RationalystError
from rationalyst.lm import SamplingParams, ScoreRequest
from rationalyst.lm.boundary import SplitSequence
from rationalyst.lm.precision import DtypeName
from rationalyst.lm.tokenization import HFTextCodec
from rationalyst.lm.vllm import (
    VLLMModel,
    completion_from_output,
    sampling_kwargs,
    score_from_prompt_logprobs,
    score_kwargs,
    tokens_prompt,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@dataclass
class StandInLogprob:
    """Shaped like ``vllm.logprobs.Logprob``."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


def _output(token_ids, logprob_dicts, text="", finish_reason="length", stop_reason=None, index=0):
    """Shaped like ``vllm.outputs.CompletionOutput``."""
    return SimpleNamespace(index=index, text=text, token_ids=token_ids, cumulative_logprob=None,
                           logprobs=logprob_dicts, finish_reason=finish_reason, stop_reason=stop_reason)


# ----------------------------------------------------------------------------- pure functions


def test_sampling_kwargs_map_every_field():
    sampled = sampling_kwargs(SamplingParams(n=3, temperature=0.8, top_p=0.9, max_new_tokens=7, stop=("\n\n", "Q:"), seed=5), 2)
    assert sampled == {
        "n": 3, "temperature": 0.8, "top_p": 0.9, "max_tokens": 7, "stop": ["\n\n", "Q:"], "seed": 11,  # 5 + 2 * 3
        "logprobs": 0, "skip_special_tokens": True, "include_stop_str_in_output": False,
    }
    greedy = sampling_kwargs(SamplingParams(n=4, temperature=0, top_p=0.5, seed=5))
    assert greedy["temperature"] == 0 and greedy["top_p"] == 1.0 and "seed" not in greedy and greedy["n"] == 1
    assert score_kwargs() == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "detokenize": False}
    assert tokens_prompt((1, 2, 3)) == {"prompt_token_ids": [1, 2, 3]}


def test_completion_drops_the_end_token_and_reads_the_sampled_tokens_logprob():
    # Position 1 also holds a likelier alternative (as with logprobs >= 1): the sampled token's is read.
    dicts = [{11: StandInLogprob(-0.5, 1)}, {12: StandInLogprob(-2.0, 3), 99: StandInLogprob(-0.1, 1)},
             {2: StandInLogprob(-0.01, 1)}]
    c = completion_from_output(_output([11, 12, 2], dicts, "ab", "stop", None), end_ids={2})
    assert c.token_ids == [11, 12] and c.logprobs == [-0.5, -2.0] and c.finish_reason == "stop" and c.text == "ab"
    # A stop string ended it: every token stays (the last one completed the stop string).
    c = completion_from_output(_output([11, 2], dicts[:1] + dicts[2:], "a", "stop", "\n"), end_ids={2})
    assert c.token_ids == [11, 2]
    # Cut by length: nothing dropped even if the last id happens to be an end id.
    c = completion_from_output(_output([11, 2], dicts[:1] + dicts[2:], "a", "length"), end_ids={2})
    assert c.token_ids == [11, 2] and c.finish_reason == "length"
    # A stop token id (integer stop_reason) is dropped too.
    c = completion_from_output(_output([11, 50], [dicts[0], {50: StandInLogprob(-1.0)}], "a", "stop", 50), end_ids={2})
    assert c.token_ids == [11]
    with pytest.raises(RationalystError, match="no sample log-probs"):
        completion_from_output(_output([11], None), end_ids={2})
    with pytest.raises(RationalystError, match="reason 'abort'"):
        completion_from_output(_output([11], dicts[:1], finish_reason="abort"), end_ids={2})


def test_prompt_logprobs_conversion_handles_the_leading_none():
    seq = SplitSequence([5, 6, 7, 8], n_context=2)
    prompt_logprobs = [None, {6: StandInLogprob(-1.0)}, {7: StandInLogprob(-2.0), 1: StandInLogprob(-0.2)},
                       {8: StandInLogprob(-3.0)}]
    score = score_from_prompt_logprobs(prompt_logprobs, seq, ["a", "b"])
    assert score.token_ids == [7, 8] and score.logprobs == [-2.0, -3.0] and score.tokens == ["a", "b"]
    with pytest.raises(RationalystError, match="for 3 tokens, expected 4"):
        score_from_prompt_logprobs(prompt_logprobs[:3], seq, [])
    with pytest.raises(RationalystError, match="no log-prob for token 8"):
        score_from_prompt_logprobs(prompt_logprobs[:3] + [None], seq, [])
    with pytest.raises(RationalystError, match="no prompt log-probs"):
        score_from_prompt_logprobs(None, seq, [])


# ----------------------------------------------------------------------------- the backend on a stand-in engine


class HFBackedEngine:
    """A stand-in ``vllm.LLM``: prompt log-probs from a transformers model, in vLLM's shapes."""

    def __init__(self, hf_model, logprob_cls=StandInLogprob, canned=None):
        self.hf = hf_model
        self.logprob_cls = logprob_cls
        self.canned = canned
        self.calls = []

    @torch.inference_mode()
    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        if self.canned is not None:
            return self.canned(prompts, params)
        outputs = []
        for prompt, p in zip(prompts, params):
            assert p.prompt_logprobs == 0 and p.max_tokens == 1
            ids = prompt["prompt_token_ids"]
            logits = self.hf.model(input_ids=torch.tensor([ids])).logits[0].float()
            table = torch.log_softmax(logits, dim=-1)
            entries = [None]
            for i in range(1, len(ids)):
                row = table[i - 1]
                top = int(row.argmax())
                entries.append({ids[i]: self.logprob_cls(float(row[ids[i]]), 1, None),
                                top: self.logprob_cls(float(row[top]), 1, None)})
            outputs.append(SimpleNamespace(prompt_logprobs=entries, outputs=[]))
        return outputs


# ----------------------------------------------------------------------------- vLLM's signatures, recorded

# Keyword arguments of ``vllm.SamplingParams`` (its public msgspec fields), recorded from
# vllm/sampling_params.py of github.com/vllm-project/vllm at commit 00388f6573ccfcffad607b8c9ecdf341a4669ceb
# (main, 2026; the file carries no version number). Every one we send (n, temperature, top_p, seed, stop,
# max_tokens, logprobs, prompt_logprobs, detokenize, skip_special_tokens, include_stop_str_in_output)
# also exists in 0.8.0, the extra's floor.
VLLM_SAMPLING_PARAMS_FIELDS = frozenset({
    "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k",
    "min_p", "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs",
    "prompt_logprobs", "prompt_logprob_token_ids", "prompt_logprob_start", "logprob_token_ids",
    "flat_logprobs", "detokenize", "skip_special_tokens", "spaces_between_special_tokens",
    "include_stop_str_in_output", "output_kind", "stream_interval", "skip_clone", "structured_outputs",
    "logit_bias", "allowed_token_ids", "extra_args", "bad_words", "skip_reading_prefix_cache",
    "thinking_token_budget", "repetition_detection", "routed_experts_prompt_start", "trace_decode_token_ids",
})
# Keyword arguments of ``vllm.LLM.__init__``, recorded from vllm/entrypoints/llm.py at commit
# 10fdb8f0d75a3ad1122b87020f1359d3fc51f2ca; the rest of its **kwargs go to ``EngineArgs``, of whose
# fields only those this project may pass are listed (vllm/engine/arg_utils.py, stored version 001999d2).
VLLM_LLM_INIT_PARAMS = frozenset({
    "model", "runner", "convert", "tokenizer", "tokenizer_mode", "skip_tokenizer_init", "trust_remote_code",
    "allowed_local_media_path", "allowed_media_domains", "tensor_parallel_size", "dtype", "quantization",
    "revision", "tokenizer_revision", "seed", "gpu_memory_utilization", "swap_space", "cpu_offload_gb",
    "enforce_eager", "enable_return_routed_experts", "disable_custom_all_reduce", "hf_token", "hf_overrides",
    "mm_processor_kwargs", "pooler_config", "structured_outputs_config", "profiler_config", "attention_config",
    "kv_cache_memory_bytes", "compilation_config", "logits_processors",
})
VLLM_ENGINE_ARGS_USED = frozenset({"max_model_len", "enable_prefix_caching", "max_num_seqs", "block_size"})
# ``ModelDType`` of vllm/config/model.py (the same stored versions): the dtype names ``LLM(dtype=...)`` takes.
VLLM_MODEL_DTYPES = frozenset({"auto", "half", "float16", "bfloat16", "float", "float32"})


class StandInVLLMError(ValueError):
    """What vLLM raises (``VLLMValidationError`` is a ``ValueError``)."""


class StandInSamplingParams:
    """A ``vllm.SamplingParams`` that checks its kwargs as vLLM's ``__post_init__``/``_verify_args`` do."""

    def __init__(self, **kwargs):
        unknown = set(kwargs) - VLLM_SAMPLING_PARAMS_FIELDS
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword arguments {sorted(unknown)}")
        values = {"n": 1, "temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "stop": None, "seed": None,
                  "logprobs": None, "prompt_logprobs": None, "detokenize": True}
        values.update(kwargs)
        n, temperature, top_p = values["n"], values["temperature"], values["top_p"]
        if not isinstance(n, int) or n < 1:
            raise StandInVLLMError(f"n must be at least 1, got {n}.")
        if not math.isfinite(temperature) or temperature < 0.0:
            raise StandInVLLMError(f"temperature must be non-negative, got {temperature}.")
        if temperature > 2.0:
            raise StandInVLLMError(f"temperature must be in [0, 2], got {temperature}.")
        if not 0.0 < top_p <= 1.0:
            raise StandInVLLMError(f"top_p must be in (0, 1], got {top_p}.")
        if values["max_tokens"] is not None and values["max_tokens"] < 1:
            raise StandInVLLMError(f"max_tokens must be at least 1, got {values['max_tokens']}.")
        stop = values["stop"]
        values["stop"] = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
        if any(not s for s in values["stop"]):
            raise StandInVLLMError("stop cannot contain an empty string.")
        if values["stop"] and not values["detokenize"]:
            raise StandInVLLMError("stop strings are only supported when detokenize is True.")
        if temperature < 1e-5 and n > 1:
            raise StandInVLLMError(f"n must be 1 when using greedy sampling, got {n}.")
        self.__dict__.update(values)


class StandInLLM:
    """A ``vllm.LLM`` constructor that checks its kwargs against the recorded signature."""

    instances: list = []

    def __init__(self, model, **kwargs):
        unknown = set(kwargs) - VLLM_LLM_INIT_PARAMS - VLLM_ENGINE_ARGS_USED
        if unknown:
            raise TypeError(f"LLM got unexpected keyword arguments {sorted(unknown)}")
        if not 0 < kwargs.get("gpu_memory_utilization", 0.9) <= 1:
            raise StandInVLLMError("gpu_memory_utilization must be in (0, 1]")
        if kwargs.get("dtype", "auto") not in VLLM_MODEL_DTYPES:
            raise StandInVLLMError(f"dtype {kwargs['dtype']!r} is not one of {sorted(VLLM_MODEL_DTYPES)}")
        self.model, self.kwargs = model, kwargs
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=kwargs.get("max_model_len", 2048)))
        StandInLLM.instances.append(self)


def _stand_in_vllm():
    return SimpleNamespace(SamplingParams=StandInSamplingParams, LLM=StandInLLM, TokensPrompt=lambda **kw: dict(kw))


def test_the_stand_in_refuses_what_vllm_refuses():
    # So that the tests below can fail: the stand-in is as strict as vLLM's own checks.
    with pytest.raises(TypeError, match="unexpected keyword"):
        StandInSamplingParams(max_new_tokens=3)
    with pytest.raises(StandInVLLMError, match="n must be 1 when using greedy sampling"):
        StandInSamplingParams(n=2, temperature=0.0)
    with pytest.raises(StandInVLLMError, match=r"temperature must be in \[0, 2\]"):
        StandInSamplingParams(temperature=2.5)
    with pytest.raises(StandInVLLMError, match="detokenize"):
        StandInSamplingParams(stop=["x"], detokenize=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        StandInLLM("m", max_seq_len=8)
    assert StandInSamplingParams(n=2, temperature=2.0).n == 2


@pytest.mark.parametrize("params", [
    SamplingParams(n=3, temperature=0.8, top_p=0.9, max_new_tokens=7, stop=("\n\n", "Q:"), seed=5),
    SamplingParams(n=4, temperature=0, top_p=0.5, seed=5),
    SamplingParams(n=1, temperature=2.0, top_p=1.0, max_new_tokens=1),
])
def test_every_kwarg_we_build_is_one_vllm_accepts(params):
    StandInSamplingParams(**sampling_kwargs(params, 3))
    StandInSamplingParams(**score_kwargs())


CONTEXTS = [
    "Question: Tom has 3 apples and buys 2 more. How many apples does he have now?\nAnswer:",
    "Hello ",  # the trailing space joins the continuation's first token
    [{"role": "user", "content": "What is 17 + 25? Think step by step."}],
    "",  # scored after BOS
]
CONTINUATIONS = [" 5", "world and café ☺ — naïve", "\n\nFirst add the tens.", ""]


def test_scores_equal_the_hf_backend(default_model):
    codec = HFTextCodec(default_model.tokenizer, name="vllm:test", max_length=default_model.max_length)
    engine = HFBackedEngine(default_model)
    model = VLLMModel(engine, codec, vllm=_stand_in_vllm(), name="vllm:test")
    requests = [ScoreRequest(c, CONTINUATIONS) for c in CONTEXTS]
    got = model.score_many(requests)
    assert len(engine.calls) == 1  # every pair in one engine call, for the scheduler to batch
    for request, scores in zip(requests, got):
        want = default_model.score(request.context, request.continuations)
        for g, w in zip(scores, want):
            assert g.token_ids == w.token_ids and g.tokens == w.tokens
            assert max((abs(a - b) for a, b in zip(g.logprobs, w.logprobs)), default=0.0) < 1e-4
    assert got[0][-1].logprobs == [] and math.isclose(got[0][0].sum, default_model.score(CONTEXTS[0], [" 5"])[0].sum, abs_tol=1e-4)


def test_batch_dependence_is_declared_unless_vllm_runs_batch_invariant(default_model, monkeypatch):
    codec = HFTextCodec(default_model.tokenizer, name="vllm:test", max_length=default_model.max_length)
    model = VLLMModel(HFBackedEngine(default_model), codec, vllm=_stand_in_vllm(), name="vllm:test")
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    assert "VLLM_BATCH_INVARIANT=1" in model.batch_dependence()
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "1")
    assert model.batch_dependence() is None


def test_generate_sends_hf_token_ids_and_per_prompt_seeds(default_model):
    codec = HFTextCodec(default_model.tokenizer, name="vllm:test")
    eos = default_model.tokenizer.eos_token_id

    def canned(prompts, params):
        return [SimpleNamespace(prompt_logprobs=None, outputs=[
            _output([40, eos], [{40: StandInLogprob(-0.3)}, {eos: StandInLogprob(-0.2)}], f"p{i}s{j}", "stop", None, j)
            for j in reversed(range(p.n))]) for i, p in enumerate(params)]

    engine = HFBackedEngine(default_model, canned=canned)
    model = VLLMModel(engine, codec, vllm=_stand_in_vllm(), name="vllm:test")
    prompts = ["Once upon a time", [{"role": "user", "content": "Hi!"}]]
    results = model.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=4, seed=3))
    sent, params = engine.calls[0]
    assert [p["prompt_token_ids"] for p in sent] == [default_model._encode(p) for p in prompts]
    # vLLM seeds a request's sample j with its seed + j: prompt 1 starts after prompt 0's two samples.
    assert [p.seed for p in params] == [3, 5] and all(p.n == 2 and p.max_tokens == 4 for p in params)
    assert [[c.text for c in r] for r in results] == [["p0s0", "p0s1"], ["p1s0", "p1s1"]]
    assert results[0][0].token_ids == [40] and results[0][0].logprobs == [-0.3]


def test_too_long_prompts_are_refused_before_the_engine(default_model):
    codec = HFTextCodec(default_model.tokenizer, name="vllm:test", max_length=8)
    engine = HFBackedEngine(default_model)
    model = VLLMModel(engine, codec, vllm=_stand_in_vllm(), name="vllm:test")
    with pytest.raises(RationalystError, match="over the model's limit of 8"):
        model.score("one two three four five six seven", [" eight nine"])
    with pytest.raises(RationalystError, match="over the model's limit of 8"):
        model.generate(["one two three"], SamplingParams(max_new_tokens=6))
    assert engine.calls == []


def _canned_outputs(eos):
    def canned(prompts, params):
        return [SimpleNamespace(prompt_logprobs=None, outputs=[
            _output([40 + j, eos], [{40 + j: StandInLogprob(-0.3)}, {eos: StandInLogprob(-0.2)}], f"p{i}s{j}", "stop", None, j)
            for j in range(p.n)]) for i, p in enumerate(params)]
    return canned


def test_greedy_n_is_one_greedy_sample_copied(default_model):
    codec = HFTextCodec(default_model.tokenizer, name="vllm:test")
    engine = HFBackedEngine(default_model, canned=_canned_outputs(default_model.tokenizer.eos_token_id))
    model = VLLMModel(engine, codec, vllm=_stand_in_vllm(), name="vllm:test")
    results = model.generate(["Once upon a time", "Hi"], SamplingParams(n=3, temperature=0, max_new_tokens=4))
    (_, params), = engine.calls
    assert [p.n for p in params] == [1, 1] and all(p.temperature == 0 for p in params)
    assert [[c.text for c in r] for r in results] == [["p0s0"] * 3, ["p1s0"] * 3]
    assert results[0][0] == results[0][2] and results[0][0].token_ids is not results[0][1].token_ids


def test_temperature_over_two_is_refused_before_the_engine(default_model):
    codec = HFTextCodec(default_model.tokenizer, name="vllm:test")
    engine = HFBackedEngine(default_model, canned=_canned_outputs(default_model.tokenizer.eos_token_id))
    model = VLLMModel(engine, codec, vllm=_stand_in_vllm(), name="vllm:test")
    with pytest.raises(RationalystError, match=r"temperature 2.5 is over vLLM's limit of 2"):
        model.generate(["Hi"], SamplingParams(n=2, temperature=2.5))
    assert engine.calls == []
    assert len(model.generate(["Hi"], SamplingParams(n=2, temperature=2.0, max_new_tokens=2))[0]) == 2


def _local_model_folder(tmp_path):
    """A folder the backend accepts as a local model (vLLM itself is the stand-in, so no weights)."""
    (tmp_path / "config.json").write_text("{}")
    return str(tmp_path)


def test_load_passes_only_llm_kwargs_vllm_has(monkeypatch, tmp_path, default_model):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", _stand_in_vllm())
    monkeypatch.setattr(HFTextCodec, "from_pretrained",
                        classmethod(lambda cls, path, name="", max_length=None: HFTextCodec(default_model.tokenizer, name=name, max_length=max_length)))
    StandInLLM.instances.clear()
    with pytest.raises(ModelNotFoundError, match="model folder not found: /nowhere/model"):
        VLLMModel.load("/nowhere/model")  # refused in a second, before the engine starts
    assert StandInLLM.instances == []
    folder = _local_model_folder(tmp_path)
    model = VLLMModel.load(folder, tensor_parallel_size=2, gpu_memory_utilization=0.5, max_model_len=512)
    (llm,) = StandInLLM.instances
    assert llm.model == folder and llm.kwargs["max_model_len"] == 512 and llm.kwargs["tensor_parallel_size"] == 2
    assert model.codec.max_length == 512 and model.engine is llm


@pytest.mark.parametrize("dtype", get_args(DtypeName))
def test_every_dtype_a_config_accepts_is_one_vllm_takes(monkeypatch, tmp_path, default_model, dtype):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", _stand_in_vllm())
    monkeypatch.setattr(HFTextCodec, "from_pretrained",
                        classmethod(lambda cls, path, name="", max_length=None: HFTextCodec(default_model.tokenizer, name=name, max_length=max_length)))
    StandInLLM.instances.clear()
    VLLMModel.load(_local_model_folder(tmp_path), dtype=dtype)
    (llm,) = StandInLLM.instances
    assert llm.kwargs["dtype"] == ("bfloat16" if dtype == "fastest" else dtype)


def test_missing_vllm_names_the_install_command(monkeypatch):
    if HAS_VLLM:
        pytest.skip("vLLM is installed")
    from rationalyst.lm import load_model

    with pytest.raises(ModelNotFoundError, match=r"pip install 'rationalyst\[vllm\]'"):
        load_model("vllm:meta-llama/Meta-Llama-3-8B-Instruct")


# ----------------------------------------------------------------------------- vLLM's real types


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (it needs a GPU machine)")
class TestRealVLLMTypes:
    def test_sampling_params_accept_our_fields(self):
        import vllm

        p = vllm.SamplingParams(**sampling_kwargs(SamplingParams(n=2, temperature=0.7, top_p=0.9, max_new_tokens=9,
                                                                 stop=("\n",), seed=4), 1))
        assert (p.n, p.temperature, p.top_p, p.max_tokens, p.stop, p.seed, p.logprobs) == (2, 0.7, 0.9, 9, ["\n"], 6, 0)
        s = vllm.SamplingParams(**score_kwargs())
        assert s.prompt_logprobs == 0 and s.max_tokens == 1
        greedy = vllm.SamplingParams(**sampling_kwargs(SamplingParams(n=3, temperature=0)))
        assert greedy.n == 1
        # What the stand-in copies from vLLM: these are refused by the real class too.
        for bad in ({"n": 2, "temperature": 0.0}, {"temperature": 2.5}):
            with pytest.raises(ValueError):
                vllm.SamplingParams(**bad)
        with pytest.raises(TypeError):
            vllm.SamplingParams(max_new_tokens=3)
        from vllm.inputs import TokensPrompt

        assert TokensPrompt(**tokens_prompt([1, 2]))["prompt_token_ids"] == [1, 2]

    def test_conversion_of_real_logprob_and_output_objects(self):
        from vllm.logprobs import Logprob
        from vllm.outputs import CompletionOutput

        out = CompletionOutput(index=0, text="ab", token_ids=[11, 2], cumulative_logprob=-0.6,
                               logprobs=[{11: Logprob(-0.5, 1, "a")}, {2: Logprob(-0.1, 1, "")}],
                               finish_reason="stop", stop_reason=None)
        c = completion_from_output(out, end_ids={2})
        assert c.token_ids == [11] and c.logprobs == [-0.5]
        score = score_from_prompt_logprobs([None, {6: Logprob(-1.5, 2, "x")}], SplitSequence([5, 6], 1), ["x"])
        assert score.logprobs == [-1.5]

    def test_scores_equal_the_hf_backend_with_real_logprobs(self, default_model):
        from vllm.logprobs import Logprob

        codec = HFTextCodec(default_model.tokenizer, name="vllm:test")
        model = VLLMModel(HFBackedEngine(default_model, Logprob), codec, vllm=_stand_in_vllm(), name="vllm:test")
        (got,) = model.score_many([ScoreRequest(CONTEXTS[0], CONTINUATIONS[:2])])
        want = default_model.score(CONTEXTS[0], CONTINUATIONS[:2])
        for g, w in zip(got, want):
            assert g.token_ids == w.token_ids
            assert max(abs(a - b) for a, b in zip(g.logprobs, w.logprobs)) < 1e-4


def test_generate_seeded_is_one_engine_call_with_each_rows_own_seed(default_model):
    """The batched search's call: every row in one vLLM call, row i seeded as it would be alone."""
    codec = HFTextCodec(default_model.tokenizer, name="vllm:test")
    eos = default_model.tokenizer.eos_token_id

    def canned(prompts, params):
        return [SimpleNamespace(prompt_logprobs=None, outputs=[
            _output([40, eos], [{40: StandInLogprob(-0.3)}, {eos: StandInLogprob(-0.2)}], f"s{p.seed}", "stop", None, j)
            for j in range(p.n)]) for p in params]

    engine = HFBackedEngine(default_model, canned=canned)
    model = VLLMModel(engine, codec, vllm=_stand_in_vllm(), name="vllm:test")
    params = SamplingParams(n=2, temperature=0.7, max_new_tokens=4)
    batched = model.generate_seeded(["a", "b", "c"], params, [11, 5, 11])
    assert len(engine.calls) == 1 and [p.seed for p in engine.calls[0][1]] == [11, 5, 11]
    alone = model.generate(["b"], params.model_copy(update={"seed": 5}))
    assert engine.calls[-1][1][0].seed == 5 and [c.text for c in alone[0]] == [c.text for c in batched[1]]
    greedy = model.generate_seeded(["a", "b"], SamplingParams(n=3, temperature=0, max_new_tokens=4), [1, 2])
    assert all(p.n == 1 and p.seed is None for p in engine.calls[-1][1]) and [len(r) for r in greedy] == [3, 3]


def test_generate_mixed_is_one_engine_call_with_each_prompt_s_own_params(default_model):
    """The search's rationales (greedy, short) and candidates (n sampled, longer) in one vLLM call."""
    codec = HFTextCodec(default_model.tokenizer, name="vllm:test", max_length=64)
    engine = HFBackedEngine(default_model, canned=_canned_outputs(default_model.tokenizer.eos_token_id))
    model = VLLMModel(engine, codec, vllm=_stand_in_vllm(), name="vllm:test")
    rationale = SamplingParams(max_new_tokens=6, stop=("\n",))
    candidates = SamplingParams(n=3, temperature=0.7, max_new_tokens=9, stop=("\n",), seed=17)
    results = model.generate_mixed(["a", "b", "c"], [rationale, candidates, rationale.model_copy(update={"n": 2})])
    (_, sent), = engine.calls
    assert [(p.n, p.max_tokens, p.temperature, p.seed) for p in sent] == [(1, 6, 0.0, None), (3, 9, 0.7, 17), (1, 6, 0.0, None)]
    assert [[c.text for c in r] for r in results] == [["p0s0"], ["p1s0", "p1s1", "p1s2"], ["p2s0"] * 2]
    with pytest.raises(RationalystError, match="prompt of .* tokens \\+ 60 new tokens"):
        model.generate_mixed(["a", "one two three four five six seven"], [rationale, candidates.model_copy(update={"max_new_tokens": 60})])
    assert len(engine.calls) == 1
