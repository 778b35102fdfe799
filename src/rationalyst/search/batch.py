"""Many problems in lockstep: the methods as programs that ask for model calls, and the scheduler that
gathers the calls of every active problem into one engine call per kind.

A method is written as a *program* (a generator): it yields a list of calls (`Generate`: one prompt,
its sampling params and seed; `Score`: one `ScoreRequest`; `Reward`: one solution for a process reward
model) and is sent back their results, in order,
once all are answered; it returns the problem's trace. `run_batch` keeps up to ``batch_problems``
programs active. Each round it takes the calls that share a *kind* (role, operation, sampling params
other than the seed) from every active problem and makes one engine call of them: one ``generate``
with the rationale prompts of all problems, one with all their candidate prompts (n each, every row
sampled with its own problem's seed: `LanguageModel.generate_seeded`), one ``score_many`` with all
their candidates. Generations of different kinds waiting for the same engine go out together as one
``generate_mixed`` call (each prompt with its own params): where one model is both rationalist and
agent, a problem's rationale and candidates (asked for together by the implicit heuristic) and the
generations of problems at other phases share one decode loop on hf. The kind asked for by the most
problems goes first (a call that has waited ``_PATIENCE`` rounds goes first whatever its count), so
problems that start late fall into step with the others instead of doubling the calls. A problem
that finishes is handed out at once and a new one from the queue takes its place (continuous
batching at problem level).

An engine that offers a stream (`HFModel.open_stream`, `LlamaCppModel.open_stream`: continuous
batching at the token level, as vLLM's ``add_request`` / ``step``) takes generations as soon as a problem asks for them instead of in
rounds: its decode loop runs one step at a time, a problem whose generations finish goes on to its
scores at once (with those of any other problem that finished in the same step), and its next step
joins the loop while the other problems are still decoding. A round would wait for the slowest
sample of every problem in it.

Cost stays per problem. A batched call's cost is split across the problems in it: tokens exactly per
row (the tokens generated for that row; for scoring, the tokens the engine ran for that request where
the backend counts them per request, as hf does, else the call's forwarded tokens split in
proportion to the tokens scored), seconds in proportion to those tokens (equal shares when a call
counted none). A trace's ``seconds.total`` is the problem's share of engine time plus the time its
own program code ran: its cost, not the wall time it spent waiting for the batch. With a batch of
one every call is the problem's own, so traces equal those of a problem run alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from rationalyst.errors import PromptTooLongError, RationalystError
from rationalyst.lm.base import Prompt, SamplingParams, ScoreRequest
from rationalyst.lm.prm import RewardRequest
from rationalyst.search.roles import Roles

T = TypeVar("T")


@dataclass(frozen=True)
class Generate:
    """Sample ``params.n`` completions of ``prompt`` from ``role``'s model, seeded by ``params.seed``."""

    role: str
    prompt: Prompt
    params: SamplingParams

    def kind(self) -> tuple:
        return (self.role, "generate", self.params.model_copy(update={"seed": None}))


@dataclass(frozen=True)
class Score:
    """Score ``request``'s continuations with ``role``'s model."""

    role: str
    request: ScoreRequest

    def kind(self) -> tuple:
        return (self.role, "score")


@dataclass(frozen=True)
class Reward:
    """Rate every step of ``request`` with ``role``'s process reward model (`lm.prm`)."""

    role: str
    request: RewardRequest

    def kind(self) -> tuple:
        return (self.role, "reward")


Call = Union[Generate, Score, Reward]
#: A method on one problem: yields lists of calls, is sent their results, returns the trace.
Program = Generator[list[Call], list[Any], Any]

#: Rounds a call may wait for its kind to be chosen before it goes first anyway.
_PATIENCE = 6


def ask(*calls: Call) -> Generator[list[Call], list[Any], list[Any]]:
    """``results = yield from ask(call, ...)``: the results of ``calls``, in order."""
    return (yield list(calls))


def gather(programs: list[Generator[list[Call], list[Any], T]]) -> Generator[list[Call], list[Any], list[T]]:
    """Run sub-programs side by side (e.g. the beams of one problem): their calls go out together."""
    results: list[Any] = [None] * len(programs)
    waiting: dict[int, list[Call]] = {}
    for i, program in enumerate(programs):
        try:
            waiting[i] = program.send(None)
        except StopIteration as stop:
            results[i] = stop.value
    while waiting:
        answers = yield [call for calls in waiting.values() for call in calls]
        at, nxt = 0, {}
        for i, calls in waiting.items():
            part, at = answers[at : at + len(calls)], at + len(calls)
            try:
                nxt[i] = programs[i].send(part)
            except StopIteration as stop:
                results[i] = stop.value
        waiting = nxt
    return results


