"""The text each model sees during the search, built from the prompt files.

* agent: the task family's few-shot chat (``prompts/solve/<family>.yaml``: an instruction, demos whose
  solutions have one step per line), then the question; the steps chosen so far continue the
  assistant turn, one per line, so the next sampled line is the next step.
* rationalist: exactly its training prompt (`stages.train.chat_messages`) with the question and the
  steps so far as the text whose next rationale it writes.
* scorer: the question and steps as plain text with the rationale inserted as Stage 3 inserts it
  (`stages.filter.context_with_rationale`); the candidate is scored as the text that follows.
* judge: ``prompts/search/judge.txt``.

Every prompt of a problem extends the same prompt of its previous step, which is what lets the
backends reuse the trajectory's KV from step to step.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.data.solve_prompts import (
    format_question,
    format_question_text,
    load_solve_prompt,
)
from rationalyst.errors import RationalystError
from rationalyst.lm.base import Message
from rationalyst.stages.filter import context_with_rationale
from rationalyst.stages.train import chat_messages, load_instruction


def steps_text(steps: list[str]) -> str:
    """The steps as solution lines, each ending in a newline."""
    return "".join(f"{step}\n" for step in steps)


def trajectory_text(item: BenchmarkItem, steps: list[str]) -> str:
    """The question and the steps so far as plain text (what the rationalist and the scorer read)."""
    return f"{format_question(item)}\n{steps_text(steps)}"


def agent_messages(item: BenchmarkItem) -> list[Message]:
    """The few-shot chat that asks the agent to solve ``item`` step by step."""
    solve = load_solve_prompt(item.family)
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


def agent_prompt(agent, item: BenchmarkItem, steps: list[str], rationale: str | None = None) -> str:
    """The agent's prompt for its next step; ``rationale`` (explicit supervision) is put in its view."""
    messages = agent_messages(item)
    try:
        prefix = agent.render(messages)
    except (RationalystError, NotImplementedError):
        prefix = _plain_few_shot(messages)
    text = prefix + steps_text(steps)
    # The rationale reads as one more line of the solution, so the agent's next line is the step it
    # leads to (placed inline, a small agent often just ends the line).
    return f"{text}{rationale.strip()}\n" if rationale else text


def rationalist_prompt(item: BenchmarkItem, steps: list[str]) -> list[Message]:
    """The rationalist's prompt: its training instruction with the trajectory so far."""
    return chat_messages(_instruction(), trajectory_text(item, steps))


def scorer_context(item: BenchmarkItem, steps: list[str], rationale: str | None) -> str:
    """The scorer's context: the trajectory, followed by the rationale when there is one."""
    text = trajectory_text(item, steps)
    return context_with_rationale(text, rationale) if rationale else text


def judge_prompt(item: BenchmarkItem, steps: list[str], candidate: str) -> list[Message]:
    """The llm-judge baseline's question about one candidate step."""
    content = _judge_template().format(
        question=format_question(item), steps=steps_text(steps).strip() or "(no steps yet)", candidate=candidate
    )
    return [{"role": "user", "content": content}]


@lru_cache(maxsize=1)
def _instruction() -> str:
    return load_instruction()


@lru_cache(maxsize=1)
def _judge_template() -> str:
    return resources.files("rationalyst").joinpath("prompts", "search", "judge.txt").read_text("utf-8").strip()
