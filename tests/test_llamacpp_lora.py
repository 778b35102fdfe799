"""A trained LoRA run by llama.cpp (`lm.gguf_lora`) against transformers running the merged model.

The adapter is made by PEFT on the dequantized weights of a GGUF (what `rationalyst train` trains on),
with random A and B (PEFT starts B at zero, which would test nothing), saved, and merged by PEFT into
a transformers model: the reference (the benchmark's maker, benchmarks/lora_llamacpp.py, r 8, alpha 16). llama.cpp loads the GGUF with the exported LoRA; its log-probs
must agree with the merged model's as closely as the plain GGUF agrees with its dequantized copy
(tests/test_llamacpp.py's tolerances), and must not agree with the merged model without the LoRA.
The default model is ``llama`` (query and key rows permuted in the GGUF); Qwen2.5-Coder-0.5B, where
installed, is ``qwen2`` (none).

Run with ``pytest tests/test_llamacpp_lora.py -m llamacpp``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.llamacpp
pytest.importorskip("llama_cpp")

from rationalyst.errors import ModelNotFoundError, RationalystError  # noqa: E402
from rationalyst.lm import SamplingParams, ScoreRequest, load_model  # noqa: E402
from rationalyst.lm.builtin import get_builtin, installed_parts  # noqa: E402
from rationalyst.lm.registry import ModelConfig  # noqa: E402
from rationalyst.search.pool import engine_key  # noqa: E402
from tests.test_llamacpp import DECODE_TOL, HF_TOL_MAX, HF_TOL_MEAN, _full_evaluation_logits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = [
    ScoreRequest("Question: What is 6 * 7?\nAnswer:", [" 42", " 43", "\n\nThe answer is 42.", " blue"]),
    ScoreRequest("The capital of France is", [" Paris", " London", " Paris.\n\nIt is big."]),
    ScoreRequest("Tom has 3 apples. He buys 2 more. So", [" he has 5 apples.", " Tom has 6."]),
]


def make_adapter(spec: str, folder, scale: float):
    """(adapter folder, merged transformers model) of a random LoRA (r 8, alpha 16) on ``spec``'s weights:
    the benchmark's own maker (`benchmarks/lora_llamacpp.py`), its merged folder read back."""
    from transformers import AutoModelForCausalLM

    loader = importlib.util.spec_from_file_location("lora_llamacpp", ROOT / "benchmarks" / "lora_llamacpp.py")
    benchmark = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(benchmark)
    adapter, merged = benchmark.random_adapter(spec, folder, scale)
    return adapter, AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()


def merged_logprobs(model, tokens: list[int], n_context: int) -> list[float]:
    """Log-probs of ``tokens[n_context:]`` by one plain forward pass of the merged model."""
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].double()
    logprobs = torch.log_softmax(logits, -1)
    return [float(logprobs[i - 1, tokens[i]]) for i in range(n_context, len(tokens))]


def differences(lc, merged) -> list[float]:
    """|llama.cpp - merged| per continuation token, on the token ids llama.cpp scored."""
    diffs = []
    for request, scores in zip(REQUESTS, lc.score_many(REQUESTS)):
        for continuation, score in zip(request.continuations, scores):
            sequence = lc.split(request.context, continuation)
            assert list(sequence.token_ids[sequence.n_context :]) == list(score.token_ids)
            reference = merged_logprobs(merged, list(sequence.token_ids), sequence.n_context)
            diffs.extend(np.abs(np.asarray(score.logprobs) - np.asarray(reference)))
    return diffs


#: The random A and B's standard deviation per model: large enough that llama.cpp without the LoRA is far
#: from the merged model, small enough to stay a perturbation. At 0.05 Qwen's 0.5B turns chaotic (its
#: wider layers add more), and the two engines' roundings grow apart with it (max 4.96, mean 1.39
#: against 0.24 / 0.045 at 0.01 and 0.44 / 0.056 at 0.02; the unmodified GGUF 0.12 / 0.036).
SCALES = {"builtin:smollm2-135m": 0.05, "builtin:qwen2.5-coder-0.5b": 0.02}


@pytest.fixture(scope="module", params=list(SCALES))
def case(request, tmp_path_factory):
    spec = request.param
    info = get_builtin(spec.removeprefix("builtin:"))
    if any(part is None for part in installed_parts(info)):
        pytest.skip(f"{spec} is not installed: {info.install_command}")
    folder = tmp_path_factory.mktemp("lora")
    adapter, merged = make_adapter(spec, folder, SCALES[spec])
    with_lora = load_model(ModelConfig(spec=f"llamacpp:{spec}", lora=str(adapter), n_ctx=512, batch_size=4))
    plain = load_model(f"llamacpp:{spec}", n_ctx=512)
    return spec, adapter, merged, with_lora, plain