@dataclass
class _Problem:
    index: int
    program: Program
    roles: Roles
    calls: list[Call] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    missing: int = 0
    waited: int = 0
    seconds: float = 0.0  # own share of engine time + own program time
    streamed: set[int] = field(default_factory=set)  # calls handed to an engine's stream, not yet answered

    def advance(self, value: Any) -> tuple[bool, Any]:
        """Send ``value``; (True, trace) when the program finished, else (False, None) with new calls."""
        start = time.perf_counter()
        try:
            calls = self.program.send(value)
        except StopIteration as stop:
            self.seconds += time.perf_counter() - start
            return True, stop.value
        self.seconds += time.perf_counter() - start
        self.calls, self.answers, self.missing, self.waited = list(calls), [None] * len(calls), len(calls), 0
        self.streamed = set()
        if not calls:
            raise RuntimeError("a search program yielded no calls")
        return False, None


def _share(total: float, weights: list[float]) -> list[float]:
    whole = sum(weights)
    return [total * w / whole for w in weights] if whole > 0 else [total / len(weights)] * len(weights)


def _execute(kind: tuple, rows: list[tuple[_Problem, int]]) -> None:
    """One engine call for ``rows`` (problem, call index), all of ``kind``; answers and meters each row."""
    role = kind[0]
    model = getattr(rows[0][0].roles, role).model
    calls = [problem.calls[i] for problem, i in rows]
    start = time.perf_counter()
    if kind[1] == "generate":
        if all(c.kind() == kind for c in calls):
            out = model.generate_seeded([c.prompt for c in calls], kind[2], [c.params.seed for c in calls])
        else:  # several kinds on one engine (`_choose`): each prompt with its own params, one call
            out = model.generate_mixed([c.prompt for c in calls], [c.params for c in calls])
        seconds = time.perf_counter() - start
        tokens = [sum(len(c.token_ids) for c in row) for row in out]
    elif kind[1] == "reward":
        out = model.step_rewards([c.request for c in calls])
        seconds = time.perf_counter() - start
        tokens = list(model.forwarded_per_request)
    else:
        before = getattr(model, "forwarded_tokens", None)
        out = model.score_many([c.request for c in calls])
        seconds = time.perf_counter() - start
        scored = [sum(len(s.token_ids) for s in row) for row in out]
        per_request = getattr(model, "forwarded_per_request", None)
        if before is None:  # engines that do not count: the scored tokens, a lower bound
            tokens = scored
        elif isinstance(per_request, list) and len(per_request) == len(calls):
            tokens = list(per_request)
        else:
            tokens = _share(model.forwarded_tokens - before, scored)
            tokens = [round(t) for t in tokens]
    for (problem, i), answer, n, secs in zip(rows, out, tokens, _share(seconds, [float(t) for t in tokens])):
        _answer(problem, i, answer, n, secs)


def _answer(problem: _Problem, i: int, answer: Any, tokens: int, seconds: float) -> None:
    """Hand call ``i`` of ``problem`` its answer, and meter its tokens and seconds on the call's role."""
    meter = getattr(problem.roles, problem.calls[i].role).meter
    meter.tokens += tokens
    meter.seconds += seconds
    problem.seconds += seconds
    problem.answers[i] = answer
    problem.missing -= 1
    problem.streamed.discard(i)


def _choose(problems: list[_Problem]) -> tuple[tuple, list[tuple[_Problem, int]]]:
    """The kind to run this round and its rows, in problem order."""
    groups: dict[tuple, list[tuple[_Problem, int]]] = {}
    for problem in problems:
        for i, call in enumerate(problem.calls):
            if problem.answers[i] is None and i not in problem.streamed:
                groups.setdefault(call.kind(), []).append((problem, i))

    def priority(item):
        kind, rows = item
        overdue = any(p.waited >= _PATIENCE for p, _ in rows)
        return (overdue, len({id(p) for p, _ in rows}))

    kind, rows = max(groups.items(), key=priority)  # first seen wins ties
    if kind[1] == "generate":
        # Every generation waiting for the same engine goes in the same call, whatever its params: the
        # rationales and the candidates of all problems (one decode loop on hf), not one call per kind.
        engine = getattr(rows[0][0].roles, kind[0]).model
        place = {id(p): n for n, p in enumerate(problems)}
        for other, more in groups.items():
            if other != kind and other[1] == "generate" and getattr(more[0][0].roles, other[0]).model is engine:
                rows = rows + more
        rows.sort(key=lambda row: (place[id(row[0])], row[1]))
    return kind, rows


def _stream(call: Call, problem: _Problem, streams: dict[int, Any]) -> Any:
    """The stream of the engine that answers ``call``, if it is a generation on an engine whose class has
    one (`HFModel.open_stream`), opened on first use; else None. The class, not the instance: a wrapper
    that forwards attributes to a model and overrides its ``generate*`` keeps its calls."""
    if not isinstance(call, Generate):
        return None
    engine = getattr(problem.roles, call.role).model
    if id(engine) not in streams:
        streams[id(engine)] = engine.open_stream() if callable(getattr(type(engine), "open_stream", None)) else None
    return streams[id(engine)]


