"""lm-evaluation-harness against `rationalyst serve`, offline: the accuracy lm-eval reports equals the
accuracy rationalyst's answer checker gives the same items on the responses lm-eval saved.

Two tasks over local JSONL (no hub), written by the test: a generate_until task (arithmetic word
problems) through ``local-chat-completions`` against the rationale-guided search (``serve --guided``),
and a loglikelihood multiple-choice task through ``local-completions`` (echo + logprobs) against the
plain default model. The commands are the ones in docs/lm-eval.md. Run with ``make test-lmeval``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rationalyst.data.answers import extract_answer, is_correct
from rationalyst.data.benchmarks import LETTERS, BenchmarkItem
from rationalyst.lm.builtin import DEFAULT_LM

pytestmark = pytest.mark.lmeval

ARITHMETIC = [
    {"id": "a1", "question": "Tom has 3 apples and buys 5 more. How many apples does he have?", "answer": "8"},
    {"id": "a2", "question": "Sara had 10 candies and ate 3. How many candies are left?", "answer": "7"},
]
MULTIPLE_CHOICE = [
    {"id": "m1", "question": "What color is the sky on a clear day?", "choices": ["blue", "green", "red"], "answer": 0},
    {"id": "m2", "question": "How many legs does a dog have?", "choices": ["two", "four", "six"], "answer": 1},
    {"id": "m3", "question": "Which animal says meow?", "choices": ["a cow", "a duck", "a cat"], "answer": 2},
    {"id": "m4", "question": "What do bees make?", "choices": ["honey", "milk", "glass"], "answer": 0},
]
# The search the guided model runs: short, so the tier stays within minutes on 2 CPU cores.
GUIDED_RECIPE = "method: implicit\nsearch:\n  n_candidates: 2\n  max_steps: 3\n  max_step_tokens: 24\n"

GENERATE_TASK = """task: rationalyst_arithmetic
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n\\n\\n"]
  max_gen_toks: 64
  do_sample: false
filter_list:
  - name: answer
    filter:
      - function: regex
        regex_pattern: "answer is \\\\$?(-?[0-9][0-9,]*(?:\\\\.[0-9]+)?)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    regexes_to_ignore: [","]
"""

CHOICE_TASK = """task: rationalyst_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def _lm_eval() -> str:
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (make test-lmeval installs it)")
    found = Path(sys.executable).parent / "lm_eval"
    return str(found) if found.exists() else shutil.which("lm_eval") or pytest.skip("no lm_eval command")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`rationalyst serve --guided` on the default model, on 127.0.0.1, for the whole module."""
    import httpx

    folder = tmp_path_factory.mktemp("serve")
    (folder / "guided.yaml").write_text(GUIDED_RECIPE)
    port = _free_port()
    command = [str(Path(sys.executable).parent / "rationalyst"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--guided", "--guided-config", str(folder / "guided.yaml")]
    log = open(folder / "serve.log", "w")
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert child.poll() is None, (folder / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start: " + (folder / "serve.log").read_text()
            time.sleep(0.5)
        yield base
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()


def _write_task(folder: Path, template: str, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "items.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "task.yaml").write_text(template.format(data=data))


def _run_lm_eval(task_dir: Path, task: str, model: str, model_args: str, out: Path, *extra: str) -> tuple[dict, list[dict]]:
    """Run lm_eval offline; its reported metrics for ``task`` and its saved samples."""
    command = [_lm_eval(), "--model", model, "--model_args", model_args, "--tasks", task,
               "--include_path", str(task_dir), "--batch_size", "1", "--log_samples", "--output_path", str(out), *extra]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    results = json.loads(max(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime).read_text())
    samples = [json.loads(line) for f in out.rglob(f"samples_{task}_*.jsonl") for line in f.read_text().splitlines()]
    return results["results"][task], samples


def test_generate_until_against_the_guided_search_matches_the_answer_checker(server, tmp_path):
    _write_task(tmp_path / "tasks", GENERATE_TASK, ARITHMETIC)
    metrics, samples = _run_lm_eval(
        tmp_path / "tasks", "rationalyst_arithmetic", "local-chat-completions",
        f"model=rationalyst-guided,base_url={server}/chat/completions,num_concurrent=1,max_retries=1",
        tmp_path / "out", "--apply_chat_template",
    )
    assert sorted(s["doc"]["id"] for s in samples) == sorted(r["id"] for r in ARITHMETIC)
    checked = []
    for sample in samples:
        doc = sample["doc"]
        item = BenchmarkItem(id=doc["id"], benchmark="lmeval", family="arithmetic", question=doc["question"], answer=doc["answer"])
        response = sample["resps"][0][0]
        assert response.strip(), "the guided model answered nothing"
        correct = is_correct(extract_answer(response, item), item)
        assert float(sample["exact_match"]) == float(correct), (response, doc)  # item by item
        checked.append(correct)
    assert metrics["exact_match,answer"] == pytest.approx(sum(checked) / len(checked))


def test_loglikelihood_choices_against_the_plain_model_match_the_answer_checker(server, tmp_path):
    from rationalyst.lm.registry import ModelConfig
    from rationalyst.lm.registry import base_model_folder

    tokenizer = base_model_folder(ModelConfig(spec=DEFAULT_LM))  # the converted local folder of the default model
    _write_task(tmp_path / "tasks", CHOICE_TASK, MULTIPLE_CHOICE)
    metrics, samples = _run_lm_eval(
        tmp_path / "tasks", "rationalyst_choice", "local-completions",
        f"model={DEFAULT_LM},base_url={server}/completions,tokenizer={tokenizer},tokenizer_backend=huggingface,"
        "num_concurrent=1,max_retries=1",
        tmp_path / "out",
    )
    assert sorted(s["doc"]["id"] for s in samples) == sorted(r["id"] for r in MULTIPLE_CHOICE)
    checked = []
    for sample in samples:
        doc = sample["doc"]
        lls = [float(resp[0]) for resp in sample["filtered_resps"]]  # saved as strings
        assert len(lls) == len(doc["choices"]) and all(ll < 0 for ll in lls)
        item = BenchmarkItem(id=doc["id"], benchmark="lmeval", family="multiple_choice", question=doc["question"],
                             choices=doc["choices"], answer=LETTERS[doc["answer"]])
        correct = is_correct(LETTERS[max(range(len(lls)), key=lls.__getitem__)], item)
        assert float(sample["acc"]) == float(correct), (lls, doc)  # item by item
        checked.append(correct)
    assert metrics["acc,none"] == pytest.approx(sum(checked) / len(checked))
