"""The HTML report in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright): the page renders, a
filter changes the visible rows, a hostile sample runs no script. A screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from compare_fixtures import HOSTILE, make_run
from scorecheck.compare import compare
from scorecheck.compare.explain import explain_runs
from scorecheck.compare.html import to_html
from scorecheck.compare.plot import plot_png
from scorecheck.compare.references import load_reference

CHROMIUM = Path(os.environ.get("SCORECHECK_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ARTIFACTS = Path(os.environ.get("SCORECHECK_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "scorecheck-test-artifacts"))

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium")


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    a = make_run(base / "default", "default", {"mmlu": 0.4, "gsm8k": 0.5}, n=120, seed=1, hostile=True)
    b = make_run(base / "reflection", "reflection", {"mmlu": 0.7, "gsm8k": 0.5}, n=120, seed=2, truncated_every=7)
    cmp = compare([a, b], references=[load_reference("seed")])
    path = base / "report.html"
    path.write_text(to_html(cmp, plot_png(cmp), explanations=explain_runs(*cmp.runs)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def test_report_renders_filters_and_runs_no_hostile_script(browser, page_file):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # A hostile sample must not run: count any script execution it would cause, and any dialog it would open.
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_file.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    assert errors == []
    assert page.locator("#scores tr").count() >= 4  # header, mmlu, mmlu (macro), gsm8k
    assert page.locator("#chart").evaluate("img => img.naturalWidth") > 100
    # the waterfall of B - A: per eval, start, six steps, end; its chart drawn
    assert page.locator("table.waterfall").count() == 2
    assert page.locator("table.waterfall").first.locator("tr").count() == 1 + 8
    assert page.locator("#waterfall").evaluate("img => img.naturalWidth") > 100
    assert "remainder: new requests only" in page.text_content("table.waterfall")
    # the claims table carries audit's verdict per run
    heads = page.locator("#claims tr").first.locator("th").all_text_contents()
    assert heads[-2:] == ["default: verdict", "reflection: verdict"]
    words = ("consistent", "lower than claimed", "higher than claimed", "not comparable", "inconclusive", "—")
    for row in page.locator("#claims tr").all()[1:]:
        for cell in row.locator("td").all_text_contents()[-2:]:
            assert cell.startswith(words), cell
    assert "after Holm's adjustment" in page.text_content("#claims")  # the reasons are shown with the verdict
    rows = page.locator("#rows tr.sample")
    assert rows.count() == 50  # first page of 480 samples
    assert "of 480 samples" in page.text_content("#count")

    page.select_option("#f-status", "truncated")
    truncated = page.text_content("#count")
    assert "of 480" not in truncated and 0 < rows.count() < 50
    assert all("truncated" in t for t in rows.locator("td:nth-child(7)").all_text_contents())

    page.select_option("#f-status", "")
    page.select_option("#f-a", "1")  # right with reflection
    page.select_option("#f-b", "0")  # wrong with default
    shown = int(page.text_content("#count").split(" of ")[1].split()[0])
    assert 0 < shown < 240  # some, not all, of default's 240 samples
    assert set(rows.locator("td:nth-child(1)").all_text_contents()) == {"default"}
    page.select_option("#f-a", "")
    page.select_option("#f-b", "")

    # The hostile responses are findable by text search, shown as text, and run nothing when opened.
    page.fill("#f-q", "onerror")
    expect(page.locator("#count")).to_contain_text(" of 2 samples")  # one per eval
    rows.first.click()
    pre = page.locator("tr.detail pre.response").first
    assert pre.text_content() == HOSTILE[1]
    assert page.locator("tr.detail img").count() == 0
    page.fill("#f-q", "script")
    expect(page.locator("#count")).to_contain_text(" of 4 samples")
    for i in range(rows.count()):
        rows.nth(i).click()
    assert page.locator("#rows script, #rows img, #rows svg").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None and dialogs == [] and errors == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "compare-report.png"
    page.fill("#f-q", "")
    page.wait_for_timeout(300)
    rows.first.click()
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    page.close()


BIDI_TEXT = "Answer: A \u202eevil\u202c and a nul \u0000 here \u2066isolate\u2069"
FORMULA_LABELS = ['=HYPERLINK("http://x","y")', "@SUM(A1)", "+1+1", "-2+3", "\tTAB", "\rCR"]


def test_bidi_and_null_characters_are_made_visible_in_chromium_and_in_the_file(browser, tmp_path):
    """An RTL override in a response, a NUL and an isolate, and an override in a run's label: shown as visible markers,
    never as live controls, in the page Chromium renders and in the HTML file itself."""
    from scorecheck.results import read_samples, write_jsonl

    run = make_run(tmp_path / "bidi\u202erun", "default", {"mmlu": 0.5}, n=8, seed=3)
    samples = read_samples(run / "samples.jsonl")
    samples[0].response = samples[0].answer_text = BIDI_TEXT
    write_jsonl(run / "samples.jsonl", samples)
    html = to_html(compare([run]), None)
    controls = "\u202e\u202c\u2066\u2069\u0000"
    assert not any(c in html for c in controls)  # the file: no raw control character anywhere
    assert "⟦U+202E⟧evil⟦U+202C⟧" in html and "⟦U+0000⟧" in html
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    page = browser.new_page()
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    page.locator("#rows tr.sample").first.click()
    shown = page.locator("tr.detail pre.response").first.text_content()
    assert "⟦U+202E⟧evil⟦U+202C⟧ and a nul ⟦U+0000⟧ here ⟦U+2066⟧isolate⟦U+2069⟧" in shown
    body = page.evaluate("document.body.textContent")
    assert "bidi⟦U+202E⟧run" in body and not any(c in body for c in controls)
    page.close()


def test_waterfall_with_hostile_labels_runs_nothing(browser, tmp_path):
    """Run labels are user text that reaches the waterfall's titles and rows: shown as text, never run."""
    a = make_run(tmp_path / "a", "default", {"mmlu": 0.4}, n=12, seed=1)
    b = make_run(tmp_path / "b", "reflection", {"mmlu": 0.7}, n=12, seed=2)
    labels = [HOSTILE[1], HOSTILE[2]]
    cmp = compare([a, b], labels=labels)
    path = tmp_path / "report.html"
    path.write_text(to_html(cmp, None, explanations=explain_runs(*cmp.runs)), encoding="utf-8")
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    table = page.locator("table.waterfall")
    assert table.count() == 1 and HOSTILE[1] in table.text_content()
    assert page.locator("table.waterfall img, table.waterfall script, h3 img").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None and dialogs == []
    page.close()


def test_csv_formula_cells_are_neutralised_numbers_untouched(tmp_path):
    import csv
    import io

    from scorecheck.compare.render import to_csv

    runs = [make_run(tmp_path / f"r{i}", "default", {"mmlu": 0.5}, n=8, seed=i) for i in range(len(FORMULA_LABELS))]
    text = to_csv(compare(runs, labels=FORMULA_LABELS))
    (tmp_path / "report.csv").write_text(text)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report.csv").read_bytes().decode(), newline="")))
    cells = [r for r in rows if r["section"] == "cell" and r["metric"] == "score"]
    assert [r["config"] for r in cells] == ["'" + label for label in FORMULA_LABELS]
    assert all(not r["config"].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows)
    paired = [r for r in rows if r["section"] == "paired"]
    assert paired and all(r["config"].startswith("'") and r["config_b"].startswith("'") for r in paired)
    assert any(r["diff"].startswith("-") for r in paired)  # a negative number stays a number
    assert all(float(r["diff"]) == float(r["diff"]) for r in paired) and all(float(r["score"]) >= 0 for r in cells)
