"""Run directories for the report tests, written through `rationalyst.runs.RunDir` like real stages.

`build_runs(root)` writes, below ``root``:

* ``eval/<benchmark>/<method>``: eval runs with trace records as in ``docs/traces.md``, for the
  benchmarks gsm8k (5 problems) and arc-challenge (4, multiple choice) and the methods implicit,
  random and cot; ``arc-challenge/random`` is incomplete (3 problems, no manifest).
* ``extract`` and ``filter``: a mining run of 3 documents (sources gsm8k and pile), one rationale of
  which the filter has not scored.

What the tests expect from these runs is written out by hand in the tests, not computed from here.
`build_large_run` writes a 5,000-problem benchmark for two methods, for the page's speed test.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from rationalyst.config import StrictModel
from rationalyst.runs import RunDir
from rationalyst.stages.extract import ExtractConfig
from rationalyst.stages.filter import FilterConfig

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


class BenchmarkFixtureRef(StrictModel):
    name: str
    source: str | None = None
    limit: int | None = None


class EvalFixtureConfig(StrictModel):
    """The part of an eval run's config the report reads (docs/traces.md), shaped as the eval stage writes it."""

    benchmark: BenchmarkFixtureRef
    method: str
    agent: dict[str, str] = Field(default_factory=lambda: {"spec": "builtin:smollm2-135m"})
    rationalist: dict[str, str] | None = Field(default_factory=lambda: {"spec": "builtin:smollm2-135m"})
    scorer: dict[str, str] | None = Field(default_factory=lambda: {"spec": "builtin:smollm2-135m"})
    seed: int = 0


def _candidates(texts, scores):
    return [{"text": t, "score": s, "tokens": len(t.split())} for t, s in zip(texts, scores)]


def _step(texts, chosen, rationale=None, scores=None):
    scores = scores or [None] * len(texts)
    return {"rationale": rationale, "candidates": _candidates(texts, scores), "chosen": chosen}


def _implicit_scores(n, chosen):
    """Scores with the chosen candidate highest, as implicit supervision picks."""
    scores = [-1.0 - 0.25 * k for k in range(n)]
    scores[0], scores[chosen] = scores[chosen], scores[0]
    return scores


def _trace(pid, benchmark, method, question, steps, prediction, gold, correct, i, choices=None, error=None):
    cost = {
        # implicit: per problem i, scorer seconds 0.5 * (i + 1), 0.5 s overhead in the total
        "implicit": ({"agent": 100 + 10 * i, "rationalist": 20, "scorer": 200, "judge": 0},
                     {"agent": 2.0, "rationalist": 1.0, "scorer": 0.5 * (i + 1), "judge": 0.0,
                      "total": 3.5 + 0.5 * (i + 1)}),
        "random": ({"agent": 100, "rationalist": 0, "scorer": 0, "judge": 0},
                   {"agent": 2.0, "rationalist": 0.0, "scorer": 0.0, "judge": 0.0, "total": 2.5}),
        "cot": ({"agent": 80, "rationalist": 0, "scorer": 0, "judge": 0},
                {"agent": 1.0, "rationalist": 0.0, "scorer": 0.0, "judge": 0.0, "total": 1.0}),
    }[method]
    record = {
        "id": pid, "benchmark": benchmark, "method": method, "question": question, "choices": choices,
        "gold": gold, "steps": steps,
        "solution": "\n".join(s["candidates"][s["chosen"]]["text"] for s in steps if s["candidates"]),
        "prediction": prediction, "parsed": prediction is not None, "correct": correct,
        "stop_reason": "answer" if prediction is not None else "max_steps",
        "tokens": cost[0], "seconds": cost[1],
    }
    if error:
        record["error"] = error
    return record


# Per gsm8k problem: the first step's candidates (shared by implicit and random unless noted).
GSM_FIRST = [
    ["She sold 48 / 2 = 24 in May.", "She sold 48 * 2 = 96 in May.", "She sold 48 clips."],
    ["Half of 10 is 5.", "10 - 5 = 4.", "Double 10 is 20."],
    ["3 + 4 = 7 apples.", "3 * 4 = 12 apples.", "4 - 3 = 1 apple."],
    ["The train covers 60 km per hour.", "The train covers 30 km.", "Speed is 120 km/h."],
    ["Each box holds 6 eggs.", "There are 12 boxes.", "Eggs cost 2 dollars."],
]


