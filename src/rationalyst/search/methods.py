"""Whole-problem strategies: each turns one benchmark item into one trace record (docs/traces.md).

Each is a program (`batch`): ``PROGRAMS[name](item, roles, settings, seed)`` yields the model calls it
needs and returns the trace, so `solve_many` can run a batch of problems side by side (one engine call
per kind of call per round, or one decode loop they join, whatever the batch). `METHODS` holds the same methods with the plain
signature ``method(item, roles, settings, seed) -> trace`` (a batch of one):

* the guided step search with any heuristic of `heuristics.HEURISTICS` (``implicit``, ``explicit``,
  ``random``, ``self-ppl``, ``llm-judge``, ``prm``, ``implicit-prm``): one step at a time until a step
  states a final answer that parses, or ``max_steps``;
* baselines: ``cot`` (one greedy chain of thought) and ``self-consistency`` (majority vote over
  sampled solutions; unparsed answers do not vote);
* beyond the paper: ``beam`` (step beam search ranked by the mean step score of the path),
  ``best-of-n`` (whole sampled solutions ranked by their aggregated step scores) and ``dvts`` (diverse
  verifier tree search: ``dvts_budget // beam_width`` independent subtrees, each keeping its best of
  ``beam_width`` candidates per step; the best finished path by aggregated step scores wins). Each
  ranks by implicit supervision; ``-prm`` and ``-implicit-prm`` variants (``beam-prm``, ``dvts-prm``,
  ``best-of-n-implicit-prm``, ...) rank by a process reward model or PRIME's implicit reward instead.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rationalyst.data.answers import extract_answer, has_final_answer, is_correct
from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.lm.base import SamplingParams
from rationalyst.search import prompts
from rationalyst.search.batch import Generate, Program, ask, gather, run_batch, run_one
from rationalyst.search.heuristics import HEURISTICS, VERIFIERS, Candidate, StepContext, derive_seed
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings
from rationalyst.search.trace import step_record, trace_record
from rationalyst.search.verify import aggregate, verify_program

Method = Callable[[BenchmarkItem, Roles, SearchSettings, int], dict[str, Any]]
MethodProgram = Callable[[BenchmarkItem, Roles, SearchSettings, int], Program]


def guided_search(heuristic: str) -> Method:
    """The paper's loop with ``heuristic`` choosing each step."""
    choose = HEURISTICS[heuristic]

    def run(item: BenchmarkItem, roles: Roles, settings: SearchSettings, seed: int) -> Program:
        started = time.perf_counter()
        steps: list[str] = []
        records: list[dict[str, Any]] = []
        stop, judge_failures = "max_steps", 0
        for _ in range(settings.max_steps):
            decision = yield from choose(StepContext(item, steps, roles, settings, seed, [r["rationale"] for r in records]))
            judge_failures += decision.judge_parse_failures
            if not decision.candidates:
                stop = "no_candidates"
                break
            records.append(step_record(decision.rationale, decision.candidates, decision.scores, decision.chosen))
            chosen = decision.candidates[decision.chosen]
            steps.append(chosen.text)
            if _ends_search(chosen, item):
                stop = "answer"
                break
        extra = {"judge_parse_failures": judge_failures} if heuristic == "llm-judge" else {}
        if heuristic == "explicit":
            extra["explicit_context"] = settings.explicit_context
        return trace_record(item, heuristic, steps, records, stop, roles, started, _uncut(steps, records), **extra)

    return run


def _uncut(steps: list[str], records: list[dict[str, Any]]) -> list[str]:
    """A step search's chosen steps but those cut by the token limit: the steps its answer may be read
    from. A cut step never ends the search but can be chosen on the way, and a cut "The answer is 1" may
    be the start of 12 (``steps[i]`` is the chosen candidate of ``records[i]``)."""
    return [text for text, record in zip(steps, records) if not record["candidates"][record["chosen"]].get("cut")]


def _ends_search(candidate: Candidate, item: BenchmarkItem) -> bool:
    """Whether a chosen step ends a step search: it states a final answer that parses and was not cut by
    the token limit (a cut "The answer is 1" may be the start of 12; the search goes on after it)."""
    return not candidate.cut and has_final_answer(candidate.text, item)


