"""The HTML report driven in headless Chromium (the system's `chromium`, through playwright).

Run with ``make test-browser`` (``pytest -m browser``). Checks: the page loads from ``file://`` with no
console errors and no request beyond the file itself; the outcome and "chose differently" filters show
exactly the expected problems; arrow keys move between problems; trace text such as ``<script>`` shows
as text and runs nothing; candidates cut by the token limit are marked; a screenshot shows the trace
view; 5,000 problems stay fast.
"""

from __future__ import annotations

import io
import shutil
import time
from dataclasses import dataclass, field

import pytest

from rationalyst.report import build_report
from tests.report_fixtures import SCRIPT, build_large_run, build_runs, write_eval_run
from tests.test_report import _cut_search_record

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[browser]' (make test-browser does it)")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("no system chromium on PATH: apt-get install -y chromium (.ci/run does it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def report_url(tmp_path_factory) -> str:
    root = build_runs(tmp_path_factory.mktemp("runs"))
    return build_report(root).html.resolve().as_uri()


@dataclass
class PageLog:
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def open_page(browser):
    pages = []

    def opener(url: str):
        page = browser.new_page(viewport=VIEWPORT)
        log = PageLog()
        page.on("console", lambda m: m.type == "error" and log.errors.append(m.text))
        page.on("pageerror", lambda e: log.errors.append(str(e)))
        page.on("dialog", lambda d: (log.dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: log.requests.append(r.url))
        page.goto(url)
        pages.append(page)
        return page, log

    yield opener
    for page in pages:
        page.close()


def visible_ids(page) -> list[str]:
    return page.eval_on_selector_all("#problem-list li[data-id]", "items => items.map(li => li.dataset.id)")


def selected_id(page) -> str:
    listed = page.text_content("#problem-list li.selected .pid")
    shown = page.text_content("#problem-detail .problem-id")
    assert listed == shown
    return shown


def traces(page, benchmark: str, method: str | None = None):
    page.click("#tabs button[data-view=traces]")
    page.select_option("#benchmark-select", benchmark)
    if method:
        page.select_option("#method-select", label=method)
    page.click("#problem-count")  # focus off the select, so arrow keys move between problems


def test_page_loads_offline_without_errors(open_page, report_url):
    page, log = open_page(report_url)
    assert page.title() == page.text_content("#title") and page.title().startswith("RATIONALYST report")
    accuracy_rows = page.locator("#view-overview table").first.locator("tbody tr")
    assert accuracy_rows.count() == 6
    assert page.locator("#view-overview td.incomplete").count() == 2  # accuracy and cost rows of arc random
    images = page.eval_on_selector_all("#view-overview img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(images) == 3 and all(w > 100 for w in images)
    for view in ("traces", "mining", "overview"):
        page.click(f"#tabs button[data-view={view}]")
        assert page.is_visible(f"#view-{view}")
    accuracy_rows.nth(4).click()  # gsm8k random: opens its traces
    assert page.is_visible("#view-traces") and page.input_value("#benchmark-select") == "gsm8k"
    assert page.text_content("#method-select option:checked") == "random"
    assert log.errors == [] and log.dialogs == []
    assert all(url.startswith(("file:", "data:")) for url in log.requests), log.requests


def test_outcome_filter_shows_exactly_the_matching_problems(open_page, report_url):
    page, log = open_page(report_url + "#traces")
    traces(page, "gsm8k")
    assert page.text_content("#method-select option:checked") == "implicit"  # the default method
    everything = [f"gsm8k-{i:04d}" for i in range(5)]
    assert visible_ids(page) == everything
    page.click("[data-outcome=wrong]")
    assert visible_ids(page) == ["gsm8k-0002", "gsm8k-0003"]
    assert page.locator("#problem-list li.correct").count() == 0
    page.click("[data-outcome=correct]")
    assert visible_ids(page) == ["gsm8k-0000", "gsm8k-0001", "gsm8k-0004"]
    page.select_option("#method-select", label="random")
    assert visible_ids(page) == ["gsm8k-0001", "gsm8k-0003"]
    page.click("[data-outcome=all]")
    assert visible_ids(page) == everything
    page.fill("#search", "problem 3")
    assert visible_ids(page) == ["gsm8k-0003"]
    assert log.errors == []


def test_chose_differently_filter(open_page, report_url):
    page, log = open_page(report_url + "#traces")
    traces(page, "gsm8k")
    assert page.text_content("#compare-select option:checked") == "random"  # implicit vs random by default
    page.check("#differ-toggle")
    # Problem 2 chose the same; problem 4 was offered different candidates.
    assert visible_ids(page) == ["gsm8k-0000", "gsm8k-0001", "gsm8k-0003"]
    page.click("[data-outcome=wrong]")
    assert visible_ids(page) == ["gsm8k-0003"]
    page.click("[data-outcome=all]")
    page.click("#problem-list li[data-id=gsm8k-0001]")
    differs = page.eval_on_selector_all("#problem-detail .step.differs", "steps => steps.map(s => s.dataset.step)")
    assert differs == ["1"]  # the same first step, different choices at the second
    other = page.text_content("#problem-detail .step.differs .candidate:has(.badge.other) .ctext > span")
    assert other == "So the answer is 11."
    page.select_option("#compare-select", label="cot")
    assert visible_ids(page) == []
    page.select_option("#benchmark-select", "arc-challenge")
    page.select_option("#compare-select", label="random")
    assert visible_ids(page) == ["arc-0001"]
    assert log.errors == []


def test_arrow_keys_move_between_problems(open_page, report_url):
    page, log = open_page(report_url + "#traces")
    traces(page, "gsm8k")
    assert selected_id(page) == "gsm8k-0000"
    page.keyboard.press("ArrowDown")
    assert selected_id(page) == "gsm8k-0001"
    page.keyboard.press("ArrowRight")
    assert selected_id(page) == "gsm8k-0002"
    page.keyboard.press("ArrowUp")
    assert selected_id(page) == "gsm8k-0001"
    for _ in range(6):
        page.keyboard.press("j")
    assert selected_id(page) == "gsm8k-0004"  # stops at the last
    page.click("[data-outcome=wrong]")
    page.keyboard.press("ArrowUp")
    assert selected_id(page) == "gsm8k-0002"  # moves within the filtered problems
    page.keyboard.press("ArrowDown")
    assert selected_id(page) == "gsm8k-0003"
    assert log.errors == []


def test_trace_text_is_shown_as_text(open_page, report_url):
    page, log = open_page(report_url + "#traces")
    traces(page, "gsm8k")
    page.click("#problem-list li[data-id=gsm8k-0003]")
    assert page.text_content("#problem-detail .rationale-text") == SCRIPT + " then check the units"
    page.click("#problem-list li[data-id=gsm8k-0002]")
    assert page.text_content("#problem-detail .question") == "Problem 2: how many are left? Use <b>bold</b> & care."
    traces(page, "arc-challenge")
    assert '<img src=x onerror="alert(2)">' in page.text_content("#problem-detail .question")
    assert page.locator("#problem-detail img, #problem-detail b, #problem-detail script").count() == 0
    page.click("#tabs button[data-view=mining]")
    assert (SCRIPT in page.text_content("#document-list")) and page.locator("#document-list script").count() == 0
    assert page.locator("script").count() == 2
    assert log.dialogs == [] and log.errors == []


def test_screenshot_shows_the_trace_view(open_page, report_url, tmp_path):
    from PIL import Image

    page, log = open_page(report_url + "#traces")
    traces(page, "gsm8k")
    page.click("#problem-list li[data-id=gsm8k-0003]")
    assert page.locator("#problem-detail .candidate").count() == 3
    assert page.locator("#problem-detail .candidate.chosen").count() == 1
    widths = page.eval_on_selector_all("#problem-detail .candidate .fill", "fills => fills.map(f => f.style.width)")
    assert widths == ["54%", "100%", "8%"]  # scores -1.25, -1.0, -1.5 scaled within the step
    path = tmp_path / "trace-view.png"
    page.screenshot(path=str(path))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (VIEWPORT["width"], VIEWPORT["height"])
    assert len(set(image.getdata())) > 100  # text, bars and highlights, not a blank page
    assert log.errors == []


def test_candidates_cut_at_the_token_limit_are_marked(open_page, tmp_path):
    root = tmp_path / "runs"
    write_eval_run(root / "gsm8k" / "implicit", "gsm8k", "implicit", [_cut_search_record()])
    page, log = open_page(build_report(root, tmp_path / "report").html.resolve().as_uri() + "#traces")
    traces(page, "gsm8k")
    marked = page.eval_on_selector_all(
        "#problem-detail .step", "steps => steps.map(s => [...s.querySelectorAll('.candidate')].map("
        "c => [...c.querySelectorAll('.badge.cut')].map(b => b.textContent)))")
    assert marked == [[["cut at the token limit"], [], ["cut at the token limit"]], [[]]]
    chosen = page.text_content("#problem-detail .step[data-step='0'] .candidate.chosen .ctext")
    assert chosen.startswith("The answer is 1") and "cut at the token limit" in chosen
    assert log.errors == []


def test_mining_view(open_page, report_url):
    page, log = open_page(report_url + "#mining")
    assert page.is_visible("#view-mining")
    assert page.locator("#document-list mark.kept").count() == 2
    assert page.locator("#document-list mark.dropped").count() == 2
    assert page.locator("#document-list mark.unscored").count() == 1
    verdicts = page.eval_on_selector_all("#document-list .document[data-id=d0] .verdict", "v => v.map(x => x.textContent)")
    assert verdicts == ["kept \u0394 +0.900 (\u03c4 0.5)", "dropped \u0394 +0.200 (\u03c4 0.5)"]
    text = page.text_content("#document-list .document[data-id=d0] .doc-text")
    assert text.startswith("Tom has 3 apples.He will buy more apples next.")
    rows = page.eval_on_selector_all("#mining-summary tbody tr", "rows => rows.map(r => r.innerText.split('\\t'))")
    assert rows == [["gsm8k", "1", "2", "1", "1", "0", "50.0%", "0.550", "0.5"],
                    ["pile", "2", "3", "1", "1", "1", "50.0%", "-0.100", "0"]]
    assert page.eval_on_selector("#mining-summary img", "i => i.complete && i.naturalWidth") > 100
    ids = lambda: page.eval_on_selector_all("#document-list .document", "d => d.map(x => x.dataset.id)")
    page.select_option("#source-select", "pile")
    assert ids() == ["d1", "d2"]
    page.select_option("#source-select", "")
    page.click("[data-docs=kept]")
    assert ids() == ["d0", "d1"]
    page.click("[data-docs=dropped]")
    assert ids() == ["d0", "d2"]
    assert log.errors == []


def test_five_thousand_problems_stay_responsive(open_page, tmp_path_factory):
    root = build_large_run(tmp_path_factory.mktemp("large"), n=5000)
    url = build_report(root).html.resolve().as_uri() + "#traces"
    started = time.perf_counter()
    page, log = open_page(url)
    page.wait_for_selector("#problem-list li.selected")
    load_seconds = time.perf_counter() - started
    assert load_seconds < 10, load_seconds  # about 0.5 s on 2 cores
    assert page.locator("#problem-list li").count() == 50  # one page in the DOM, not 5,000 rows
    assert page.text_content("#page-info") == "page 1 / 100"
    page.click("#problem-count")
    started = time.perf_counter()
    for _ in range(60):
        page.keyboard.press("ArrowDown")
    assert selected_id(page) == "big-00060" and page.text_content("#page-info") == "page 2 / 100"
    page.keyboard.press("PageDown")
    assert selected_id(page) == "big-00100"
    page.check("#differ-toggle")  # random chose differently at the first step for i % 7 == 0
    assert page.text_content("#problem-count").startswith(f"{len(range(0, 5000, 7))} of 5000 problems")
    page.click("[data-outcome=wrong]")  # wrong for i % 3 == 0
    assert page.text_content("#problem-count").startswith(f"{len(range(0, 5000, 21))} of 5000 problems")
    assert visible_ids(page)[:3] == ["big-00000", "big-00021", "big-00042"]
    navigation_seconds = time.perf_counter() - started
    assert navigation_seconds < 10, navigation_seconds  # about 1 s
    assert log.errors == []
