"""`rationalyst report`: numbers checked against hand computations on fixture runs, the Markdown
tables, the self-contained HTML page (escaped data, embedded plots), and clear errors."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import pytest
from typer.testing import CliRunner

from rationalyst.cli import app
from rationalyst.errors import InputError, RationalystError
from rationalyst.report import build_report, ensure_report
from rationalyst.report.collect import collect, wilson_interval
from rationalyst.report.html import script_json
from tests.report_fixtures import SCRIPT, build_runs, write_eval_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return build_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def built(runs, tmp_path_factory):
    return build_report(runs, tmp_path_factory.mktemp("report"))


def reference_wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson's interval written out from its textbook form: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    z = NormalDist().inv_cdf(0.975)
    p = k / n
    root = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return ((p + z * z / (2 * n) - root) / (1 + z * z / n), (p + z * z / (2 * n) + root) / (1 + z * z / n))


def test_wilson_interval_matches_the_formula_and_published_values():
    for k, n in [(3, 5), (0, 10), (10, 10), (1, 3), (57, 100)]:
        low, high = wilson_interval(k, n)
        ref_low, ref_high = reference_wilson(k, n)
        assert low == pytest.approx(max(0.0, ref_low), abs=1e-12) and high == pytest.approx(min(1.0, ref_high), abs=1e-12)
    # Values as tabulated for the Wilson score interval at 95%.
    assert wilson_interval(3, 5) == pytest.approx((0.2307, 0.8824), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_accuracy_and_cost_per_run_match_hand_computation(runs):
    collection = collect(runs)
    got = {(r.benchmark, r.label): r for r in collection.eval_runs}
    assert [(r.benchmark, r.method) for r in collection.eval_runs] == [
        ("arc-challenge", "implicit"), ("arc-challenge", "random"), ("arc-challenge", "cot"),
        ("gsm8k", "implicit"), ("gsm8k", "random"), ("gsm8k", "cot"),
    ]
    expected = {  # (n, correct, complete) written out from the fixture's plan
        ("gsm8k", "implicit"): (5, 3, True), ("gsm8k", "random"): (5, 2, True), ("gsm8k", "cot"): (5, 1, True),
        ("arc-challenge", "implicit"): (4, 2, True), ("arc-challenge", "random"): (3, 1, False),
        ("arc-challenge", "cot"): (4, 3, True),
    }
    for key, (n, correct, complete) in expected.items():
        run = got[key]
        assert (run.n, run.correct, run.complete) == (n, correct, complete), key
        assert run.accuracy == pytest.approx(correct / n)
        assert run.ci == pytest.approx(reference_wilson(correct, n))
    implicit = got[("gsm8k", "implicit")]
    # agent tokens 100 + 10 i for i = 0..4 -> mean 120; + 20 rationalist + 200 scorer = 340.
    assert implicit.tokens == pytest.approx({"agent": 120, "rationalist": 20, "scorer": 200, "judge": 0, "prm": 0, "total": 340})
    # seconds per problem: total 3.5 + 0.5 (i + 1) -> mean 5.0; supervision 1 + 0.5 (i + 1) -> 12.5 of 25 s.
    assert implicit.seconds["total"] == pytest.approx(5.0)
    assert implicit.supervision_share == pytest.approx(0.5)  # not the mean of per-problem shares (0.4896)
    assert got[("gsm8k", "random")].supervision_share == 0.0
    cot = got[("arc-challenge", "cot")]
    assert (cot.errors, cot.unparsed) == (1, 1)
    assert implicit.models == {"agent": "builtin:smollm2-135m", "rationalist": "builtin:smollm2-135m", "scorer": "builtin:smollm2-135m"}


def test_methods_that_chose_differently_on_identical_candidates(runs):
    comparisons = {(c.benchmark, c.a, c.b): c for c in collect(runs).comparisons}
    # cot offers one candidate per step, never the same list as implicit or random: no comparison.
    assert set(comparisons) == {("gsm8k", "implicit", "random"), ("arc-challenge", "implicit", "random")}
    gsm = comparisons[("gsm8k", "implicit", "random")]
    # problem 2 chose the same, problem 4 was offered different candidates.
    assert gsm.differ == ["gsm8k-0000", "gsm8k-0001", "gsm8k-0003"]
    assert (gsm.both, gsm.comparable) == (5, 4)
    assert (gsm.a_only_right, gsm.b_only_right, gsm.both_right, gsm.both_wrong) == (1, 1, 1, 0)
    arc = comparisons[("arc-challenge", "implicit", "random")]
    assert (arc.differ, arc.both, arc.comparable, arc.a_only_right) == (["arc-0001"], 3, 3, 1)


def test_mcnemar_exact_p_matches_the_binomial_test():
    from scipy.stats import binomtest

    from rationalyst.report.paired import mcnemar_exact_p

    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)  # the 6-vs-0 split of issue 15's first try
    assert mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(3, 3) == 1.0
    for b, c in [(2, 1), (4, 11), (17, 5), (30, 41)]:
        assert mcnemar_exact_p(b, c) == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 2)


def test_paired_outcomes_count_who_was_right_on_the_same_problems(runs, built):
    # The fixture: implicit right on problems 0, 1, 4; random on 1, 3; cot on 0 (five shared problems).
    paired = {(p.a, p.b): p for p in collect(runs).paired if p.benchmark == "gsm8k"}
    def get(a, b):
        p = paired.get((a, b)) or paired[(b, a)]
        return (p.a_only, p.b_only, p.n) if p.a == a else (p.b_only, p.a_only, p.n), p.p_value
    assert get("implicit", "random") == ((2, 1, 5), pytest.approx(1.0))
    assert get("implicit", "cot") == ((2, 0, 5), pytest.approx(0.5))
    assert get("random", "cot") == ((2, 1, 5), pytest.approx(1.0))
    text = built.markdown.read_text()
    assert "## Paired outcomes" in text and "McNemar p" in text


def test_mining_counts_deltas_and_documents_with_rationales_inline(runs):
    (mining,) = collect(runs).mining_runs
    assert mining.complete and mining.extract is not None and mining.extract.rel == "extract"
    gsm, pile = mining.sources["gsm8k"], mining.sources["pile"]
    assert (gsm.documents, gsm.rationales, gsm.kept, gsm.dropped, gsm.unscored) == (1, 2, 1, 1, 0)
    assert gsm.mean_delta == pytest.approx((0.9 + 0.2) / 2) and gsm.taus == {0.5}
    assert (pile.documents, pile.rationales, pile.kept, pile.dropped, pile.unscored) == (2, 3, 1, 1, 1)
    assert pile.mean_delta == pytest.approx((0.1 - 0.3) / 2) and pile.taus == {0.0}
    assert sorted(mining.deltas) == pytest.approx([-0.3, 0.1, 0.2, 0.9])
    assert mining.tau_sources == {0.0: ["pile"], 0.5: ["gsm8k"]}
    docs = {d["id"]: d["segments"] for d in mining.documents}
    d0 = docs["d0"]
    assert "".join(s.get("text", "") for s in d0) == "Tom has 3 apples. He buys 2 more. So he has 5 apples."
    assert [(s["rationale"], s["kept"], s["delta"]) for s in d0 if "rationale" in s] == [
        ("He will buy more apples next.", True, 0.9), ("Add them up: 3 + 2 = 5.", False, 0.2)]
    assert d0[0] == {"text": "Tom has 3 apples."} and d0[2] == {"text": " He buys 2 more."}
    unscored = [s for s in docs["d2"] if "rationale" in s and "kept" not in s]
    assert [s["rationale"] for s in unscored] == ["Not scored yet."]
    assert "".join(s.get("text", "") for s in docs["d2"]) == "First line here.\nSecond line follows.\nThird."


def test_markdown_tables_and_plots(built):
    text = built.markdown.read_text()
    assert "| gsm8k | implicit | 5 | 3 | 60.0% | [23.1, 88.2] | 0 | 0 | complete |" in text
    assert "| arc-challenge | random | 3 | 1 | 33.3% | [6.1, 79.2] | 0 | 0 | **incomplete** (3 so far) |" in text
    assert "| arc-challenge | cot | 4 | 3 | 75.0% | [30.1, 95.4] | 1 | 1 | complete |" in text
    # tokens by role and in all, then seconds by role (scorer: mean of 0.5 (i + 1), i = 0..4) and in all
    assert "| gsm8k | implicit | 120 | 20 | 200 | 0 | 340 | 2.00 | 1.00 | 1.50 | 0.00 | 5.00 | 50.0% | complete |" in text
    assert "| gsm8k | implicit | random | 5 | 4 | 3 | 1 | 1 | 1 | 0 |" in text
    assert "| gsm8k | 1 | 2 | 1 | 1 | 0 | 50.0% | 0.550 | 0.5 |" in text
    assert "| pile | 2 | 3 | 1 | 1 | 1 | 50.0% | -0.100 | 0 |" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images == ["accuracy.png", "compute.png", "cost.png", "deltas-filter.png"]
    for name in images:
        data = (built.output / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000


def _page_data(page: str) -> dict:
    match = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.DOTALL)
    return json.loads(match.group(1))


def test_html_is_self_contained_with_trace_text_escaped(built):
    page = built.html.read_text()
    assert "alert(1)" in page  # the text is there, but never as markup:
    assert "<script>alert" not in page and "<b>bold" not in page and "<img src=x" not in page
    assert len(re.findall(r"<script\b", page, re.IGNORECASE)) == 2  # the data and the page's own script
    assert "http://" not in page and "https://" not in page
    assert re.findall(r'<[a-z]+\s[^>]*\b(?:src|href)\s*=', page, re.IGNORECASE) == []  # no tag fetches anything
    data = _page_data(page)
    gsm3 = next(p for r in data["runs"] if r["benchmark"] == "gsm8k" and r["method"] == "implicit"
                for p in r["problems"] if p["id"] == "gsm8k-0003")
    assert gsm3["steps"][0]["rationale"] == SCRIPT + " then check the units"  # round-trips unchanged
    for uri in [*data["plots"].values(), data["mining"][0]["histogram"]]:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert [r["complete"] for r in data["runs"]] == [True, False, True, True, True, True]


def test_script_json_cannot_close_its_element():
    hostile = {"t": "</script><script>alert(1)</script><!-- & \u2028"}
    text = script_json(hostile)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == hostile


def test_missing_or_empty_directories_are_clear_errors(tmp_path):
    with pytest.raises(RationalystError, match="run directory not found"):
        collect(tmp_path / "nope")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(RationalystError, match="found no eval or filter run below it"):
        build_report(tmp_path / "empty")
    with pytest.raises(RationalystError, match="run directory not found"):
        ensure_report(tmp_path / "nope")


def test_a_malformed_trace_names_file_line_and_field(tmp_path):
    good = {"id": "p0", "question": "q", "steps": [], "correct": True}
    bad = {"id": "p1", "question": "q", "correct": False,
           "steps": [{"rationale": None, "candidates": [{"text": "a"}, {"text": "b"}], "chosen": 5}]}
    write_eval_run(tmp_path / "gsm8k" / "implicit", "gsm8k", "implicit", [good, bad], shard_size=10)
    with pytest.raises(InputError, match=r"part-00000\.jsonl, line 2, field steps\[0\]: .*chosen = 5 but the step has 2"):
        collect(tmp_path)
    worse = {"id": "p2", "question": "q", "correct": "maybe"}
    write_eval_run(tmp_path / "x" / "cot", "x", "cot", [worse])
    with pytest.raises(InputError, match=r"line 1, field correct: "):
        collect(tmp_path / "x")


def test_cli_report_and_view(built, runs, tmp_path, monkeypatch):
    runner = CliRunner()
    out = tmp_path / "cli-report"
    result = runner.invoke(app, ["report", str(runs), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "60.0%" in result.output and "incomplete" in result.output and "2 of 4 scored rationales kept" in result.output
    assert (out / "report.md").is_file() and (out / "report.html").is_file()

    fresh = tmp_path / "fresh"
    shutil.copytree(runs, fresh, ignore=shutil.ignore_patterns("report"))
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    result = runner.invoke(app, ["view", str(fresh)])
    assert result.exit_code == 0, result.output
    page = fresh / "report" / "report.html"
    assert page.is_file()  # built because it was missing
    assert opened == [page.resolve().as_uri()]
    result = runner.invoke(app, ["view", str(fresh), "--no-open"])
    assert result.exit_code == 0 and opened == [page.resolve().as_uri()]
    assert str(page.resolve()) in result.output.replace("\n", "")


def test_cli_error_is_one_line_without_traceback(tmp_path):
    code = "from rationalyst.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "report", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "run directory not found" in result.stderr


def test_report_says_which_split_was_evaluated_and_what_overlapped(tmp_path):
    from rationalyst.runs import RunDir
    from tests.report_fixtures import BenchmarkFixtureRef, EvalFixtureConfig, _gsm8k

    for method, extra in [
        ("cot", {"split": "train", "train_split": True,
                 "contamination": {"overlapping": 2, "items_checked": 5, "ids": ["gsm-0003", "gsm-0001"]}}),
        ("implicit", {"split": "train", "train_split": True, "contamination": None}),
    ]:
        path = write_eval_run(tmp_path / "gsm8k" / method, "gsm8k", method, _gsm8k(method), complete=False)
        run = RunDir(path, EvalFixtureConfig(benchmark=BenchmarkFixtureRef(name="gsm8k"), method=method), stage="eval")
        run.finish(extra=extra)
    text = build_report(tmp_path, tmp_path / "report").markdown.read_text()
    assert "## Evaluation data" in text
    assert ("| gsm8k | **train (a train split, allowed by allow_train_split)** | 2 of 5 items (gsm-0003, gsm-0001) |"
            in text)


def _sampled(pid: str, gold: str, answers: list, scores: list[float]) -> dict:
    cands = [{"text": "I am not sure." if a is None else f"So it is {a}. The answer is {a}.", "score": sc, "tokens": 10}
             for a, sc in zip(answers, scores)]
    chosen = max(range(len(cands)), key=lambda i: (scores[i], -i))
    return {"id": pid, "benchmark": "gsm8k", "method": "best-of-n", "question": f"Question {pid}?", "choices": None,
            "gold": gold, "steps": [{"rationale": None, "candidates": cands, "chosen": chosen}],
            "solution": cands[chosen]["text"], "prediction": None, "parsed": False, "correct": False,
            "stop_reason": "answer", "tokens": {"agent": 40, "rationalist": 8, "scorer": 16, "judge": 0},
            "seconds": {"total": 1.0}}


def test_sampling_curves_from_one_best_of_n_run_match_hand_computation(tmp_path):
    """Two problems, four samples each; majority, naive best-of-n and the exp(score)-weighted vote at
    n = 1, 2, 4, worked out by hand below (ties go to the first answer seen)."""
    from rationalyst.report import scaling
    from rationalyst.report.collect import collect

    records = [
        # gold 4: answers 5, 4, 4, 7. majority 5, 5 (tie: first seen), 4 | best 5, 5, 5 | weighted 5 (0.905 vs 0.856)
        _sampled("p1", "4", ["5", "4", "4", "7"], [-0.1, -0.9, -0.8, -0.2]),
        # gold 10: answers 10, 3, unparsed, 3. majority 10, 10, 3 | best 10, 3, unparsed | weighted 10, 3, 3
        _sampled("p2", "10", ["10", "3", None, "3"], [-0.3, -0.2, -0.1, -0.4]),
    ]
    write_eval_run(tmp_path / "gsm8k" / "best-of-n", "gsm8k", "best-of-n", records)
    (run,) = collect(tmp_path).eval_runs
    got = {(p.label, p.n): (p.accuracy, p.tokens) for p in scaling.curves(run)}
    # tokens at n: 10 per sample + supervision (8 + 16) x n / 4
    assert got == {
        ("best-of-n majority@1", 1): (0.5, 16.0), ("best-of-n best-of-n@1", 1): (0.5, 16.0),
        ("best-of-n weighted@1", 1): (0.5, 16.0),
        ("best-of-n majority@2", 2): (0.5, 32.0), ("best-of-n best-of-n@2", 2): (0.0, 32.0),
        ("best-of-n weighted@2", 2): (0.0, 32.0),
        ("best-of-n majority@4", 4): (0.5, 64.0), ("best-of-n best-of-n@4", 4): (0.0, 64.0),
        ("best-of-n weighted@4", 4): (0.0, 64.0),
    }
    best = scaling.best_at_each_budget(scaling.points([run]))["gsm8k"]
    assert best[0] == (16.0, "best-of-n majority@1", 0.5)  # cheapest, and none is better later
    assert len(best) == 1
    text = build_report(tmp_path, tmp_path / "report").markdown.read_text()
    assert "## Accuracy against compute" in text and "| gsm8k | best-of-n majority@4 | 4 | 64 | 50.0% |" in text


def test_prm_best_of_n_weights_by_probability_not_by_its_exponential(tmp_path):
    """best-of-n-prm's min-aggregated scores are probabilities: search-and-learn's weighted vote sums them.
    Answers 5, 4, 4, 7 scored 0.9, 0.3, 0.3, 0.1: by probability 5 wins (0.9 > 0.6); exp() would pick 4
    (2.46 < 2 x 1.35)."""
    from rationalyst.report import scaling
    from rationalyst.report.collect import collect

    record = _sampled("p1", "4", ["5", "4", "4", "7"], [0.9, 0.3, 0.3, 0.1])
    record.update(method="best-of-n-prm", aggregate="min")
    write_eval_run(tmp_path / "gsm8k" / "best-of-n-prm", "gsm8k", "best-of-n-prm", [record])
    (run,) = collect(tmp_path).eval_runs
    got = {p.label: p.accuracy for p in scaling.curves(run)}
    assert got["best-of-n-prm weighted@4"] == 0.0 and got["best-of-n-prm majority@4"] == 1.0
    assert got["best-of-n-prm best-of-n@4"] == 0.0


def test_choices_between_different_answers_against_a_random_pick(tmp_path):
    """Best-of-n samples (the chosen one scored highest) whose answers are right, wrong or missing; the
    counts, a random pick's expectation and its tail probability worked out by hand below."""
    from types import SimpleNamespace

    from rationalyst.report.answer_steps import answer_steps

    errored = _sampled("p8", "3", ["3", "4"], [-0.5, -0.1])
    errored["error"] = "timeout after 60 s"
    records = [
        _sampled("p1", "4", ["5", "4", "4", "7"], [-0.1, -0.9, -0.8, -0.2]),  # mixed: chose 5, 2 of 4 right
        _sampled("p2", "10", ["10", "3", None, "3"], [-0.3, -0.2, -0.1, -0.4]),  # mixed: chose no answer, 1 of 4
        _sampled("p3", "6", ["6", "6", "6"], [-0.3, -0.2, -0.1]),  # all right
        _sampled("p4", "8", ["1", None], [-0.3, -0.2]),  # none right
        _sampled("p5", "2", [None, None], [-0.3, -0.2]),  # no answer stated: not an answer step
        _sampled("p6", "9", ["9"], [-0.3]),  # one candidate: no choice
        _sampled("p7", "3", ["3", "4"], [-0.1, -0.5]),  # mixed: chose 3, 1 of 2 right
        errored,  # failed: not counted
    ]
    write_eval_run(tmp_path / "gsm8k" / "best-of-n", "gsm8k", "best-of-n", records)
    (found,) = collect(tmp_path).answer_steps
    assert (found.steps, found.all_right, found.none_right, found.mixed, found.any_right, found.chosen_right) == (5, 1, 1, 3, 4, 1)
    assert found.expected == pytest.approx(0.5 + 0.25 + 0.5)
    assert found.p_value == pytest.approx(1 - 0.5 * 0.75 * 0.5)  # P(a random pick is right at least once)
    text = build_report(tmp_path, tmp_path / "report").markdown.read_text()
    assert "## Choices between different answers" in text
    assert "| gsm8k | best-of-n | 5 | 1 | 1 | 3 | 4 | 1 | 1.2 | 0.812 |" in text
    (run,) = collect(tmp_path).eval_runs
    assert answer_steps(SimpleNamespace(benchmark="my-own-benchmark", label="x", traces=run.traces)) is None