def run_batch(
    programs: Iterable[tuple[Callable[[Roles], Program], Roles]], batch_problems: int = 1
) -> Iterator[tuple[int, Any]]:
    """Run ``(make_program, roles)`` pairs, up to ``batch_problems`` at once, yielding ``(index, trace)``
    as each finishes (index: its place in ``programs``). A problem whose own prompt does not fit its
    model (`PromptTooLongError`), or whose program raised a `RationalystError`, yields the error instead
    of a trace; any other engine error (a server down) propagates, after the traces already yielded.
    ``roles`` meter that problem alone.

    Generations on an engine with a stream (hf: continuous batching at the token level) go into it as
    soon as a problem asks for them; the other calls go in rounds as in the module docstring. A round
    runs whenever a problem waits for one of them (the scores of the problems whose generations just
    finished); otherwise the streams advance one decode step.
    """
    queue = iter(enumerate(programs))
    active: list[_Problem] = []
    finished: list[tuple[int, Any]] = []
    streams: dict[int, Any] = {}  # engine id -> its stream, or None for an engine without one
    by_index: dict[int, _Problem] = {}

    def start_or_finish(problem: _Problem, value: Any) -> None:
        try:
            done, trace = problem.advance(value)
        except RationalystError as exc:
            done, trace = True, exc
        if done:
            finish(problem, trace)

    def finish(problem: _Problem, trace: Any) -> None:
        """Hand out ``problem``'s trace, or the `RationalystError` that ended it."""
        active.remove(problem)
        by_index.pop(problem.index, None)
        if isinstance(trace, dict) and isinstance(trace.get("seconds"), dict):
            trace["seconds"]["total"] = round(problem.seconds, 4)
        finished.append((problem.index, trace))

    def to_streams() -> None:
        """Hand every new generation of an engine with a stream to it: one join per engine."""
        batches: dict[int, tuple[Any, list[tuple[_Problem, int]]]] = {}
        for problem in active:
            for i, call in enumerate(problem.calls):
                if problem.answers[i] is None and i not in problem.streamed:
                    stream = _stream(call, problem, streams)
                    if stream is not None:
                        batches.setdefault(id(stream), (stream, []))[1].append((problem, i))
        for stream, rows in batches.values():
            try:
                _add(stream, rows)
            except PromptTooLongError:  # one problem's prompt can sink the join: each alone, as `_execute`
                for problem in {id(p): p for p, _ in rows}.values():
                    try:
                        _add(stream, [(p, i) for p, i in rows if p is problem])
                    except PromptTooLongError as exc:
                        finish(problem, exc)

    def step_streams() -> None:
        for stream in streams.values():
            if stream is None or not stream.busy:
                continue
            for (index, i), completions, seconds in stream.step():
                problem = by_index.get(index)
                if problem is None:
                    continue
                _answer(problem, i, completions, sum(len(c.token_ids) for c in completions), seconds)
                if problem.missing == 0:
                    start_or_finish(problem, problem.answers)

    exhausted = False
    while True:
        while not exhausted and len(active) < batch_problems:
            nxt = next(queue, None)
            if nxt is None:
                exhausted = True
                break
            index, (make, roles) = nxt
            problem = _Problem(index, make(roles), roles)
            active.append(problem)
            by_index[index] = problem
            start_or_finish(problem, None)
            yield from finished
            finished.clear()
        if not active:
            return
        to_streams()
        decoding = any(s is not None and s.busy for s in streams.values())
        waiting = [p for p in active if any(a is None and i not in p.streamed for i, a in enumerate(p.answers))]
        if not active:  # every problem left failed its join
            pass
        elif decoding and not waiting:
            step_streams()
        elif waiting:
            kind, rows = _choose(waiting)
            try:
                _execute(kind, rows)
            except PromptTooLongError:
                # One problem's prompt can sink a whole batched call: retry each problem alone, and
                # fail only the problems whose own call fails. Any other engine error (a server down,
                # a refused key) ends the run: the problems it hit are not theirs to fail.
                by_problem: dict[int, list[tuple[_Problem, int]]] = {}
                for row in rows:
                    by_problem.setdefault(id(row[0]), []).append(row)
                for own in by_problem.values():
                    try:
                        _execute(kind, own)
                    except PromptTooLongError as exc:
                        finish(own[0][0], exc)
            chosen = {id(p) for p, _ in rows}
            for problem in list(active):
                if id(problem) not in chosen:
                    problem.waited += 1
                elif problem.missing == 0:
                    start_or_finish(problem, problem.answers)
        else:
            raise RuntimeError("problems wait for nothing that runs")  # pragma: no cover - a scheduler bug
        yield from finished
        finished.clear()


def _add(stream: Any, rows: list[tuple[_Problem, int]]) -> None:
    """Add calls ``rows`` (problem, call index), generations all, to ``stream``; tagged (problem index, call)."""
    calls = [problem.calls[i] for problem, i in rows]
    stream.add([c.prompt for c in calls], [c.params for c in calls], [(problem.index, i) for problem, i in rows])
    for problem, i in rows:
        problem.streamed.add(i)


def run_one(program: Program, roles: Roles) -> Any:
    """Run one program to its end on ``roles`` (a batch of one); a `RationalystError` is raised."""
    ((_, result),) = list(run_batch([(lambda _roles: program, roles)], 1))
    if isinstance(result, RationalystError):
        raise result
    return result
