"""The GPU paths on a GPU: the hf backend's decode loop, KV-shared and prefix-cached scoring, the batched
step search, LoRA training in the GPU's own mixed precision and in fp16 (what a T4 or V100 trains in),
and `release_memory`, on a CUDA device (marker ``cuda``, left out of the default suite).

No weights travel to a GPU machine, so the model is a tiny Llama (2 layers, hidden 64) built from a
config with seeded random weights and a real tokenizer (the default model's: the chat template is
needed). The weights are drawn 10x wider than Llama's default (initializer_range 0.2) so that attention
is sharp and the output depends on position and context: with the default, attention is nearly uniform,
and a decode loop that put every new token one position too far changed float32 log-probs by only ~0.02
(less than bf16's rounding); here it changes them by nats. Its end-of-turn row is drawn wider still, so
that rows end by end-of-sequence at different steps. Every check compares against a reference computed
without the code under test: transformers' own ``generate``, a plain full forward pass per sequence (no
batch, no padding, no cache), or the same problem run alone.

    pytest -m cuda tests/test_cuda.py                                  # on a machine with CUDA
    RATIONALYST_TEST_DEVICE=cpu pytest -m cuda tests/test_cuda.py      # the same checks on the CPU

``RATIONALYST_TEST_DEVICE``: the device under test (default ``cuda``). ``RATIONALYST_TEST_TOKENIZER``: a
folder with tokenizer.json, tokenizer_config.json and chat_template.jinja (default: the converted
files of the builtin default model). bfloat16 runs on CUDA only, or anywhere with
``RATIONALYST_TEST_BF16=1`` (how its tolerance was measured on a CPU). ``RATIONALYST_TEST_REPORT``: a file
to which the measured differences and losses are appended as JSON lines.
"""

from __future__ import annotations

import json
import math
import os
import weakref
from pathlib import Path

import pytest
import torch

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.data.rationale_text import load_instruction, rationalist_messages
from rationalyst.errors import RationalystError
from rationalyst.lm import DocumentScoreRequest, SamplingParams, ScoreRequest, load_model
from rationalyst.lm.hf import HFModel
from rationalyst.lm.memory import release_memory
from rationalyst.search.methods import solve_many
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings
from tests.joins import run_with_joins
from tests.references import trace_without_timings, transformers_generate
from tests.test_hf_scoring import CONTEXTS, DOCS, RATIONALES
from tests.test_hf_scoring import CONTINUATIONS as BASE_CONTINUATIONS

pytestmark = pytest.mark.cuda

DEVICE = os.environ.get("RATIONALYST_TEST_DEVICE", "cuda")
ON_CUDA = torch.device(DEVICE).type == "cuda"
DTYPES = ["float32"] + (["bfloat16"] if ON_CUDA or os.environ.get("RATIONALYST_TEST_BF16") == "1" else [])

#: float32: what the CPU tests hold the hf backend to (tests/test_generation.py, tests/test_hf_scoring.py).
F32_TOL = 1e-4
#: bfloat16: a log-prob is ``logit - logsumexp`` (taken in float32 here) of bf16 logits, which reach ~14 on
#: this model; bf16 keeps 8 significant bits, so a logit in [8, 16) moves in steps of 0.0625 and the same
#: logit computed through another kernel or batch shape (a cached step against a full pass, a padded
#: batch against one sequence) lands a step or so apart. Measured on this model with CPU bf16: at most
#: 0.032 (decoding) and 0.055 (scoring), and every greedy token the full pass's argmax. 0.25 (4 such steps,
#: ~5x the largest measured) leaves room for CUDA's kernels; decoding one position off moved log-probs by
#: 6 nats and greedy margins by 11.
BF16_TOL = 0.25