_BLANK_LINE = re.compile(r"\n[ \t]*\n")
#: Where `str.splitlines` breaks lines. Split by it, a text keeps its piece after the last break (empty
#: where the text ends on one): the unfinished piece of a text cut by the token limit.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def split_steps(
    text: str, item: BenchmarkItem, max_steps: int | None, step_format: str = "lines", cut: bool = False
) -> tuple[list[str], str]:
    """A whole solution's steps (its lines, or its blank-line separated paragraphs), cut after the first
    that states a final answer (and after ``max_steps`` steps, unless None), and why it stopped.

    A text ``cut`` by the token limit loses its piece after the last line break (blank line): that one
    is unfinished, and a cut "The answer is 1" may be the start of 12. It stopped at ``max_tokens``
    unless a finished piece stated the answer or ``max_steps`` came first."""
    pieces = (_BLANK_LINE if step_format == "paragraphs" else _LINE_BREAK).split(text)
    if cut:
        pieces = pieces[:-1]
    steps = []
    for piece in pieces:
        if piece.strip():
            steps.append(piece.strip())
            if has_final_answer(steps[-1], item):
                return steps, "answer"
        if len(steps) == max_steps:
            break
    if len(steps) == max_steps:
        return steps, "max_steps"
    return steps, "max_tokens" if cut else "no_candidates"


def sample_solutions(
    item: BenchmarkItem, roles: Roles, settings: SearchSettings, n: int, temperature: float, seed: int, tag: str
):
    """``n`` whole solutions from the agent: (the text as a candidate, its steps, why it stopped).

    After demos a solution is one block of lines, ended by a blank line (or the turn) and cut at
    ``max_steps`` lines, the search's budget. A zero-shot chat answer is the agent's whole turn: such
    models set their steps apart by blank lines and equations over several lines, so only
    ``max_solution_tokens`` bounds it. Its steps are lines or paragraphs by ``step_format``; a solution
    that ran into ``max_solution_tokens`` is ``cut`` and loses its unfinished last step (`split_steps`).
    """
    zero_shot = roles.solve_prompt is not None and not roles.solve_prompt.demos
    params = SamplingParams(
        n=n, temperature=temperature, top_p=settings.top_p, max_new_tokens=settings.max_solution_tokens,
        stop=() if zero_shot else ("\n\n",), seed=derive_seed(seed, item.id, tag), logprobs=False,
    )
    prompt = prompts.agent_prompt(roles.agent, item, [], solve=roles.solve_prompt)
    out: list[tuple[Candidate, list[str], str]] = []
    (completions,) = yield from ask(Generate("agent", prompt, params))
    for completion in completions:
        cut = completion.finish_reason == "length"
        steps, stop = split_steps(
            completion.text, item, None if zero_shot else settings.max_steps, settings.step_format, cut
        )
        out.append((Candidate(settings.step_separator.join(steps), len(completion.token_ids), cut), steps, stop))
    return out


def chain_of_thought(item: BenchmarkItem, roles: Roles, settings: SearchSettings, seed: int) -> Program:
    """Baseline: one greedy solution, recorded one step (line or paragraph) per step record."""
    started = time.perf_counter()
    (candidate, steps, stop), = yield from sample_solutions(item, roles, settings, 1, 0.0, seed, "cot")
    records = [step_record(None, [Candidate(s, 0)], [None], 0) for s in steps]
    if records:  # the agent's token count belongs to the whole solution: put it on the first step
        records[0]["candidates"][0]["tokens"] = candidate.tokens
    return trace_record(item, "cot", steps, records, stop, roles, started)


def _answer_groups(answers: list[str | None], item: BenchmarkItem) -> list[int | None]:
    """Each answer's group: the index of the first answer equal to it (``18`` and ``18.0``, ``\\frac{1}{2}``
    and ``0.5`` are one), by the grader's own equivalence; None for no answer."""
    groups: list[int | None] = []
    for i, answer in enumerate(answers):
        if answer is None:
            groups.append(None)
            continue
        same = next((j for j in range(i) if groups[j] == j and (answers[j] == answer or _same_answer(answers[j], answer, item))), i)
        groups.append(same)
    return groups


def _same_answer(first: str, second: str, item: BenchmarkItem) -> bool:
    if item.family in ("multiple_choice", "logic"):
        return first == second
    return is_correct(second, item.model_copy(update={"answer": first}))


def self_consistency(item: BenchmarkItem, roles: Roles, settings: SearchSettings, seed: int) -> Program:
    """Baseline: sample k solutions, answer with the most frequent parsed answer (first seen on ties);
    answers the grader holds equal (``18`` and ``18.00``) vote together."""
    started = time.perf_counter()
    samples = yield from sample_solutions(
        item, roles, settings, settings.self_consistency_samples, settings.temperature, seed, "self-consistency"
    )
    answers = [extract_answer(candidate.text, item) for candidate, _, _ in samples]
    groups = _answer_groups(answers, item)
    votes = Counter(g for g in groups if g is not None)
    chosen = 0
    if votes:
        top = max(votes.values())
        chosen = next(g for g in groups if g is not None and votes[g] == top)
    candidates = [candidate for candidate, _, _ in samples]
    scores = [float(votes[g]) if g is not None else None for g in groups]
    _, steps, stop = samples[chosen]
    records = [step_record(None, candidates, scores, chosen)]
    return trace_record(item, "self-consistency", steps, records, stop, roles, started)