def test_the_random_pick_s_tail_is_the_poisson_binomial():
    """Against enumerating every outcome of the independent picks."""
    from itertools import product

    from rationalyst.report.answer_steps import at_least

    chances = [0.5, 1 / 3, 0.25, 2 / 3, 0.9]
    for k in range(len(chances) + 2):
        brute = sum(
            math.prod(p if hit else 1 - p for p, hit in zip(chances, outcome))
            for outcome in product([False, True], repeat=len(chances)) if sum(outcome) >= k
        )
        assert at_least(chances, k) == pytest.approx(brute, abs=1e-12), k
    assert at_least([], 0) == 1.0 and at_least([], 1) == 0.0


def test_filter_runs_whose_names_read_alike_get_their_own_delta_plot():
    from rationalyst.report.build import _slug

    names = {rel: _slug(rel) for rel in (".", "filter", "a/b", "a-b", "a b", "run-1/filter")}
    assert names["."] == "deltas" and names["filter"] == "deltas-filter" and names["a-b"] == "deltas-a-b"
    assert len(set(names.values())) == len(names)  # a/b, a b and a-b no longer share deltas-a-b.png


def _cut_search_record() -> dict:
    """A guided search that chose a cut "The answer is 1" at step 1 (a second candidate was cut too) and
    ran to max_steps: only those two candidates are written with ``cut``, as the search writes them."""
    first = [{"text": "The answer is 1", "score": -0.2, "tokens": 16, "cut": True},
             {"text": "She has 3 boxes.", "score": -0.9, "tokens": 5},
             {"text": "Each box holds 6", "score": -1.4, "tokens": 16, "cut": True}]
    second = [{"text": "So 3 * 6 = 18 in all.", "score": -0.3, "tokens": 9}]
    return {"id": "p1", "question": "How much?", "gold": "12", "steps": [
        {"rationale": "Count the boxes.", "candidates": first, "chosen": 0},
        {"rationale": None, "candidates": second, "chosen": 0}],
        "solution": "The answer is 1\nSo 3 * 6 = 18 in all.", "prediction": None, "parsed": False,
        "correct": False, "stop_reason": "max_steps"}