CHAT = [{"role": "user", "content": "Name three colours."}]
PROMPTS = [CHAT, "Count: 1, 2, 3,", "Tell me a story about a dragon who lives in a cave by the sea", "Hi"]
SEEDS = [3, 1, 4, 1]
PARAMS = [
    SamplingParams(max_new_tokens=20, stop=("ro",)),
    SamplingParams(n=3, temperature=0.9, max_new_tokens=20, stop=("ro", "ck", "an")),
    SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=12, stop=("an",)),
]
PARAM_IDS = ["greedy", "n3-sampled", "n2-top-p"]  # each also run without its stop strings


# ----------------------------------------------------------------------------- the tiny model


@pytest.fixture(scope="module", autouse=True)
def _device_present():
    """Skips the whole module without CUDA (a fixture, not an import-time skip: the default suite, which
    deselects these tests, then reports nothing about them)."""
    if ON_CUDA and not torch.cuda.is_available():
        pytest.skip(f"device under test is {DEVICE!r} but torch.cuda.is_available() is False "
                    "(set RATIONALYST_TEST_DEVICE=cpu to run these checks on the CPU)")


def _tokenizer_folder() -> tuple[Path | None, str]:
    """The tokenizer files to build the model with, or None and why not."""
    wanted = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    given = os.environ.get("RATIONALYST_TEST_TOKENIZER")
    if given:
        folder = Path(given)
        missing = [f for f in wanted if not (folder / f).is_file()]
        return (None, f"RATIONALYST_TEST_TOKENIZER={given} lacks {', '.join(missing)}") if missing else (folder, "")
    from rationalyst.lm.builtin import DEFAULT_LM
    from rationalyst.lm.registry import base_model_folder

    try:  # the default model's converted folder (converted once if it was not yet)
        folder = Path(base_model_folder(DEFAULT_LM))
    except (RationalystError, ImportError) as exc:
        return None, f"no tokenizer: set RATIONALYST_TEST_TOKENIZER, or install {DEFAULT_LM} ({exc})"
    missing = [f for f in wanted if not (folder / f).is_file()]
    return (None, f"{folder} lacks {', '.join(missing)}") if missing else (folder, "")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A 2-layer Llama with the default model's tokenizer, saved as a folder (seeded random weights)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source, why = _tokenizer_folder()
    if source is None:
        pytest.skip(why)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    assert tokenizer.chat_template and tokenizer.eos_token_id is not None
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id].normal_(0.0, 0.7)  # end of turn now and then
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def models(tiny_folder):
    """``models(dtype)``: the tiny model through the project's loader on the device under test, one per dtype."""
    loaded: dict[str, HFModel] = {}

    def get(dtype: str) -> HFModel:
        if dtype not in loaded:
            model = load_model(f"hf:{tiny_folder}", device=DEVICE, dtype=dtype, batch_size=16, prefix_cache=0)
            assert isinstance(model, HFModel) and model.device.type == torch.device(DEVICE).type
            assert next(model.model.parameters()).dtype == getattr(torch, dtype)
            loaded[dtype] = model
        return loaded[dtype]

    yield get
    loaded.clear()


def _sibling(model: HFModel, **options) -> HFModel:
    """Another HFModel over the same weights (own batch size, own prefix cache)."""
    return HFModel(model.model, model.tokenizer, name=model.name, **options)


# ----------------------------------------------------------------------------- references


def _full_pass_logits(model: HFModel, ids: list[int]) -> torch.Tensor:
    """Float logits of one unpadded sequence, one forward pass, no cache: the plain reference."""
    with torch.no_grad():
        return model.model(input_ids=torch.tensor([ids], device=model.device), use_cache=False).logits[0].float()


def _reference_score(model: HFModel, context, continuation: str) -> tuple[list[int], list[float]]:
    """The continuation's tokens and log-probs from a full pass over context + continuation."""
    seq = model.split(context, continuation)  # the joint tokenization (CPU code, tested in test_boundary)
    logprobs = torch.log_softmax(_full_pass_logits(model, seq.token_ids), dim=-1)
    targets = seq.token_ids[seq.n_context :]
    return targets, [float(logprobs[p - 1, t]) for p, t in zip(range(seq.n_context, len(seq.token_ids)), targets)]




