"""How well implicit supervision spots wrong steps: AUROC against PRM800K's human step ratings.

Each PRM800K row is one step of a MATH solution with its earlier steps and a human rating (1 good,
0 neutral, -1 wrong). For every rated step, the rationalist writes a rationale after the question
and earlier steps, and the scorer gives the step's mean token log-prob after that rationale (exactly
what `rationalyst verify` and the step search compute). The script reports the AUROC of that score
for telling good steps (rating 1) from wrong ones (rating -1), and the same for the score without a
rationale and for their difference, so the rationale's own contribution is visible; and beside them the
other step scorers of the search: a discriminative PRM (``--prm``, e.g. one made by `rationalyst
train-prm`; P(good) at the step) and PRIME's implicit PRM (``--implicit-prm-reference``: beta * log of
the rationalist's over the reference's probability of the step, summed over its tokens).

    python benchmarks/prm800k_auroc.py [--data ../shared/benchmarks/prm800k/phase1_test_steps.jsonl]
        [--rationalist SPEC] [--scorer SPEC] [--prm hf:FOLDER] [--implicit-prm-reference SPEC] [--limit 200]
        [--skip N] [--save scores.jsonl]

``--skip`` leaves out the first N rated steps (those a PRM trained with ``--limit N`` has seen).

Neutral (0) and unrated rows are left out. AUROC 0.5 = chance; each comes with a 95% percentile
bootstrap interval over the rated steps (1,000 resamples, seeded).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.runs import read_json_lines
from rationalyst.lm import SamplingParams, ScoreRequest, load_model
from rationalyst.lm.prm import PrmConfig, ProcessRewardModel
from rationalyst.report.auroc import auroc, bootstrap_interval
from rationalyst.search import prompts
from rationalyst.search.heuristics import RATIONALE_STOP, implicit_process_reward
from rationalyst.search.roles import Roles

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks" / "prm800k" / "phase1_test_steps.jsonl"
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "benchmarks" / "prm800k.jsonl"


def rated_rows(path: Path, limit: int | None, skip: int = 0) -> list[dict]:
    rows, seen = [], 0
    for _, _, record in read_json_lines(path, lambda *a: None, stage="prm800k"):
        meta = record.get("meta") or {}
        if meta.get("rating") in (1, -1) and isinstance(meta.get("step"), str) and meta["step"].strip():
            seen += 1
            if seen <= skip:
                continue
            rows.append(record)
            if limit and len(rows) == limit:
                break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else FIXTURE)
    parser.add_argument("--rationalist", default="builtin:smollm2-135m")
    parser.add_argument("--scorer", default="builtin:smollm2-135m")
    parser.add_argument("--limit", type=int, default=200, help="Rated steps to use (0 = all).")
    parser.add_argument("--skip", type=int, default=0, help="Leave out the first N rated steps (a PRM's training rows).")
    parser.add_argument("--prm", help="A discriminative PRM (hf:<folder or id>, token-classification convention).")
    parser.add_argument("--implicit-prm-reference", help="pi_ref of the implicit PRM (pi = the rationalist), e.g. its base.")
    parser.add_argument("--beta", type=float, default=0.05, help="The implicit PRM's beta.")
    parser.add_argument("--max-rationale-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--save", type=Path, help="Write each step's id, label and scores here (JSON Lines).")
    args = parser.parse_args()
    scorer = load_model(args.scorer)
    rationalist = scorer if args.rationalist == args.scorer else load_model(args.rationalist)
    roles = Roles.of(rationalist, rationalist, scorer)
    rows = rated_rows(args.data, args.limit or None, args.skip)
    prm = ProcessRewardModel.load(PrmConfig(spec=args.prm)) if args.prm else None
    reference = load_model(args.implicit_prm_reference) if args.implicit_prm_reference else None
    prm_scores, implicit_prm_scores = [], []
    started = time.perf_counter()
    with_r, without, labels = [], [], []
    params = SamplingParams(max_new_tokens=args.max_rationale_tokens, stop=RATIONALE_STOP)
    for start in range(0, len(rows), args.batch):
        batch = rows[start : start + args.batch]
        items = [
            BenchmarkItem(id=r["id"], benchmark="prm800k", family="math", question=r["question"], answer=r["answer"] or "?")
            for r in batch
        ]
        prefixes = [list(r["meta"].get("prefix_steps") or []) for r in batch]
        steps = [r["meta"]["step"] for r in batch]
        rationales = [
            out[0].text.strip()
            for out in roles.rationalist.generate([prompts.rationalist_prompt(i, p, roles.rationalist_instruction) for i, p in zip(items, prefixes)], params)
        ]
        requests = [ScoreRequest(prompts.scorer_context(i, p, r), [s]) for i, p, r, s in zip(items, prefixes, rationales, steps)]
        requests += [ScoreRequest(prompts.scorer_context(i, p, None), [s]) for i, p, s in zip(items, prefixes, steps)]
        scores = [row[0].mean for row in roles.scorer.score_many(requests)]
        with_r += scores[: len(batch)]
        without += scores[len(batch) :]
        labels += [1 if r["meta"]["rating"] == 1 else 0 for r in batch]
        if prm is not None:
            rewards = prm.step_rewards([prompts.prm_request(i, [*p, s]) for i, p, s in zip(items, prefixes, steps)])
            prm_scores += [row[-1] for row in rewards]
        if reference is not None:
            plain = [ScoreRequest(prompts.scorer_context(i, p, None), [s]) for i, p, s in zip(items, prefixes, steps)]
            theta, ref = roles.rationalist.score_many(plain), reference.score_many(plain)
            implicit_prm_scores += [implicit_process_reward(t[0], r[0], args.beta) for t, r in zip(theta, ref)]
    seconds = time.perf_counter() - started
    print(f"{len(labels)} rated steps from {args.data} ({sum(labels)} good, {len(labels) - sum(labels)} wrong), "
          f"rationalist {args.rationalist}, scorer {args.scorer}, {seconds:.0f} s")
    rows_out = {"implicit": with_r, "alone": without, "gain": [a - b for a, b in zip(with_r, without)]}
    print(f"AUROC implicit (step log-prob after the rationale): {_with_interval(with_r, labels)}")
    print(f"AUROC scorer alone (no rationale):                 {_with_interval(without, labels)}")
    print(f"AUROC rationale gain (with - without):             {_with_interval(rows_out['gain'], labels)}")
    if prm is not None:
        rows_out["prm"] = prm_scores
        print(f"AUROC prm {args.prm}: {_with_interval(prm_scores, labels)}")
    if reference is not None:
        rows_out["implicit_prm"] = implicit_prm_scores
        print(f"AUROC implicit-prm (rationalist vs {args.implicit_prm_reference}): {_with_interval(implicit_prm_scores, labels)}")
    if args.save:  # per step, so that two runs (e.g. trained vs untrained rationalist) can be compared pairwise
        with args.save.open("w") as out:
            for k, row in enumerate(rows):
                out.write(json.dumps({"id": row["id"], "label": labels[k], **{key: v[k] for key, v in rows_out.items()}}) + "\n")
        print(f"per-step scores: {args.save}")


def _with_interval(scores: list[float], labels: list[int]) -> str:
    low, high = bootstrap_interval(scores, labels)
    return f"{auroc(scores, labels):.3f} [95% bootstrap {low:.3f}, {high:.3f}]"


if __name__ == "__main__":
    main()
