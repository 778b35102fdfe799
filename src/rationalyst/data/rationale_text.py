"""The text a rationale is written about: one definition for mining, training and inference.

RATIONALYST's rationalist is trained on ``preceding`` text cut from documents and asked at inference
about a search trajectory (question, options, steps so far). Its numbers mean something only when the
two have the same shape, and the filter's with/without scores only when both score the same tokens.
Everything that decides those strings lives here, and nowhere else:

* `document_text`: a benchmark item as a corpus document, the paper's "question, then worked
  solution": the question with its options exactly as the search shows them, then the solution one
  step per line, ending with the family's answer statement ("The answer is 72.").
* `trajectory_text`: the question and the steps so far, as the search shows them; cut at a step
  boundary, a `document_text` is a trajectory.
* `rationalist_messages`: the rationalist's chat prompt for a preceding text, used by the train stage
  and by the search alike (trailing whitespace of the text is not part of it, so a document cut before
  the newline and a trajectory ending in one give the same prompt). Two profiles: ``rationalyst`` (an
  instruction, a blank line, the text) and ``paper-release`` (the text alone, as the authors' released
  rationalist was trained).
* `scoring_texts`: where a rationale goes for scoring the text after it (Stage 3's filter, Stage 5's
  scorer). The whitespace at the boundary is moved into the context, and the rationale is inserted as its
  own segment between two copies of that whitespace, so the text scored starts at a fixed place that no
  tokenizer merges across (``".\\n"`` is one Llama-3 token: it now sits in both contexts, never in the
  scored text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rationalyst.data.answers import has_final_answer
from rationalyst.data.prompt_files import read_prompt_text
from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.data.solve_prompts import Demo, SolvePrompt, format_question, load_solve_prompt
from rationalyst.errors import RationalystError

#: The rationalist's prompt profiles (see the module docstring).
RationalistFormat = Literal["rationalyst", "paper-release"]
RATIONALIST_FORMATS: tuple[str, ...] = ("rationalyst", "paper-release")
#: Written beside a trained rationalist: the instruction its user turn starts with.
INSTRUCTION_FILE = "instruction.txt"

_CALCULATOR = re.compile(r"<<[^<>]*>>")
_GSM8K_FINAL = re.compile(r"^\s*####\s*(.+?)\s*$")
# Outside $...$, a sentence ends at . ! ? followed by whitespace and an upper-case letter, a digit or math.
_DOLLAR_OR_BREAK = re.compile(r"(?<!\\)\$|(?<=[.!?])\s+(?=[A-Z0-9\\$])")


# ============================================================================ documents and trajectories


def steps_text(steps: list[str], separator: str = "\n") -> str:
    """The steps as solution text, each followed by ``separator``: a newline (one step per line), or a
    blank line where the steps are paragraphs (``"\n\n"``, a chat model's own answer format)."""
    return "".join(f"{step}{separator}" for step in steps)


def trajectory_text(question_text: str, steps: list[str], separator: str = "\n") -> str:
    """The question (with options, as `format_question_text` writes it) and the steps so far, each
    followed by ``separator`` (as `steps_text`)."""
    return f"{question_text}{separator}{steps_text(steps, separator)}"


def item_trajectory(item: BenchmarkItem, steps: list[str], separator: str = "\n") -> str:
    """`trajectory_text` of a benchmark item."""
    return trajectory_text(format_question(item), steps, separator)


def answer_statement(item: BenchmarkItem) -> str:
    """The step that states the item's gold answer in its family's form."""
    if item.family == "math":
        return f"The answer is $\\boxed{{{item.answer}}}$."
    return f"The answer is {item.answer}."


def _sentences(text: str) -> list[str]:
    """``text`` as sentences, outside ``$...$`` only (LaTeX keeps its periods)."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        pieces, start, in_math = [], 0, False
        for m in _DOLLAR_OR_BREAK.finditer(line):
            if m.group() == "$":
                in_math = not in_math
            elif not in_math:
                pieces.append(line[start : m.start()])
                start = m.end()
        pieces.append(line[start:])
        out += [p.strip() for p in pieces if p.strip()]
    return out


def solution_steps(item: BenchmarkItem) -> list[str] | None:
    """The item's worked solution one step per line, ending with a step that states the answer;
    None when the item has no solution.

    GSM8K solutions lose their calculator annotations (``<<48/2=24>>``) and their ``#### 72`` line
    becomes "The answer is 72."; other solutions are split into sentences. A solution whose last step
    states no answer the search can read gets `answer_statement` as its last step.
    """
    if not item.solution or not item.solution.strip():
        return None
    if item.family == "arithmetic":
        steps = []
        for line in item.solution.splitlines():
            final = _GSM8K_FINAL.match(line)
            if final:
                steps.append(f"The answer is {final.group(1).replace(',', '')}.")
                break
            line = _CALCULATOR.sub("", line).strip()
            if line:
                steps.append(line)
    else:
        steps = _sentences(item.solution)
    if not steps:
        return None
    if not has_final_answer(steps[-1], item):
        steps.append(answer_statement(item))
    return steps


def document_text(item: BenchmarkItem) -> str | None:
    """A benchmark item as a corpus document: its question and options, then its worked solution one
    step per line (None without a solution). Cut before any step, it reads as the trajectory the search
    builds (`item_trajectory`) up to trailing whitespace."""
    steps = solution_steps(item)
    return None if steps is None else item_trajectory(item, steps).rstrip()


# ============================================================================ the rationalist's prompt


def load_instruction(path: Path | str | None = None) -> str:
    """The rationalist's instruction: ``path`` or the packaged ``prompts/train/instruction.txt``."""
    if path is not None:
        return read_prompt_text("train", Path(path).name, Path(path).parent, what="rationalist instruction")
    return read_prompt_text("train", INSTRUCTION_FILE, what="rationalist instruction")


def saved_instruction_file(spec: str) -> Path | None:
    """``instruction.txt`` beside a trained rationalist named by a local folder (``hf:<folder>``,
    ``vllm:<folder>``), if there is one."""
    _, _, target = spec.partition(":")
    path = Path(target) / INSTRUCTION_FILE if target else None
    return path if path is not None and path.is_file() else None


def rationalist_instruction(spec: str, fmt: str | None = None) -> str | None:
    """The instruction to prompt the rationalist ``spec`` with (None: the text alone).

    ``fmt`` None: as the model was trained, read from its ``instruction.txt`` (written by the train
    stage; empty for a ``paper-release`` model), else the packaged instruction. ``fmt`` given: that
    profile (``rationalyst`` still prefers the model's own saved instruction).
    """
    saved = saved_instruction_file(spec)
    if fmt == "paper-release":
        return None
    if fmt not in (None, "rationalyst"):
        raise RationalystError(f"unknown rationalist format {fmt!r} (choose from {', '.join(RATIONALIST_FORMATS)})")
    if saved is not None:
        text = load_instruction(saved)
        return text or (None if fmt is None else load_instruction())
    return load_instruction()


def rationalist_context(preceding: str) -> str:
    """The text the rationalist reads: ``preceding`` without trailing whitespace."""
    return preceding.rstrip()


def rationalist_user_turn(preceding: str, instruction: str | None) -> str:
    """The user turn: the instruction, a blank line, the text (``instruction`` None: the text alone)."""
    text = rationalist_context(preceding)
    return text if instruction is None else f"{instruction}\n\n{text}"


def rationalist_messages(preceding: str, instruction: str | None) -> list[dict[str, str]]:
    """The rationalist's chat prompt, for training and for inference alike."""
    return [{"role": "user", "content": rationalist_user_turn(preceding, instruction)}]


def instruction_for(fmt: str, instruction: str | None = None) -> str | None:
    """The instruction a prompt profile uses: ``paper-release`` none, ``rationalyst`` the given one or
    the packaged one."""
    if fmt not in RATIONALIST_FORMATS:
        raise RationalystError(f"unknown rationalist format {fmt!r} (choose from {', '.join(RATIONALIST_FORMATS)})")
    if fmt == "paper-release":
        return None
    return instruction if instruction is not None else load_instruction()


# ============================================================================ scoring with a rationale


@dataclass(frozen=True)
class ScoringTexts:
    """The two contexts of a with/without comparison and the text scored after each."""

    without: str
    with_rationale: str
    following: str


def scoring_texts(preceding: str, rationale: str | None, following: str) -> ScoringTexts:
    """Contexts without and with ``rationale`` for scoring ``following``, whose tokens are the same in
    both passes.

    The whitespace around the boundary (the end of ``preceding``, the start of ``following``) is the
    boundary's. With a line break in it, all of it joins the contexts and the rationale becomes its own
    line (paragraph): ``"a.\\nb"`` -> ``"a.\\n"`` | ``"b"`` and ``"a.\\nR\\n"`` | ``"b"``. With spaces
    only, they stay at the head of the scored text (a word's tokens carry the space before it) and the
    rationale follows a space: ``"a. b"`` -> ``"a."`` | ``" b"`` and ``"a. R"`` | ``" b"``. Without any
    whitespace the rationale still follows a space, and a tokenizer may merge the scored text's first
    characters differently (the filter counts such records).
    """
    core = preceding.rstrip()
    rest = following.lstrip()
    boundary = preceding[len(core) :] + following[: len(following) - len(rest)]
    r = (rationale or "").strip()
    if "\n" in boundary:
        without = core + boundary
        with_rationale = f"{core}{boundary}{r}{boundary}" if core else f"{r}{boundary}"
        return ScoringTexts(without, with_rationale if r else without, rest)
    without = core
    with_rationale = f"{core} {r}" if core else r
    return ScoringTexts(without, with_rationale if r else without, boundary + rest)


# ============================================================================ few-shot demos from a train split


def train_demo_prompt(
    family: str, train_items: list[BenchmarkItem], count: int, seed: int, exclude: set[str] = frozenset()
) -> SolvePrompt:
    """The family's packaged instruction with ``count`` worked solutions drawn (seeded) from
    ``train_items`` as demos, one step per line; items in ``exclude`` (those being evaluated) and
    solutions the search could not read as a demo are passed over."""
    import random

    packaged = load_solve_prompt(family)
    pool = [item for item in train_items if item.id not in exclude and item.solution]
    random.Random(seed).shuffle(pool)
    demos: list[Demo] = []
    for item in pool:
        steps = solution_steps(item)
        if steps is None or any(has_final_answer(s, item) for s in steps[:-1]):
            continue
        demos.append(Demo(question=item.question, choices=item.choices, steps=steps))
        if len(demos) == count:
            break
    if len(demos) < count:
        raise RationalystError(f"demos: train needs {count} worked solutions, the train split has {len(demos)} usable")
    return SolvePrompt(family=family, instruction=packaged.instruction, demos=demos)
