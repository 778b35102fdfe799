"""The command line: each command on the real default model, and user errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from rationalyst.cli import app

runner = CliRunner()


def test_help_and_models():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("models", "generate", "score", "demo", "run", "solve", "eval", "verify", "report"):
        assert command in result.output
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "builtin:smollm2-135m" in result.output and "yes" in result.output


def test_score_json_matches_the_library(default_model):
    result = runner.invoke(app, ["score", "--context", "The capital of France is", " Paris", " Rome", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    expected = default_model.score("The capital of France is", [" Paris", " Rome"])
    assert [r["continuation"] for r in rows] == [" Paris", " Rome"]
    for row, want in zip(rows, expected):
        assert abs(row["sum"] - want.sum) < 1e-4 and row["tokens"] == want.tokens


def test_generate_json_is_seeded():
    args = ["generate", "Say hi", "--n", "2", "--temperature", "0.8", "--seed", "3", "--max-new-tokens", "6", "--json"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    rows = json.loads(first.output)
    assert len(rows[0]["completions"]) == 2
    assert rows == json.loads(second.output)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    code = "from rationalyst.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_a_mistyped_command_line_prints_the_usage_error_and_exits_2():
    # The installed console script, as a user runs it (the CliRunner would hide how main() exits).
    script = Path(sys.executable).with_name("rationalyst")
    assert script.exists(), "the rationalyst console script is not installed next to this Python"
    cases = [
        (["generate"], "Missing argument"),
        (["generate", "hi", "--no-such-option"], "No such option: --no-such-option"),
        (["score", "--context"], "requires an argument"),
        (["no-such-command"], "No such command"),
        (["generate", "hi", "--n", "many"], "Invalid value"),
    ]
    for args, wanted in cases:
        result = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr and wanted in result.stderr, (args, result.stderr)
        assert "Error:" in result.stderr
        if args != ["score", "--context"]:  # click reports a missing option value without a context
            assert "Usage: rationalyst" in result.stderr and "--help" in result.stderr
    assert subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120).returncode == 0


def test_user_errors_are_one_clear_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output: runs/x\nselect: {}\nextract: {}\nfilter: {}\ntrain: {}\neval:\n  benchmarks: [gsm8k]\n"
                   "  search:\n    top_p: 2\n")
    result = _run_cli("demo", "--recipe", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "line 9, field eval.search.top_p" in result.stderr.replace("\n", " ")
    assert "line 2, field select.corpus: Field required" in result.stderr.replace("\n", " ")
    result = _run_cli("generate", "hi", "--model", "builtin:nope")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "unknown builtin model" in result.stderr
    result = _run_cli("generate", "hi", "--n", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "n:" in result.stderr


def test_options_given_as_zero_and_a_limit_without_benchmarks_reach_the_config(tmp_path, monkeypatch):
    """`--tau 0` and `--seed 0` override the config's values (0 is not "unset"); `--limit` cuts the
    config's benchmarks when none is given on the command line."""
    from rationalyst.stages import eval as eval_stage
    from rationalyst.stages import filter as filter_stage

    seen = {}

    def record(config):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(filter_stage, "run", record)
    monkeypatch.setattr(eval_stage, "run", record)
    (tmp_path / "filter.yaml").write_text(f"input: {tmp_path}/in.jsonl\noutput: {tmp_path}/f\ntau: 0.5\n")
    (tmp_path / "eval.yaml").write_text(f"benchmarks: [gsm8k, math500]\noutput: {tmp_path}/e\nseed: 7\n")
    runner.invoke(app, ["filter", "--config", str(tmp_path / "filter.yaml"), "--tau", "0"])
    assert seen["config"].tau == 0.0
    runner.invoke(app, ["eval", "--config", str(tmp_path / "eval.yaml"), "--seed", "0", "--limit", "5"])
    assert seen["config"].seed == 0 and [b.limit for b in seen["config"].benchmarks] == [5, 5]
    runner.invoke(app, ["eval", "--config", str(tmp_path / "eval.yaml"), "-b", "gsm8k", "--limit", "3"])
    assert [(b.name, b.limit) for b in seen["config"].benchmarks] == [("gsm8k", 3)]