def _record(check: str, **values) -> None:
    """Append a measurement to ``$RATIONALYST_TEST_REPORT`` (a JSON line), where it is set."""
    path = os.environ.get("RATIONALYST_TEST_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"check": check, "device": DEVICE, **values}) + "\n")


def _max_diff(a, b) -> float:
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


# ----------------------------------------------------------------------------- a. decoding


@pytest.mark.parametrize("params", PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize("prefix_cache", [0, 4], ids=["no-prefix-cache", "prefix-cache"])
def test_decoding_makes_the_tokens_transformers_generate_makes(models, params, prefix_cache):
    """float32: every sample equals transformers' generate on the device (tokens exactly, log-probs to
    1e-4) while finished prompts leave the batch; with the prefix cache, each row starts from its own
    stored prefix (`HFModel._prefill`) and still makes the same samples."""
    base = models("float32")
    model = _sibling(base, batch_size=16, prefix_cache=prefix_cache)
    if prefix_cache:
        stored = [model.render(CHAT)[:-12], "Count: 1, 2", "Tell me a story about a dragon", "H"]
        model.generate(stored, SamplingParams(max_new_tokens=1))
    reused = model.prefix_cache.reused_tokens
    plain = params.model_copy(update={"stop": ()})
    runs = [(model.generate_seeded(PROMPTS, plain, SEEDS), plain), (model.generate_seeded(PROMPTS, params, SEEDS), params)]
    if prefix_cache:
        assert model.prefix_cache.reused_tokens > reused
    worst = 0.0
    for run, p in runs:
        reference = transformers_generate(model, PROMPTS, p, SEEDS)
        samples = [c for row in run for c in row]
        assert len(samples) == len(reference) == len(PROMPTS) * p.n
        for sample, (tokens, logprobs) in zip(samples, reference):
            end = len(sample.token_ids)
            assert sample.token_ids == tokens[:end]
            worst = max(worst, _max_diff(sample.logprobs, logprobs))
            assert _max_diff(sample.logprobs, logprobs) < F32_TOL
            assert end <= len(tokens) <= end + 1  # generate's row ended there too (+ the end-of-sequence token)
            if sample.finish_reason == "length":
                assert end == len(tokens) == p.max_new_tokens
    lengths = {len(c.token_ids) for row in runs[1][0] for c in row}
    _record("f32 decoding vs transformers generate", params=PARAM_IDS[PARAMS.index(params)], prefix_cache=prefix_cache,
            max_logprob_diff=worst, lengths=sorted(lengths))
    assert len(lengths) > 1  # rows finished at different steps: they did leave the batch


def test_prompts_joining_a_running_decode_loop_match_generate_on_the_device(models):
    """float32, continuous batching (`HFStream`): prompts join the decode loop at different steps (the
    batch padded to a longer prompt, a shorter one padded to the batch) and leave when done; each
    prompt's samples equal transformers' generate for it alone on the device."""
    model = _sibling(models("float32"), batch_size=16, prefix_cache=4)
    plan = {
        "long": ("Tell me a story about a dragon who lives in a cave by the sea " * 3, SamplingParams(max_new_tokens=5), 0),
        "sampled": ("Count: 1, 2, 3,", SamplingParams(n=3, temperature=0.9, max_new_tokens=14, seed=5), 2),
        "chat": (CHAT, SamplingParams(max_new_tokens=9), 3),
        "late": ("Write a list of fruits, one per line " * 4, SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=6, seed=9), 7),
    }
    got, joined, _ = run_with_joins(model, plan)
    assert joined["sampled"] == ["long", "sampled"] and "long" not in joined["late"]
    worst = 0.0
    for tag, (prompt, params, _) in plan.items():
        reference = transformers_generate(model, [prompt], params, [params.seed])
        assert len(got[tag]) == params.n
        for sample, (tokens, logprobs) in zip(got[tag], reference):
            assert sample.token_ids == tokens[: len(sample.token_ids)]
            worst = max(worst, _max_diff(sample.logprobs, logprobs))
    _record("f32 decoding with prompts joining mid-loop vs transformers generate", max_logprob_diff=worst)
    assert worst < F32_TOL


@pytest.mark.parametrize("params", PARAMS, ids=PARAM_IDS)
def test_bf16_decoding_agrees_with_a_full_pass_over_what_it_generated(models, params):
    """bfloat16 on the device: token-for-token equality with generate is not sound (a cached step and a
    full pass round differently, and this model's top two logits are at times closer than that), so the
    decode loop's samples are checked against a bf16 full pass over prompt + sample: every log-prob to
    BF16_TOL, and every greedy token the full pass's argmax up to BF16_TOL."""
    if "bfloat16" not in DTYPES:
        pytest.skip("bfloat16 runs on CUDA (or with RATIONALYST_TEST_BF16=1)")
    model = models("bfloat16")
    rows = model.generate_seeded(PROMPTS, params, SEEDS)
    worst = 0.0
    for prompt, row in zip(PROMPTS, rows):
        assert len(row) == params.n
        prompt_ids = model._encode(prompt)
        for sample in row:
            assert 0 < len(sample.token_ids) == len(sample.logprobs) <= params.max_new_tokens
            assert all(math.isfinite(lp) and lp <= 0 for lp in sample.logprobs)
            logits = _full_pass_logits(model, prompt_ids + sample.token_ids)[len(prompt_ids) - 1 : -1]
            logprobs = torch.log_softmax(logits, -1)
            want = [float(logprobs[i, t]) for i, t in enumerate(sample.token_ids)]
            worst = max(worst, _max_diff(sample.logprobs, want))
            if params.greedy:
                margin = logits.max(-1).values - logits[torch.arange(len(sample.token_ids)), sample.token_ids]
                assert float(margin.max()) <= BF16_TOL
    _record("bf16 decoding vs full pass", params=PARAM_IDS[PARAMS.index(params)], max_logprob_diff=worst,
            tokens=sum(len(c.token_ids) for row in rows for c in row))
    assert worst < BF16_TOL


def test_rows_sample_from_their_own_seed_on_the_device(models):
    """A prompt's samples do not depend on the rest of its batch or its place in it (float32)."""
    model = _sibling(models("float32"), batch_size=16)
    prompts = ["Count: 1, 2,", "The sky is", "Once upon a time"]
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=8)
    seeds = [11, 22, 33]
    together = model.generate_seeded(prompts, params, seeds)
    for prompt, seed, row in zip(prompts, seeds, together):
        alone = model.generate([prompt], params.model_copy(update={"seed": seed}))[0]
        assert [c.token_ids for c in row] == [c.token_ids for c in alone]
    reordered = model.generate_seeded(prompts[::-1], params, seeds[::-1])
    assert [[c.token_ids for c in r] for r in reordered[::-1]] == [[c.token_ids for c in r] for r in together]
    assert len({tuple(c.token_ids) for row in together for c in row}) == 6  # seeds matter