def _gsm8k(method: str) -> list[dict]:
    """5 problems. implicit correct: 0, 1, 4; random correct: 1, 3; cot correct: 0.

    implicit vs random, on identical candidates: problem 0 differs at step 1 (of 2), problem 1 at
    step 2, problem 2 chooses the same, problem 3 differs at step 1 (implicit's rationale holds a
    <script> tag), problem 4 offers different candidates (not comparable).
    """
    plan = {  # problem: (implicit (chosen per step, correct), random (chosen per step, correct))
        0: ((0, 1), True, (2, 0), False),
        1: ((1, 0), True, (1, 2), True),
        2: ((0,), False, (0,), False),
        3: ((1,), False, (0,), True),
        4: ((0,), True, (1,), False),
    }
    records = []
    for i in range(5):
        pid = f"gsm8k-{i:04d}"
        question = f"Problem {i}: how many are left?" + (" Use <b>bold</b> & care." if i == 2 else "")
        gold = str(10 + i)
        if method == "cot":
            steps = [_step([f"Let me think about problem {i}."], 0), _step([f"The answer is {10 + i if i == 0 else 0}."], 0)]
            right = i == 0
            records.append(_trace(pid, "gsm8k", "cot", question, steps, gold if right else "0", gold, right, i))
            continue
        chosen, right = (plan[i][0], plan[i][1]) if method == "implicit" else (plan[i][2], plan[i][3])
        first = list(GSM_FIRST[i])
        if i == 4 and method == "random":
            first = ["Each box holds 7 eggs.", "There are 11 boxes.", "Eggs are white."]
        second = [f"Then {i} more.", f"Then {i} fewer.", f"So the answer is {gold}."]
        if i == 0 and method == "random":  # the trajectories diverged at step 1: different candidates
            second = ["Then 96 - 24 = 72.", "Then 96 + 24 = 120.", "So the answer is 96."]
        texts = [first, second][: len(chosen)]
        steps = []
        for k, (cands, c) in enumerate(zip(texts, chosen)):
            if method == "implicit":
                rationale = SCRIPT + " then check the units" if i == 3 else f"Rationale {k + 1} for problem {i}."
                steps.append(_step(cands, c, rationale, _implicit_scores(len(cands), c)))
            else:
                steps.append(_step(cands, c, None, [0.3, 0.7, 0.1]))
        prediction = gold if right else "99"
        records.append(_trace(pid, "gsm8k", method, question, steps, prediction, gold, right, i))
    return records


def _arc(method: str) -> list[dict]:
    """4 problems. implicit correct: 0, 1; random (incomplete, 3 problems) correct: 0;
    cot correct: 0, 1, 2 and problem 3 failed with an error. implicit vs random differ only at
    problem 1 (identical candidates at all three)."""
    choices = ["red", "green", "blue", "yellow"]
    plan = {"implicit": ([0, 1, 0, 2], [True, True, False, False]), "random": ([0, 2, 0], [True, False, False])}
    records = []
    count = 3 if method == "random" else 4
    for i in range(count):
        pid = f"arc-{i:04d}"
        question = f"Which colour is item {i}? {IMG}" if i == 0 else f"Which colour is item {i}?"
        if method == "cot":
            right = i < 3
            steps = [_step([f"Item {i} looks {choices[i]}." if right else "Unsure."], 0)]
            records.append(_trace(pid, "arc-challenge", "cot", question, steps, "A" if right else None, "A", right, i,
                                  choices=choices, error=None if right else "timeout after 60 s"))
            continue
        chosen, right = plan[method][0][i], plan[method][1][i]
        cands = [f"Item {i} is {c}." for c in choices[:3]]
        rationale = f"Recall what item {i} looks like." if method == "implicit" else None
        scores = _implicit_scores(3, chosen) if method == "implicit" else [0.5, 0.2, 0.9]
        steps = [_step(cands, chosen, rationale, scores)]
        records.append(_trace(pid, "arc-challenge", method, question, steps, "A" if right else "C", "A", right, i,
                              choices=choices))
    return records