def _method_name(base: str, verifier: str) -> str:
    return base if verifier == "implicit" else f"{base}-{verifier}"


def best_of_n(verifier: str) -> MethodProgram:
    """Sample N solutions, score every step by ``verifier``, keep the best by ``aggregate``."""
    name = _method_name("best-of-n", verifier)

    def run(item: BenchmarkItem, roles: Roles, settings: SearchSettings, seed: int) -> Program:
        started = time.perf_counter()
        samples = yield from sample_solutions(item, roles, settings, settings.best_of_n, settings.temperature, seed, "best-of-n")
        verdicts = yield from gather([verify_program(item, steps, roles, settings, verifier=verifier) for _, steps, _ in samples])
        step_scores = [[v.score for v in row] for row in verdicts]
        totals = [aggregate(s, settings.aggregate, probabilities=verifier == "prm") for s in step_scores]
        # A solution cut short before its answer tends to score high on min and product (fewer, earlier
        # steps): the solutions that reached an answer go first, as in beam search and DVTS.
        answered = [has_final_answer(candidate.text, item) for candidate, _, _ in samples]
        chosen = max(range(len(samples)), key=lambda i: (answered[i], totals[i], -i))
        candidates = [candidate for candidate, _, _ in samples]
        records = [
            step_record(None, candidates, totals, chosen, step_scores=[[round(x, 6) for x in s] for s in step_scores])
        ]
        _, steps, stop = samples[chosen]
        return trace_record(item, name, steps, records, stop, roles, started, aggregate=settings.aggregate)

    return run