# ----------------------------------------------------------------------------- b. scoring

CONTINUATIONS = BASE_CONTINUATIONS + [f" {i} apples and {i + 1} pears" for i in range(5)]


def _tolerance(dtype: str) -> float:
    return F32_TOL if dtype == "float32" else BF16_TOL


def _check_scores(model, context, continuations, got, tol) -> float:
    worst = 0.0
    assert len(got) == len(continuations)
    for continuation, score in zip(continuations, got):
        tokens, logprobs = _reference_score(model, context, continuation)
        assert score.token_ids == tokens
        worst = max(worst, _max_diff(score.logprobs, logprobs))
        assert all(math.isfinite(lp) for lp in score.logprobs)
    assert worst < tol, worst
    return worst


@pytest.mark.parametrize("dtype", DTYPES)
def test_shared_kv_scoring_equals_a_full_pass_per_continuation(models, dtype):
    """score_many: several requests in one batch, more continuations than the batch (chunks reuse the
    trunk's cache), an empty continuation; against one full pass per continuation."""
    model = _sibling(models(dtype), batch_size=4)
    requests = [ScoreRequest(c, CONTINUATIONS) for c in CONTEXTS]
    results = model.score_many(requests)
    worst = max(_check_scores(model, r.context, r.continuations, got, _tolerance(dtype)) for r, got in zip(requests, results))
    assert results[0][4].token_ids == [] and results[0][4].sum == 0.0
    _record("score_many vs full pass", dtype=dtype, max_logprob_diff=worst)


