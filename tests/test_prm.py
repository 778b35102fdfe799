"""Process reward models as step scorers: the `prm` reader in both conventions, PRIME's implicit reward,
and the methods that rank by them (step search, beam, best-of-n, DVTS) in eval, verify and solve.

The PRMs here are small models built from a config with the default model's tokenizer (random
weights: what is tested is where and how they are read, against a plain per-prefix computation); the
PRM trained by TRL's PRMTrainer is in tests/test_prm_trl.py (its own tier)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.data.solve_prompts import format_question
from rationalyst.errors import RationalystError
from rationalyst.lm.hf import HFModel
from rationalyst.lm.prm import PrmConfig, ProcessRewardModel, RewardRequest
from rationalyst.runs import read_records
from rationalyst.search.heuristics import HEURISTICS, StepContext
from rationalyst.search.methods import METHOD_ROLES, METHODS
from rationalyst.search.pool import ModelPool
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings
from rationalyst.search.batch import run_one
from rationalyst.search.verify import aggregate, verify_steps

STEPS = ["Tom has 12 marbles and gives away 5.", "12 - 5 = 7", "The answer is 7."]
QUESTION = "Tom had 12 marbles and gave 5 away. How many are left?"


def tiny_prm(tmp_path, tokenizer, convention: str):
    """A 2-layer PRM with the default model's tokenizer, saved as a folder (random weights, seeded)."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=2,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    model = (LlamaForTokenClassification if convention == "token-classification" else LlamaForCausalLM)(config)
    folder = tmp_path / convention
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def per_prefix_rewards(prm: ProcessRewardModel, question: str, steps: list[str], read) -> list[float]:
    """The reference: each step's prefix run alone (no batch, no padding), the label read at its end."""
    tok = prm.tokenizer
    ids = [tok.bos_token_id] + tok(question + "\n", add_special_tokens=False)["input_ids"]
    out = []
    for step in steps:
        ids = ids + tok(step, add_special_tokens=False)["input_ids"] + tok(prm.config.separator, add_special_tokens=False)["input_ids"]
        end = len(ids) if prm.config.tag is None else max(i for i, t in enumerate(ids) if t == prm.tag_id) + 1
        with torch.no_grad():
            logits = prm.model(input_ids=torch.tensor([ids[:end]])).logits[0, -1].float()
        out.append(read(logits))
    return out


def test_token_classification_prm_reads_each_step_where_trl_labels_it(tmp_path, default_model):
    folder = tiny_prm(tmp_path, default_model.tokenizer, "token-classification")
    prm = ProcessRewardModel.load(PrmConfig(spec=f"hf:{folder}", batch_size=2))
    requests = [RewardRequest(QUESTION, STEPS), RewardRequest(QUESTION, STEPS[:1]), RewardRequest(QUESTION, []),
                RewardRequest("A much longer question " * 5, STEPS[1:])]
    got = prm.step_rewards(requests)
    assert got[2] == [] and [len(r) for r in got] == [3, 1, 0, 2]
    for request, rewards in zip(requests, got):
        want = per_prefix_rewards(prm, request.question, list(request.steps), lambda lg: float(lg.softmax(-1)[1]))
        assert rewards == pytest.approx(want, abs=1e-5)
    assert prm.forwarded_per_request[2] == 0 and prm.forwarded_tokens == sum(prm.forwarded_per_request)


def test_label_token_prm_reads_good_against_bad_at_the_step_tag(tmp_path, default_model):
    folder = tiny_prm(tmp_path, default_model.tokenizer, "label-tokens")
    config = PrmConfig(spec=f"hf:{folder}", convention="label-tokens", separator=" ки\n", tag=" ки", good="+", bad="-")
    prm = ProcessRewardModel.load(config)
    tok = default_model.tokenizer
    good, bad = tok("+", add_special_tokens=False)["input_ids"][0], tok("-", add_special_tokens=False)["input_ids"][0]
    (got,) = prm.step_rewards([RewardRequest(QUESTION, STEPS)])
    want = per_prefix_rewards(prm, QUESTION, STEPS, lambda lg: float(lg[[good, bad]].softmax(-1)[0]))
    assert got == pytest.approx(want, abs=1e-5)
    # Read at the tag, not at the separator's last token (the newline): the two differ.
    at_newline = ProcessRewardModel.load(config.model_copy(update={"tag": None}))
    (other,) = at_newline.step_rewards([RewardRequest(QUESTION, STEPS)])
    assert max(abs(a - b) for a, b in zip(got, other)) > 1e-4