@dataclass
class _Beam:
    steps: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    done: bool = False  # its last step ends the search (`_ends_search`)

    @property
    def value(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


def beam_search(verifier: str) -> MethodProgram:
    """Keep the ``beam_width`` partial solutions with the best mean ``verifier`` step score (the beams of a
    step are expanded side by side: their calls go out together)."""
    name, rate = _method_name("beam", verifier), HEURISTICS[verifier]

    def run(item: BenchmarkItem, roles: Roles, settings: SearchSettings, seed: int) -> Program:
        started = time.perf_counter()
        beams, finished = [_Beam()], []
        for _ in range(settings.max_steps):
            children = []
            decisions = yield from gather([rate(StepContext(item, beam.steps, roles, settings, seed)) for beam in beams])
            for beam, decision in zip(beams, decisions):
                for j, (candidate, score) in enumerate(zip(decision.candidates, decision.scores)):
                    record = step_record(decision.rationale, decision.candidates, decision.scores, j)
                    children.append(_Beam(
                        beam.steps + [candidate.text], beam.records + [record], beam.scores + [score],
                        _ends_search(candidate, item),
                    ))
            unique = {tuple(c.steps): c for c in children}.values()  # same steps, same path: keep one
            ranked = sorted(unique, key=lambda c: -c.value)
            finished += [c for c in ranked if c.done]
            beams = [c for c in ranked if not c.done][: settings.beam_width]
            if len(finished) >= settings.beam_width or not beams:
                break
        pool, stop = (finished, "answer") if finished else (beams, "max_steps" if beams else "no_candidates")
        best = max(pool, key=lambda c: c.value) if pool else _Beam()
        return trace_record(item, name, best.steps, best.records, stop, roles, started, _uncut(best.steps, best.records),
                            path_score=round(best.value, 6))

    return run


def dvts(verifier: str) -> MethodProgram:
    """Diverse verifier tree search (search-and-learn): the budget of N = ``dvts_budget`` candidate steps per
    round is split into N // M independent subtrees (M = ``beam_width``; one subtree of N when N < M). Each
    subtree samples M candidates from its own seed, keeps the one ``verifier`` rates best, and stops when
    it states an answer; the path with the best aggregated step scores wins. At most N candidates are
    sampled per round and at most N // M paths finish, so the budget can never be exceeded."""
    name, rate = _method_name("dvts", verifier), HEURISTICS[verifier]

    def run(item: BenchmarkItem, roles: Roles, settings: SearchSettings, seed: int) -> Program:
        started = time.perf_counter()
        width = min(settings.beam_width, settings.dvts_budget)
        subtrees = settings.dvts_budget // width
        wide = settings.model_copy(update={"n_candidates": width})
        trees = [_Beam() for _ in range(subtrees)]
        stops = ["max_steps"] * subtrees
        active = list(range(subtrees))
        for _ in range(settings.max_steps):
            if not active:
                break
            decisions = yield from gather([
                rate(StepContext(item, trees[k].steps, roles, wide, derive_seed(seed, "dvts", k))) for k in active
            ])
            still = []
            for k, decision in zip(active, decisions):
                if not decision.candidates:
                    stops[k] = "no_candidates"
                    continue
                tree, chosen = trees[k], decision.chosen
                tree.steps.append(decision.candidates[chosen].text)
                tree.records.append(step_record(decision.rationale, decision.candidates, decision.scores, chosen))
                tree.scores.append(decision.scores[chosen])
                if _ends_search(decision.candidates[chosen], item):
                    stops[k] = "answer"
                else:
                    still.append(k)
            active = still
        totals = [aggregate(t.scores, settings.aggregate, probabilities=verifier == "prm") for t in trees]
        answered = [k for k in range(subtrees) if stops[k] == "answer"] or list(range(subtrees))
        best = max(answered, key=lambda k: (totals[k], -k))
        return trace_record(
            item, name, trees[best].steps, trees[best].records, stops[best], roles, started,
            _uncut(trees[best].steps, trees[best].records), aggregate=settings.aggregate, subtree=best, subtree_scores=[round(t, 6) for t in totals],
        )

    return run


#: Every method with the roles its results depend on (besides the agent, which all use): the pool loads
#: only these, and an eval run's config hash covers only their models.
#: The roles each verifier scores with.
_VERIFIER_ROLES: dict[str, tuple[str, ...]] = {
    "implicit": ("rationalist", "scorer"), "prm": ("prm",), "implicit-prm": ("rationalist", "scorer"),
}
_REGISTRY: list[tuple[str, MethodProgram, tuple[str, ...]]] = [
    ("implicit", guided_search("implicit"), ("rationalist", "scorer")),
    ("explicit", guided_search("explicit"), ("rationalist",)),
    ("random", guided_search("random"), ()),
    ("self-ppl", guided_search("self-ppl"), ("rationalist",)),
    ("llm-judge", guided_search("llm-judge"), ("judge",)),
    ("prm", guided_search("prm"), ("prm",)),
    ("implicit-prm", guided_search("implicit-prm"), ("rationalist", "scorer")),
    ("cot", chain_of_thought, ()),
    ("self-consistency", self_consistency, ()),
    *[
        (_method_name(base, verifier), build(verifier), _VERIFIER_ROLES[verifier])
        for base, build in (("beam", beam_search), ("best-of-n", best_of_n), ("dvts", dvts))
        for verifier in VERIFIERS
    ],
]
PROGRAMS: dict[str, MethodProgram] = {name: program for name, program, _ in _REGISTRY}
METHOD_ROLES: dict[str, tuple[str, ...]] = {name: roles for name, _, roles in _REGISTRY}


def _alone(program: MethodProgram) -> Method:
    def method(item: BenchmarkItem, roles: Roles, settings: SearchSettings, seed: int) -> dict[str, Any]:
        roles.reset()
        return run_one(program(item, roles, settings, seed), roles)

    method.__doc__ = program.__doc__
    return method


METHODS: dict[str, Method] = {name: _alone(program) for name, program in PROGRAMS.items()}


def solve_many(
    method: str, items: Iterable[BenchmarkItem], roles: Roles, settings: SearchSettings, seed: int,
    batch_problems: int = 1,
) -> Iterator[tuple[BenchmarkItem, dict[str, Any] | Exception]]:
    """Solve ``items`` with ``method``, ``batch_problems`` at a time (`batch.run_batch`), yielding
    ``(item, trace)`` as each problem finishes (not in input order); a problem that hit a `RationalystError`
    yields the error. Each problem has its own meters (``roles.fork()``); its trace is the one it would
    have alone, whatever else is in the batch, where the backend seeds each row (`generate_seeded`)."""
    program = PROGRAMS[method]
    items = list(items)

    def jobs():
        for item in items:
            yield (lambda problem_roles, item=item: program(item, problem_roles, settings, seed)), roles.fork()

    for index, result in run_batch(jobs(), batch_problems):
        yield items[index], result


def check_methods(methods: list[str]) -> list[str]:
    """``methods`` without repeats, in order; an unknown name is a ValueError naming the known ones."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
    return list(dict.fromkeys(methods))