@pytest.mark.parametrize("dtype", DTYPES)
def test_document_scoring_equals_a_full_pass_per_pair(models, dtype):
    """score_in_documents (Stage 3): the document's own pass and the branches off its cache."""
    model = _sibling(models(dtype), batch_size=4)
    requests = []
    for doc, rationales in zip(DOCS, RATIONALES):
        cuts = [i + 1 for i, ch in enumerate(doc[:-1]) if ch == "." and doc[i + 1] in " \n"][: len(rationales)]
        pairs = []
        for k, (cut, rationale) in enumerate(zip(cuts, rationales)):
            end = cuts[k + 1] if k + 1 < len(cuts) else len(doc)
            pairs += [(doc[:cut], doc[cut:end]), (doc[:cut] + rationale, doc[cut:end])]
        requests.append(DocumentScoreRequest(doc, pairs))
    requests.append(DocumentScoreRequest(DOCS[0], [(DOCS[0][:34], DOCS[0][34:85]), (DOCS[0][:34] + " (x)", DOCS[0][34:85])]))
    results = model.score_in_documents(requests)
    worst = 0.0
    for request, scores in zip(requests, results):
        assert len(scores) == len(request.pairs)
        for (context, following), score in zip(request.pairs, scores):
            worst = max(worst, _check_scores(model, context, [following], [score], _tolerance(dtype)))
    _record("score_in_documents vs full pass", dtype=dtype, max_logprob_diff=worst)


QUESTION = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\n"
STEPS = ["He starts with 3 apples.", "He buys 5 more, so 3 + 5 = 8.", "The answer is 8."]
CANDIDATES = ["He buys 5 more, so 3 + 5 = 8.", "3 * 5 = 15 apples.", "The answer is 8."]


@pytest.mark.parametrize("dtype", DTYPES)
def test_prefix_cached_scoring_of_a_growing_trajectory_equals_full_passes(models, dtype):
    """The step search's shape: two trajectories grow one step at a time and are scored together, each
    trunk starting from its own stored prefix (different reuse lengths in one batch); every score equals
    a full pass, and the stored prefixes were used."""
    model = _sibling(models(dtype), batch_size=4, prefix_cache=4)
    other = "Question: Ann reads 4 pages a day for a week. How many pages does she read?\n"
    trajectories = [QUESTION, other]
    worst = 0.0
    for step in range(len(STEPS)):
        contexts = [trajectories[0] + "Rationale: add what he buys. ", trajectories[1] + f"Day {step + 1}. "]
        results = model.score_many([ScoreRequest(c, CANDIDATES) for c in contexts])
        for context, got in zip(contexts, results):
            worst = max(worst, _check_scores(model, context, CANDIDATES, got, _tolerance(dtype)))
        trajectories = [trajectories[0] + STEPS[step] + "\n", trajectories[1] + f"She reads {4 * (step + 1)} pages.\n"]
    alone = model.score(trajectories[0] + "So", CANDIDATES)  # a single request after the batched ones
    worst = max(worst, _check_scores(model, trajectories[0] + "So", CANDIDATES, alone, _tolerance(dtype)))
    _record("prefix-cached scoring vs full pass", dtype=dtype, max_logprob_diff=worst,
            reused_tokens=model.prefix_cache.reused_tokens)
    assert model.prefix_cache.reused_tokens > 0