def test_prm_settings_that_cannot_be_read_are_clear_errors(tmp_path, default_model):
    folder = tiny_prm(tmp_path, default_model.tokenizer, "label-tokens")
    with pytest.raises(RationalystError, match="good 'good answer' must be one token"):
        ProcessRewardModel.load(PrmConfig(spec=f"hf:{folder}", convention="label-tokens", good="good answer"))
    with pytest.raises(RationalystError, match="not a token of the separator"):
        ProcessRewardModel.load(PrmConfig(spec=f"hf:{folder}", convention="label-tokens", tag="+"))
    with pytest.raises(ValueError, match="hf:<hub id or folder>"):
        PrmConfig(spec="gguf:/x.gguf")
    with pytest.raises(RationalystError, match="PRM folder not found: .*missing"):
        ProcessRewardModel.load(PrmConfig(spec=f"hf:{tmp_path / 'missing'}"))
    with pytest.raises(RationalystError, match="PRM folder .* has no config.json"):
        ProcessRewardModel.load(PrmConfig(spec=f"hf:{tmp_path}"))


def test_implicit_prm_is_beta_times_the_log_ratio_summed_over_the_step(default_model):
    """The implicit PRM against full passes of both models (no cache), summed by hand."""
    reference_module = copy.deepcopy(default_model.model)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in reference_module.model.layers[-1].parameters():
            param.add_(torch.randn_like(param) * 0.02)
    reference = HFModel(reference_module, default_model.tokenizer, name="perturbed")
    item = BenchmarkItem(id="q", benchmark="t", family="arithmetic", question=QUESTION, choices=None, answer="7",
                         solution=None, meta={})
    settings = SearchSettings(implicit_prm_beta=0.5)
    roles = Roles.of(default_model, rationalist=default_model, scorer=reference)
    verdicts = verify_steps(item, STEPS, roles, settings, verifier="implicit-prm")
    for i, verdict in enumerate(verdicts):
        context = format_question(item) + "\n" + "".join(f"{s}\n" for s in STEPS[:i])
        (theta,) = default_model.score_full_passes(context, [STEPS[i]])
        (ref,) = reference.score_full_passes(context, [STEPS[i]])
        assert verdict.score == pytest.approx(0.5 * (sum(theta.logprobs) - sum(ref.logprobs)), abs=1e-4)
        assert verdict.rationale == "" and math.isnan(verdict.score_without)
    # The same reward ranks the step search's candidates: the chosen one has the highest.
    decision = run_one(HEURISTICS["implicit-prm"](StepContext(item, STEPS[:1], roles, settings, 0)), roles)
    assert decision.rationale is None and len(decision.candidates) == 3
    assert decision.scores[decision.chosen] == max(decision.scores)


def test_prm_product_aggregate_is_the_sum_of_log_probabilities():
    assert aggregate([0.5, 0.25], "product", probabilities=True) == pytest.approx(math.log(0.125))
    assert aggregate([-1.0, -2.0], "product") == -3.0
    assert aggregate([0.9, 0.2], "min", probabilities=True) == 0.2


class CountingModel:
    """The default model, counting the candidate steps the agent samples per call."""

    def __init__(self, model):
        self.model, self.generated, self.seeds = model, [], []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate_seeded(self, prompts, params, seeds):
        out = self.model.generate_seeded(prompts, params, seeds)
        if params.temperature > 0:  # candidate steps (rationales are greedy)
            self.generated.append(sum(len(row) for row in out))
            self.seeds.append(list(seeds))
        return out

    def generate_mixed(self, prompts, params):  # the rationales and candidates of one round, together
        out = self.model.generate_mixed(prompts, params)
        sampled = [i for i, p in enumerate(params) if p.temperature > 0]
        if sampled:
            self.generated.append(sum(len(out[i]) for i in sampled))
            self.seeds.append([params[i].seed for i in sampled])
        return out


