"""KV-shared batched scoring must equal the plain reference: one full forward pass per continuation."""

from __future__ import annotations

import math

import pytest

from rationalyst.lm import ScoreRequest

CONTEXTS = [
    "Question: Tom has 3 apples and buys 2 more. How many apples does he have now?\nAnswer:",
    "The mitochondria is the powerhouse of the cell. " * 12 + "Therefore,",
    [{"role": "user", "content": "What is 17 + 25? Think step by step."}],
]
CONTINUATIONS = [
    " 5",
    " He has 3 + 2 = 5 apples, so the answer is 5.",
    "\n\nLet me think about this carefully: first we add, then we check the units.",
    " café ☺ — naïve",
    "",
]


def _max_diff(a, b):
    assert a.token_ids == b.token_ids
    return max((abs(x - y) for x, y in zip(a.logprobs, b.logprobs)), default=0.0)


@pytest.mark.parametrize("context", CONTEXTS, ids=["qa", "long", "chat"])
def test_shared_kv_scoring_matches_full_passes(default_model, context):
    shared = default_model.score(context, CONTINUATIONS)
    reference = default_model.score_full_passes(context, CONTINUATIONS)
    assert len(shared) == len(CONTINUATIONS)
    for got, want in zip(shared, reference):
        assert _max_diff(got, want) < 1e-4
        assert math.isclose(got.sum, want.sum, abs_tol=1e-3)
    assert shared[-1].token_ids == [] and shared[-1].sum == 0.0


def test_batches_smaller_than_k_and_many_requests_agree(default_model):
    """More continuations than the batch size (several chunks reuse the cache) and several contexts."""
    conts = [f" {i} apples and {i + 1} pears" for i in range(9)]
    requests = [ScoreRequest(c, conts) for c in CONTEXTS[:2]]
    results = default_model.score_many(requests)
    for request, got in zip(requests, results):
        want = default_model.score_full_passes(request.context, conts)
        assert max(_max_diff(g, w) for g, w in zip(got, want)) < 1e-4


def test_scores_are_real_log_probs(default_model):
    """A likely continuation outranks an unlikely one; every log-prob is <= 0; mean = sum / n."""
    good, bad = default_model.score("The capital of France is", [" Paris", " banana"])
    assert good.sum > bad.sum
    assert all(lp <= 0 for lp in good.logprobs + bad.logprobs)
    assert math.isclose(good.mean, good.sum / len(good.logprobs))


def test_discounted_score_is_the_method_formula(default_model):
    (score,) = default_model.score("One, two, three,", [" four, five, six"])
    expected = sum(0.9**i * lp for i, lp in enumerate(score.logprobs))
    assert math.isclose(score.discounted(0.9), expected, rel_tol=1e-12)
    assert math.isclose(score.discounted(1.0), score.sum, rel_tol=1e-9)


@pytest.mark.parametrize(
    "logprobs, total", [([math.inf, -math.inf, -1.0], "nan"), ([1e308, 1e308], "inf"), ([-1e308, -1e308], "-inf")],
    ids=["+inf-inf", "overflow", "-overflow"],
)
def test_a_score_past_the_float_range_is_a_number_not_an_exception(logprobs, total):
    """fsum raises on +inf beside -inf and on an intermediate overflow: the sum is then what IEEE addition
    gives (NaN, +-inf), so that a scorer overflowing is a score callers skip, not a crash."""
    from rationalyst.lm.base import ContinuationScore

    score = ContinuationScore(token_ids=list(range(len(logprobs))), logprobs=logprobs)
    for value in (score.sum, score.discounted(1.0), score.mean * len(logprobs)):
        assert str(value) == total
    assert math.isclose(ContinuationScore([0, 1, 2], [0.1, 1e-17, -0.1]).sum, 1e-17, rel_tol=1e-12)  # still exact