# ----------------------------------------------------------------------------- c. the batched search


def _items() -> list[BenchmarkItem]:
    questions = [
        ("Which is a mammal?", ["shark", "whale", "trout", "eel"], "B"),
        ("What do plants need to make food?", ["sunlight", "sand", "noise", "plastic"], "A"),
        ("Which is a liquid at room temperature?", ["iron", "salt", "water", "wood"], "C"),
        ("Which planet is closest to the Sun?", ["Mars", "Venus", "Earth", "Mercury"], "D"),
    ]
    # Multiple choice: answers are checked by letter, with no math-verify (not on the GPU machine).
    return [
        BenchmarkItem(id=f"q{i}", benchmark="t", family="multiple_choice", question=q, choices=c, answer=a,
                      solution=None, meta={})
        for i, (q, c, a) in enumerate(questions)
    ]


def test_a_problem_s_trace_does_not_depend_on_its_batch_on_the_device(models):
    """implicit supervision, the tiny model (float32, prefix cache on) in every role: four problems one at
    a time and four in lockstep make the same samples, rationales and choices; scores agree to 1e-4.
    (bf16 is left out: its rounding depends on the batch shape, so equal choices are not promised.)"""
    model = _sibling(models("float32"), batch_size=16, prefix_cache=4)
    items = _items()
    settings = SearchSettings(n_candidates=3, max_steps=2, max_step_tokens=10, max_rationale_tokens=10,
                              max_solution_tokens=24)
    runs = {}
    for batch in (1, 4):
        runs[batch] = {i.id: t for i, t in solve_many("implicit", items, Roles.of(model), settings, 7, batch)}
    worst = 0.0
    for item in items:
        one, four = runs[1][item.id], runs[4][item.id]
        assert isinstance(one, dict) and isinstance(four, dict), (one, four)
        assert one["steps"] and all(s["candidates"] for s in one["steps"])
        assert trace_without_timings(one) == trace_without_timings(four)
        for a, b in zip(one["steps"], four["steps"]):
            pairs = [(x.get("score"), y.get("score")) for x, y in zip(a["candidates"], b["candidates"])]
            worst = max([worst] + [abs(x - y) for x, y in pairs if x is not None and y is not None])
            assert [x for x, _ in pairs] == pytest.approx([y for _, y in pairs], abs=F32_TOL)
    _record("implicit search batch 1 vs 4", max_score_diff=worst, steps=sum(len(t["steps"]) for t in runs[1].values()),
            reused_tokens=model.prefix_cache.reused_tokens)
    assert any(c.get("score") is not None for t in runs[4].values() for s in t["steps"] for c in s["candidates"])


# ----------------------------------------------------------------------------- d. training

TOPICS = [
    ("The bridge was closed for repairs.", "A closed bridge sends traffic to other routes."),
    ("Anna forgot her umbrella this morning.", "It rained later, so she had no cover."),
    ("The shop cut its prices by half.", "Lower prices bring in more buyers."),
]


def _records() -> list[dict]:
    """12 kept records over 4 documents (one goes to dev); the rationales repeat across documents."""
    records = []
    for d in range(4):
        for p, (preceding, rationale) in enumerate(TOPICS):
            records.append({
                "id": f"doc{d}:{p}", "doc_id": f"doc{d}", "source": "web", "position": p,
                "preceding": f"Story {d}. {preceding}", "rationale": rationale, "following": "Then things changed.",
                "score_without": -10.0, "score_with": -9.0, "delta": 1.0, "tau": 0.0, "kept": True,
            })
    return records