@pytest.mark.parametrize("budget,width,subtrees", [(4, 2, 2), (2, 3, 1), (5, 2, 2)])
def test_dvts_never_samples_more_than_its_budget(default_model, budget, width, subtrees):
    counting = CountingModel(default_model)
    item = BenchmarkItem(id="q", benchmark="t", family="arithmetic", question=QUESTION, choices=None, answer="7",
                         solution=None, meta={})
    settings = SearchSettings(dvts_budget=budget, beam_width=width, max_steps=2, max_step_tokens=8,
                              max_rationale_tokens=6)
    roles = Roles.of(counting)
    trace = METHODS["dvts"](item, roles, settings, 0)
    assert trace["method"] == "dvts" and len(trace["subtree_scores"]) == subtrees
    assert counting.generated and max(counting.generated) <= budget
    assert max(counting.generated) == subtrees * min(width, budget)  # the first round: every subtree expands
    assert all(len(step["candidates"]) <= min(width, budget) for step in trace["steps"])
    # Subtrees start from the same empty trajectory but sample from their own seeds.
    assert len(set(counting.seeds[0])) == subtrees


@pytest.mark.slow
def test_prm_methods_run_in_eval_verify_and_the_guided_chat_model(tmp_path, default_model):
    """Every PRM-ranked method through `rationalyst eval`, the PRM through `verify`, and `prm` as the
    search behind `serve --guided`; a recipe that needs a PRM and names none fails when it loads."""
    from rationalyst.lm.builtin import DEFAULT_LM
    from rationalyst.search.pool import RolesConfig
    from rationalyst.search.solve import SolveConfig, solve
    from rationalyst.serve.guided import build_guided
    from rationalyst.stages import eval as eval_stage
    from rationalyst.stages import verify as verify_stage
    from rationalyst.lm.base import SamplingParams
    from tests.test_pipeline import FIXTURES

    folder = tiny_prm(tmp_path, default_model.tokenizer, "token-classification")
    pool = ModelPool()
    pool.add(default_model)
    search = {"max_steps": 2, "max_step_tokens": 10, "max_rationale_tokens": 6, "max_solution_tokens": 30,
              "n_candidates": 2, "beam_width": 2, "best_of_n": 2, "dvts_budget": 4}
    methods = [m for m in METHOD_ROLES if "prm" in m]
    assert set(methods) == {"prm", "implicit-prm", "beam-prm", "beam-implicit-prm", "best-of-n-prm",
                            "best-of-n-implicit-prm", "dvts-prm", "dvts-implicit-prm"}
    config = eval_stage.EvalConfig(
        benchmarks=[{"name": "gsm8k", "source": str(FIXTURES / "benchmarks" / "gsm8k.jsonl"), "limit": 1}],
        methods=methods, output=tmp_path / "eval", prm={"spec": f"hf:{folder}"}, search=search,
    )
    summaries = eval_stage.run(config, pool=pool)
    assert [s.method for s in summaries] == methods and all(s.problems == 1 and s.errors == 0 for s in summaries)
    for method in methods:
        (trace,) = read_records(tmp_path / "eval" / "gsm8k" / method)
        assert trace["method"] == method
        uses_prm = "prm" in METHOD_ROLES[method]
        assert (trace["tokens"]["prm"] > 0) == uses_prm
        if method in ("prm", "dvts-prm", "beam-prm"):  # per-step P(good)
            assert all(0 < c["score"] < 1 for step in trace["steps"] for c in step["candidates"])
    with pytest.raises(ValueError, match="dvts-prm rate steps with a process reward model"):
        eval_stage.EvalConfig(benchmarks=config.benchmarks, methods=["dvts-prm"], output=tmp_path / "x")

    solutions = tmp_path / "solutions.jsonl"
    solutions.write_text(json.dumps({"id": "s1", "question": QUESTION, "steps": STEPS}) + "\n")
    counts = verify_stage.run(verify_stage.VerifyConfig(input=solutions, output=tmp_path / "verify", verifier="prm",
                                                        prm=f"hf:{folder}"), pool=pool)
    assert counts["records"] == 1
    (record,) = read_records(tmp_path / "verify")
    prm = pool.get(RolesConfig(prm=f"hf:{folder}").prm)
    assert record["scores"] == pytest.approx(prm.step_rewards([RewardRequest(QUESTION, STEPS)])[0], abs=1e-6)
    assert record["scores_without"] is None

    recipe = tmp_path / "guided.yaml"
    recipe.write_text(f"method: prm\nprm: hf:{folder}\nsearch:\n  max_steps: 2\n  max_step_tokens: 10\n")
    guided = build_guided(recipe, {DEFAULT_LM: default_model})
    text = guided([{"role": "user", "content": QUESTION}], SamplingParams(seed=3))
    solve_config = SolveConfig(method="prm", prm=f"hf:{folder}", seed=3, search={"max_steps": 2, "max_step_tokens": 10})
    assert text and text == solve(solve_config, QUESTION, pool=pool)["solution"]