def write_eval_run(path: Path, benchmark: str, method: str, records: list[dict], complete: bool = True,
                   shard_size: int = 2) -> Path:
    run = RunDir(path, EvalFixtureConfig(benchmark=BenchmarkFixtureRef(name=benchmark), method=method), stage="eval")
    with run.writer(shard_size=shard_size) as writer:
        for record in records:
            writer.write(record)
    if complete:
        run.finish(counts={"problems": len(records)})
    return path


DOCS = {
    "d0": ("gsm8k", "Tom has 3 apples. He buys 2 more. So he has 5 apples.", [17, 33]),
    "d1": ("pile", "The sky is blue. Light scatters in air.", [16]),
    "d2": ("pile", "First line here.\nSecond line follows.\nThird.", [16, 37]),
}
RATIONALES = {
    ("d0", 0): ("He will buy more apples next.", 0.9),
    ("d0", 1): ("Add them up: 3 + 2 = 5.", 0.2),
    ("d1", 0): ("Blue comes from scattering.", 0.1),
    ("d2", 0): ("Lines <b>bold</b> & " + SCRIPT, -0.3),
    ("d2", 1): ("Not scored yet.", None),  # in the extract run only
}


def _rationale_records() -> list[dict]:
    records = []
    for doc_id, (source, text, points) in DOCS.items():
        for position, offset in enumerate(points):
            end = points[position + 1] if position + 1 < len(points) else len(text)
            records.append({
                "id": f"{doc_id}:{position}", "doc_id": doc_id, "source": source, "preceding": text[:offset],
                "rationale": RATIONALES[(doc_id, position)][0], "following": text[offset:end], "position": position,
            })
    return records


def write_mining_runs(root: Path) -> tuple[Path, Path]:
    """An extract run and a filter run of it (tau 0.5 for gsm8k, 0 otherwise, gamma 0.9)."""
    extract_dir, filter_dir = root / "extract", root / "filter"
    extract = RunDir(extract_dir, ExtractConfig(input=root / "select", output=extract_dir), stage="extract")
    records = _rationale_records()
    with extract.writer() as writer:
        for record in records:
            writer.write(record)
    extract.finish()
    config = FilterConfig(input=extract_dir, output=filter_dir, tau_by_source={"gsm8k": 0.5})
    run = RunDir(filter_dir, config, stage="filter")
    with run.writer() as writer:
        for record in records:
            delta = RATIONALES[(record["doc_id"], record["position"])][1]
            if delta is None:
                continue
            tau = config.tau_for(record["source"])
            writer.write({**record, "score_without": -10.0, "score_with": -10.0 + delta, "delta": delta, "tau": tau,
                          "kept": delta >= tau, "following_tokens": 5})
    run.finish()
    return extract_dir, filter_dir


def build_runs(root: Path) -> Path:
    """The standard fixture (see the module docstring); returns ``root``."""
    for method in ("implicit", "random", "cot"):
        write_eval_run(root / "eval" / "gsm8k" / method, "gsm8k", method, _gsm8k(method))
        write_eval_run(root / "eval" / "arc-challenge" / method, "arc-challenge", method, _arc(method),
                       complete=method != "random")
    write_mining_runs(root)
    return root


def large_records(method: str, n: int) -> list[dict]:
    """n problems of 3 steps with 4 candidates; correct unless i % 3 == 0; random picks another
    candidate than implicit at the first step when i % 7 == 0 (identical candidates throughout)."""
    records = []
    for i in range(n):
        steps = []
        for k in range(3):
            cands = [f"Problem {i} step {k} option {j}: compute {i} + {j} = {i + j}." for j in range(4)]
            chosen = (i + k) % 4
            if method == "random" and k == 0 and i % 7 == 0:
                chosen = (chosen + 1) % 4
            rationale = f"For problem {i}, step {k}, add the next term." if method == "implicit" else None
            steps.append(_step(cands, chosen, rationale, [0.1 * j - 1 for j in range(4)]))
        right = i % 3 != 0
        gold = str(i)
        records.append(_trace(f"big-{i:05d}", "big", method, f"What is the sum for problem {i}?", steps,
                              gold if right else "-1", gold, right, i % 5))
    return records


def build_large_run(root: Path, n: int = 5000) -> Path:
    for method in ("implicit", "random"):
        write_eval_run(root / "big" / method, "big", method, large_records(method, n), shard_size=1000)
    return root