def _train_config(tiny_folder: Path, tmp_path: Path, **values):
    """20 LoRA steps of the tiny model on the device under test, with a dev split."""
    from rationalyst.stages import train

    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in _records()), "utf-8")
    return train.TrainConfig.model_validate(dict(
        input=jsonl, output=tmp_path / "out", max_steps=20, learning_rate=5e-3, per_device_batch_size=4,
        lora={"r": 8, "alpha": 16, "dropout": 0.0}, warmup_ratio=0.0, lr_scheduler="constant", max_length=128,
        dev_fraction=0.25, logging_steps=2, save_steps=10, max_dev_records=8,
        base={"spec": f"hf:{tiny_folder}", "device": DEVICE}, **values,
    ))


def test_lora_training_on_the_device(tiny_folder, tmp_path, monkeypatch):
    """The train stage on the device with its precision left unset (bf16 mixed precision on an Ampere or
    later GPU, fp16 before it, float32 on a CPU): 20 LoRA steps, finite falling loss, the forward passes
    ran on the device in that precision, and the merged model reloads there and is better on dev."""
    from rationalyst.stages import train

    config = _train_config(tiny_folder, tmp_path)
    mixed = train.training_precision(config).mixed
    assert mixed in (("bf16", "fp16") if ON_CUDA else ("no",))
    seen: set[tuple[str, torch.dtype]] = set()
    load = train._load_model

    def load_and_watch(folder, cfg):
        model = load(folder, cfg)
        probe = model.model.layers[0].self_attn.q_proj  # stays the LoRA layer's base layer
        probe.register_forward_hook(lambda module, args, output: seen.add((output.device.type, output.dtype)))
        return model

    monkeypatch.setattr(train, "_load_model", load_and_watch)
    result = train.run(config)
    rows = train.read_metrics(result.output)
    losses = [r["loss"] for r in rows if "loss" in r]
    _record("lora training", mixed_precision=mixed, losses=losses, dev_loss=result.dev_loss,
            dev_loglik_before=result.dev_loglik_before, dev_loglik_after=result.dev_loglik_after,
            forward_outputs=sorted(f"{d}:{t}" for d, t in seen))
    assert result.global_step == 20 and len(losses) >= 5
    assert all(math.isfinite(x) for x in losses + [result.dev_loss])
    assert result.last_train_loss < result.first_train_loss - 0.5, losses
    expected = (torch.device(DEVICE).type, {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[mixed])
    assert expected in seen, seen  # trained on the device, in its autocast on CUDA
    assert result.dev_loglik_after > result.dev_loglik_before  # the merged model, reloaded on the device
    merged = load_model(f"hf:{result.merged}", device=DEVICE, batch_size=4)
    assert merged.device.type == torch.device(DEVICE).type
    messages = rationalist_messages("Story 9. The shop cut its prices by half.", load_instruction())
    [[completion]] = merged.generate([messages], SamplingParams(max_new_tokens=12))
    assert len(completion.token_ids) == len(completion.logprobs) and all(math.isfinite(lp) for lp in completion.logprobs)
    (score,) = merged.score(messages, [TOPICS[2][1]])  # the rationale it was trained on for that text
    assert math.isfinite(score.mean) and score.mean > result.dev_loglik_before


def test_lora_training_in_fp16_on_the_device(tiny_folder, tmp_path, monkeypatch):
    """fp16 mixed precision, what a GPU before Ampere (T4, V100) trains in, asked for here so that it runs
    on any GPU: 20 LoRA steps over a float16 base under float16 autocast with a gradient scaler. The loss
    stays finite and falls, the forward passes ran on the device in float16, the adapter is float32 when
    made and when saved and every weight of it was trained, and the merged model is better on dev."""
    if not ON_CUDA:
        pytest.skip("fp16 mixed precision needs CUDA (accelerate does not autocast to float16 on a CPU)")
    from safetensors.torch import load_file

    from rationalyst.stages import train

    config = _train_config(tiny_folder, tmp_path, fp16=True)
    assert (train.training_precision(config).mixed, train.training_precision(config).weights) == ("fp16", "float16")
    seen: set[tuple[str, torch.dtype]] = set()
    base_dtypes: set[torch.dtype] = set()
    start: dict[str, tuple[torch.dtype, torch.Tensor]] = {}
    load, wrap = train._load_model, train._wrap_lora

    def load_and_watch(folder, cfg):
        model = load(folder, cfg)
        base_dtypes.update(p.dtype for p in model.parameters())
        probe = model.model.layers[0].self_attn.q_proj  # stays the LoRA layer's base layer
        probe.register_forward_hook(lambda module, args, output: seen.add((output.device.type, output.dtype)))
        return model

    def wrap_and_keep(model, cfg):
        model = wrap(model, cfg)
        for name, p in model.named_parameters():
            if p.requires_grad:  # named as the saved adapter names them (without the adapter's name)
                start[name.replace(".default", "")] = (p.dtype, p.detach().float().cpu().clone())
        return model

    monkeypatch.setattr(train, "_load_model", load_and_watch)
    monkeypatch.setattr(train, "_wrap_lora", wrap_and_keep)
    result = train.run(config)
    rows = train.read_metrics(result.output)
    losses = [r["loss"] for r in rows if "loss" in r]
    saved = load_file(str(result.adapter / "adapter_model.safetensors"))
    changed = {n for n, t in saved.items() if n in start and not torch.equal(t.float().cpu(), start[n][1])}
    _record("lora training in fp16", losses=losses, dev_loss=result.dev_loss,
            dev_loglik_before=result.dev_loglik_before, dev_loglik_after=result.dev_loglik_after,
            forward_outputs=sorted(f"{d}:{t}" for d, t in seen), adapter_tensors=len(saved), changed=len(changed))
    assert result.global_step == 20 and len(losses) >= 5
    assert all(math.isfinite(x) for x in losses + [result.dev_loss])
    assert result.last_train_loss < result.first_train_loss, losses
    assert base_dtypes == {torch.float16}
    assert (torch.device(DEVICE).type, torch.float16) in seen, seen
    assert start and all(".lora_A." in n or ".lora_B." in n for n in start)  # only the adapter trains
    assert {dtype for dtype, _ in start.values()} == {torch.float32}
    assert set(saved) == set(start) and {t.dtype for t in saved.values()} == {torch.float32}
    assert changed == set(saved)  # lora_B from its zeros, lora_A once lora_B was not zero
    assert (result.output / train.CHECKPOINTS_DIR / "checkpoint-20" / "scaler.pt").is_file()  # a scaler stepped
    assert result.dev_loglik_after > result.dev_loglik_before  # the float32 adapter merged into the float16 base


# ----------------------------------------------------------------------------- e. memory


@pytest.mark.skipif(not ON_CUDA, reason="torch.cuda.memory_allocated is CUDA's")
def test_release_memory_returns_the_gpu_to_where_it_was_before_the_model(tiny_folder):
    def load_and_use() -> HFModel:
        model = HFModel.from_pretrained(tiny_folder, device=DEVICE, dtype="float32", batch_size=8, prefix_cache=4)
        model.generate(["Hi there", CHAT], SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=0))
        model.score_many([ScoreRequest(c, CONTINUATIONS[:3]) for c in CONTEXTS])
        return model

    model = load_and_use()  # once first: cuBLAS and other per-process workspaces are allocated for good
    del model
    release_memory()
    before = torch.cuda.memory_allocated()
    model = load_and_use()
    ref = weakref.ref(model.model)
    weights = sum(p.numel() * p.element_size() for p in model.model.parameters())
    assert torch.cuda.memory_allocated() - before >= weights and len(model.prefix_cache) > 0
    del model
    after = release_memory()
    assert ref() is None
    _record("release_memory", before=before, weights=weights, after=torch.cuda.memory_allocated(), returned=after)
    assert torch.cuda.memory_allocated() == before
    index = torch.cuda.current_device()
    assert after[f"cuda:{index}.allocated"] == before