def test_llama_cpp_with_the_lora_scores_as_the_merged_model(case):
    _, _, merged, with_lora, plain = case
    ours = differences(with_lora, merged)
    assert len(ours) >= 20
    assert len(with_lora._scoring.slots) > 1  # the requests' contexts differ: the LoRA is on every scoring context
    assert max(ours) <= HF_TOL_MAX and float(np.mean(ours)) <= HF_TOL_MEAN, (max(ours), float(np.mean(ours)))
    # Without the LoRA llama.cpp is far from the merged model: the agreement above is the adapter's.
    without = differences(plain, merged)
    assert float(np.mean(without)) > 4 * HF_TOL_MEAN, float(np.mean(without))


def test_generation_decodes_with_the_lora_too(case):
    """The KV streams that generate have their own llama.cpp context: the adapter must be set there as
    well. Every greedy token the streams make (no log-probs asked: nothing is re-evaluated in the
    scoring context) is the argmax of a full evaluation with the LoRA, as in tests/test_llamacpp.py."""
    _, _, _, with_lora, plain = case
    prompts = ["Question: What is 6 * 7?\nAnswer:", "Once upon a time", "The capital of France is"]
    params = SamplingParams(max_new_tokens=16, temperature=0.0, logprobs=False)
    gaps, base_gaps = [], []
    for prompt, (sample,) in zip(prompts, with_lora.generate(prompts, params)):
        ids = with_lora._encode(prompt)
        rows = _full_evaluation_logits(with_lora, ids + sample.token_ids)[len(ids) - 1 : len(ids) - 1 + len(sample.token_ids)]
        gaps += (rows.max(axis=1) - rows[np.arange(len(rows)), sample.token_ids]).tolist()
    for prompt, (sample,) in zip(prompts, plain.generate(prompts, params)):
        ids = plain._encode(prompt)
        rows = _full_evaluation_logits(with_lora, ids + sample.token_ids)[len(ids) - 1 : len(ids) - 1 + len(sample.token_ids)]
        base_gaps += (rows.max(axis=1) - rows[np.arange(len(rows)), sample.token_ids]).tolist()
    assert len(gaps) >= 24
    assert max(gaps) <= DECODE_TOL and np.mean(np.asarray(gaps) == 0.0) >= 0.9, gaps
    # The base model's greedy tokens are not the LoRA's: the check above can tell the two apart.
    assert max(base_gaps) > DECODE_TOL, base_gaps
    assert with_lora.name.endswith(f"+lora:{case[1]}")


def test_the_gguf_is_written_once_and_again_when_the_adapter_changes(case, tmp_path):
    """Keyed by the adapter's content: new weights carrying an older modification time (as ``cp -p`` or
    ``rsync -a`` leave them) and an edited ``lora_alpha`` are both converted again, and the stale file
    goes."""
    import gguf as gguf_package
    from safetensors.numpy import load_file, save_file

    from rationalyst.lm.gguf_lora import lora_gguf
    from rationalyst.lm.registry import resolve_gguf

    spec, source, *_ = case
    adapter = tmp_path / "adapter"
    shutil.copytree(source, adapter)
    base = resolve_gguf(spec)
    first = lora_gguf(adapter, base)
    stamp = first.stat().st_mtime_ns
    assert lora_gguf(adapter, base) == first and first.stat().st_mtime_ns == stamp

    def lora_b(path):
        return {t.name: np.array(t.data) for t in gguf_package.GGUFReader(path).tensors if t.name.endswith(".lora_b")}

    before = lora_b(first)
    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if "lora_B" in k)
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, weights)
    older = first.stat().st_mtime - 60
    os.utime(weights, (older, older))
    second = lora_gguf(adapter, base)
    assert second != first and not first.exists()
    after = lora_b(second)
    assert sum(not np.array_equal(before[n], after[n]) for n in before) == 1  # the one B changed
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["lora_alpha"] = config["lora_alpha"] * 4
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    third = lora_gguf(adapter, base)
    assert third != second and not second.exists()
    alpha = gguf_package.GGUFReader(third).fields["adapter.lora.alpha"]
    assert float(alpha.parts[alpha.data[0]][0]) == config["lora_alpha"]


def test_an_adapter_of_other_weights_or_kinds_is_refused(case, tmp_path):
    spec, adapter, *_ = case
    other = tmp_path / "other"
    shutil.copytree(adapter, other)
    config = json.loads((other / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (other / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(RationalystError, match="trained on 'HuggingFaceTB/SmolLM2-135M-Instruct'"):
        load_model(ModelConfig(spec=f"llamacpp:{spec}", lora=str(other)))
    config["base_model_name_or_path"] = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    config["use_dora"] = True
    (other / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(RationalystError, match="use_dora"):
        load_model(ModelConfig(spec=f"llamacpp:{spec}", lora=str(other)))
    with pytest.raises(ModelNotFoundError, match="lora not found"):
        load_model(ModelConfig(spec=f"llamacpp:{spec}", lora=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="llamacpp backend only"):  # when the recipe loads, before any model
        ModelConfig(spec=spec, lora=str(adapter))
    assert engine_key(ModelConfig(spec=f"llamacpp:{spec}", lora=str(adapter))) != engine_key(ModelConfig(spec=f"llamacpp:{spec}"))