def test_the_page_marks_candidates_cut_at_the_token_limit(tmp_path):
    """The page's data keeps ``cut: true`` on exactly the cut candidates (no ``cut`` on the others), and
    its script shows them a "cut at the token limit" badge (tests/test_report_browser.py renders it)."""
    write_eval_run(tmp_path / "runs" / "gsm8k" / "implicit", "gsm8k", "implicit", [_cut_search_record()])
    page = build_report(tmp_path / "runs", tmp_path / "report").html.read_text()
    ((problem,),) = [r["problems"] for r in _page_data(page)["runs"]]
    assert [[c.get("cut") for c in s["candidates"]] for s in problem["steps"]] == [[True, None, True], [None]]
    assert [[list(c) for c in s["candidates"]] for s in problem["steps"]][1] == [["text", "score", "tokens"]]
    script = re.search(r"<script>(.*?)</script>", page, re.DOTALL).group(1)
    marker = re.search(r'if \(c\.cut === true\) badges\.push\(el\("span", \{ class: "badge cut", text: "([^"]*)" \}\)\);', script)
    assert marker and marker.group(1) == "cut at the token limit"


def test_a_cut_candidate_states_no_answer_in_the_choices_between_answers(tmp_path):
    """A step whose candidates are a cut "The answer is 12" (the gold, but unfinished: the search reads no
    answer from it) and a whole "The answer is 12": all right if the cut one counted, mixed (1 of 2
    right, the chosen one right) when it states no answer."""
    first = [{"text": "The answer is 12", "score": -0.2, "tokens": 16, "cut": True},
             {"text": "The answer is 12.", "score": -0.9, "tokens": 6}]
    record = {"id": "p1", "question": "How much?", "gold": "12",
              "steps": [{"rationale": "Finish.", "candidates": first, "chosen": 1}],
              "solution": "The answer is 12.", "prediction": "12", "parsed": True, "correct": True,
              "stop_reason": "answer"}
    write_eval_run(tmp_path / "gsm8k" / "implicit", "gsm8k", "implicit", [record])
    (found,) = collect(tmp_path).answer_steps
    assert (found.steps, found.all_right, found.mixed, found.chosen_right) == (1, 0, 1, 1)
    assert found.expected == pytest.approx(0.5)