def _insertions(document: str, cuts: list[int], rationales: list[str]) -> list[tuple[str, str]]:
    """Stage 3's pairs: each segment after a cut, scored without and with a rationale before it."""
    pairs = []
    for k, (cut, rationale) in enumerate(zip(cuts, rationales)):
        end = cuts[k + 1] if k + 1 < len(cuts) else len(document)
        preceding, following = document[:cut], document[cut:end]
        pairs += [(preceding, following), (preceding + rationale, following)]
    return pairs


DOCS = [
    "Natalia sold clips to 48 of her friends in April. In May she sold half as many clips. "
    "Altogether she sold 48 + 24 = 72 clips in April and May. The answer is 72.",
    "Water boils at 100 degrees Celsius at sea level.\nAt higher altitude the air pressure is lower, "
    "so water boils at a lower temperature — about 70 °C on Everest.",
]
RATIONALES = [
    [" (Half of 48 is 24.)", " (Add both months.)", " (So the total is the answer.)"],
    [" <BOT>Boiling depends on pressure.<EOT>", " <BOT>Lower pressure means a lower boiling point.<EOT>"],
]


def test_document_scoring_matches_scoring_each_pair_alone(default_model):
    """Without-rationale scores come from the document's own pass, with-rationale ones branch off it."""
    # Rationales go after sentences, as Stage 2 inserts them: after each ". " / ".\n" (here cut
    # just before the space or newline, so the following segment starts with it).
    cuts = [[i + 1 for i, ch in enumerate(d[:-1]) if ch == "." and d[i + 1] in " \n"][: len(r)] for d, r in zip(DOCS, RATIONALES)]
    from rationalyst.lm import DocumentScoreRequest
    from rationalyst.lm.base import LanguageModel

    requests = [DocumentScoreRequest(d, _insertions(d, c, r)) for d, c, r in zip(DOCS, cuts, RATIONALES)]
    before = default_model.forwarded_tokens
    got = default_model.score_in_documents(requests)
    forwarded = default_model.forwarded_tokens - before
    generic = LanguageModel.score_in_documents(default_model, requests)  # the contract's plain fallback
    # The minimum: each document once, plus each rationale and its following segment once (plus the
    # one context token every branch recomputes, and tokens re-split at the rationale's edges).
    n_tokens = lambda text: len(default_model.tokenizer(text)["input_ids"])  # noqa: E731
    minimum = 0
    for doc, doc_cuts, rationales in zip(DOCS, cuts, RATIONALES):
        ends = doc_cuts[1:] + [len(doc)]
        minimum += n_tokens(doc) + sum(n_tokens(r) + n_tokens(doc[c:e]) for c, e, r in zip(doc_cuts, ends, rationales))
    n_rationales = sum(len(c) for c in cuts)
    assert forwarded <= minimum + 3 * n_rationales, (forwarded, minimum)
    # Mid-word cuts re-tokenize differently from the document: still exact, just less sharing.
    odd = DocumentScoreRequest(DOCS[0], _insertions(DOCS[0], [34, 85, 130], RATIONALES[0]))
    requests.append(odd)
    got.append(default_model.score_in_documents([odd])[0])
    generic.append(LanguageModel.score_in_documents(default_model, [odd])[0])
    for request, scores, fallback in zip(requests, got, generic):
        assert len(scores) == len(request.pairs)
        for (context, following), score, other in zip(request.pairs, scores, fallback):
            (want,) = default_model.score_full_passes(context, [following])
            assert _max_diff(score, want) < 1e-4
            assert _max_diff(other, want) < 1e-4
            assert default_model.tokenizer.decode(score.token_ids).endswith(following)


def _tiny(default_model, config):
    """A random-weight model of ``config`` on the default model's tokenizer, behind `HFModel`."""
    import torch
    from transformers import AutoModelForCausalLM

    from rationalyst.lm.hf import HFModel

    torch.manual_seed(0)
    return HFModel(AutoModelForCausalLM.from_config(config).eval(), default_model.tokenizer, batch_size=4)


