"""The text each model sees during the search, built from the prompt files.

* agent: the task family's few-shot chat (``prompts/solve/<family>.yaml``: an instruction, demos whose
  solutions have one step per line), then the question; the steps chosen so far continue the
  assistant turn, one per line, so the next sampled line is the next step. Zero-shot (no demos), the
  instruction and the question are one user turn, and the steps may be paragraphs (``step_format``):
  each chosen step is followed by a blank line, and the next sampled block is the next step.
* rationalist: exactly its training prompt (`data.rationale_text.rationalist_messages`) with the
  question and the steps so far as the text whose next rationale it writes, and the instruction the
  model was trained with (`Roles.rationalist_instruction`).
* scorer: the question and steps as plain text with the rationale inserted as Stage 3 inserts it
  (`data.rationale_text.scoring_texts`: on a line of its own); the candidate is scored as the text
  that follows.
* judge: ``prompts/search/judge.txt``.

Every prompt of a problem extends the same prompt of its previous step, which is what lets the
backends reuse the trajectory's KV from step to step. ``separator`` is what follows each step in all of
them (`SearchSettings.step_separator`: a newline, or a blank line between paragraphs).
"""

from __future__ import annotations

from functools import lru_cache

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.data.rationale_text import (
    item_trajectory,
    rationalist_messages,
    scoring_texts,
    steps_text,
)
from rationalyst.data.prompt_files import read_prompt_text
from rationalyst.data.solve_prompts import (
    SolvePrompt,
    format_question,
    format_question_text,
    load_solve_prompt,
)
from rationalyst.errors import RationalystError
from rationalyst.lm.base import Message
from rationalyst.lm.prm import RewardRequest

#: What the search's prompts read: the question and the steps so far (`rationale_text.item_trajectory`).
trajectory_text = item_trajectory


def agent_messages(item: BenchmarkItem, solve: SolvePrompt | None = None) -> list[Message]:
    """The few-shot chat that asks the agent to solve ``item`` step by step (``solve``: its prompt,
    default the packaged one of the item's family); without demos, the instruction and the question as
    one user turn, as instruction-tuned models are prompted zero-shot."""
    solve = solve or load_solve_prompt(item.family)
    if not solve.demos:  # zero-shot: the chat models' own format, one user turn (they follow it better)
        return [{"role": "user", "content": f"{solve.instruction}\n\n{format_question(item)}"}]
    messages: list[Message] = [{"role": "system", "content": solve.instruction}]
    for demo in solve.demos:
        messages.append({"role": "user", "content": format_question_text(demo.question, demo.choices)})
        messages.append({"role": "assistant", "content": "\n".join(demo.steps)})
    messages.append({"role": "user", "content": format_question(item)})
    return messages


def _plain_few_shot(messages: list[Message]) -> str:
    """The same few-shot prompt for models without a chat template."""
    parts = [messages[0]["content"], ""]
    for message in messages[1:]:
        if message["role"] == "user":
            parts.append(f"Question: {message['content']}\nSolution:")
        else:
            parts.append(f"{message['content']}\n")
    return "\n".join(parts) + "\n"


def agent_prompt(
    agent,
    item: BenchmarkItem,
    steps: list[str],
    rationale: str | None = None,
    step_rationales: list[str | None] | None = None,
    solve: SolvePrompt | None = None,
    separator: str = "\n",
) -> str:
    """The agent's prompt for its next step.

    Explicit supervision puts rationales in the agent's view, each as one more line of the solution
    (placed inline, a small agent often just ends the line; a paragraph of its own between paragraph
    steps): ``rationale`` before the step to write, and
    ``step_rationales[i]`` (when given) before step i, so the agent keeps the earlier rationales in its
    context as the paper's agent does.
    """
    messages = agent_messages(item, solve)
    try:
        prefix = agent.render(messages)
    except (RationalystError, NotImplementedError):
        prefix = _plain_few_shot(messages)
    if step_rationales:
        lines = []
        for step, earlier in zip(steps, step_rationales):
            lines += [earlier.strip()] if earlier and earlier.strip() else []
            lines.append(step)
        text = prefix + steps_text(lines, separator)
    else:
        text = prefix + steps_text(steps, separator)
    return f"{text}{rationale.strip()}{separator}" if rationale and rationale.strip() else text


def rationalist_prompt(
    item: BenchmarkItem, steps: list[str], instruction: str | None, separator: str = "\n"
) -> list[Message]:
    """The rationalist's prompt: the trajectory so far with the instruction it was trained with."""
    return rationalist_messages(trajectory_text(item, steps, separator), instruction)


def scorer_context(item: BenchmarkItem, steps: list[str], rationale: str | None, separator: str = "\n") -> str:
    """The scorer's context: the trajectory, with the rationale inserted as Stage 3 inserts it (on a
    line of its own before the candidate step, or a paragraph of its own between paragraphs) when there
    is one."""
    # The trajectory ends in the separator, so the candidate (the scored text) is left as it is.
    return scoring_texts(trajectory_text(item, steps, separator), rationale, "").with_rationale


def prm_request(item: BenchmarkItem, steps: list[str]) -> RewardRequest:
    """What a process reward model rates: the question (with options) and the steps."""
    return RewardRequest(format_question(item), list(steps))


def judge_prompt(item: BenchmarkItem, steps: list[str], candidate: str, separator: str = "\n") -> list[Message]:
    """The llm-judge baseline's question about one candidate step."""
    content = _judge_template().format(
        question=format_question(item), steps=steps_text(steps, separator).strip() or "(no steps yet)",
        candidate=candidate,
    )
    return [{"role": "user", "content": content}]


@lru_cache(maxsize=1)
def _judge_template() -> str:
    return read_prompt_text("search", "judge.txt", what="judge prompt")