def _plain_forward(model, context: str, continuation: str) -> tuple[list[int], list[float]]:
    """The reference, by hand: the continuation's ids and log-probs from one plain transformers forward
    pass over the tokenizer's ids of context + continuation (no cache, no batching)."""
    import torch

    tok = model.tokenizer
    ids = tok(context + continuation)["input_ids"]
    n = len(tok(context)["input_ids"])
    with torch.no_grad():
        logits = model.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    return ids[n:], [logprobs[i - 1, ids[i]].item() for i in range(n, len(ids))]


def _assert_plain(model, pairs, scores):
    for (context, continuation), score in zip(pairs, scores, strict=True):
        ids, logprobs = _plain_forward(model, context, continuation)
        assert score.token_ids == ids
        assert max(abs(a - b) for a, b in zip(score.logprobs, logprobs)) < 1e-4, (context, continuation)


def test_sliding_window_models_score_as_a_plain_forward_pass(default_model):
    """A sliding-window model's cache keeps only the last window of a trunk, so a branch cannot reuse
    the trunk's prefix from it: `score_many` and `score_in_documents` still equal a plain forward pass,
    for contexts shorter and longer than the window (Mistral, window 8)."""
    from transformers import MistralConfig

    from rationalyst.lm import DocumentScoreRequest

    config = MistralConfig(
        vocab_size=len(default_model.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, sliding_window=8,
        initializer_range=0.2,
    )
    model = _tiny(default_model, config)
    continuations = [" the answer is 7.", " x = 3"]
    for context in ["Step 1: x", "Step 1: the cat sat on the mat and then it said 42 + 12 = 54 so"]:
        assert len(model.tokenizer(context)["input_ids"]) != 8
        _assert_plain(model, [(context, c) for c in continuations], model.score(context, continuations))
    document = "Step 1: the cat sat on the mat and then it said 42 + 12 = 54 so the answer is 7."
    cut = document.index(" it said")  # past the window
    pairs = [(document[:cut], document[cut:]), (document[:cut] + " Because.", document[cut:])]
    (scores,) = model.score_in_documents([DocumentScoreRequest(document, pairs)])
    _assert_plain(model, pairs, scores)


def test_a_document_over_the_model_s_limit_scores_pairs_that_fit(default_model):
    """A document longer than the model's positions (GPT-2, 64) whose pairs each fit: the pairs score as a
    plain forward pass each (the document's pass is cut to the limit, not run past it)."""
    from transformers import GPT2Config

    from rationalyst.lm import DocumentScoreRequest

    config = GPT2Config(vocab_size=len(default_model.tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=64)
    model = _tiny(default_model, config)
    document = " ".join(f"word{i}" for i in range(60))
    assert model.max_length == 64 < len(model.tokenizer(document)["input_ids"])
    pairs = [(document[:40], document[40:60]), (document[:40] + " Because x.", document[40:60])]
    (scores,) = model.score_in_documents([DocumentScoreRequest(document, pairs)])
    _assert_plain(model, pairs, scores)


def test_an_empty_context_without_a_bos_token_is_scored_after_eos(default_model):
    """Qwen's tokenizer has no BOS: an empty context then stands for EOS (as in lm-evaluation-harness),
    scored as a plain forward pass of [EOS] + continuation, instead of an error that stops a run."""
    import copy

    import torch

    from rationalyst.lm.hf import HFModel

    tokenizer = copy.deepcopy(default_model.tokenizer)
    tokenizer.bos_token = None
    assert tokenizer.bos_token_id is None and tokenizer.eos_token_id is not None
    model = HFModel(default_model.model, tokenizer, batch_size=2)
    (score,) = model.score("", [" The cat sat."])
    ids = tokenizer(" The cat sat.", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = default_model.model(torch.tensor([[tokenizer.eos_token_id, *ids]])).logits[0].float()
    want = torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.tensor(ids)].tolist()
    assert score.token_ids == ids
    assert max(abs(a - b) for a, b in zip(score.logprobs, want)) < 1e-4
    assert model.codec.encode("") == [tokenizer.eos_token_id]
