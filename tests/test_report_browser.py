"""The report opened from disk in a real headless Chromium (Debian's `chromium` + `chromium-driver`): `make test-browser`.

Selenium drives the system chromedriver given by path, so nothing is downloaded. The screenshot
is kept in `artifacts/` (git-ignored) for CI to collect.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from report_data import INJECTED_PROMPT, scored_digits

from difficulty_curation.provenance import attach_provenance, read_provenance
from difficulty_curation.report import write_report
from difficulty_curation.stats import summarize

pytestmark = pytest.mark.browser
ARTIFACTS = Path(os.environ.get("REPORT_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through the system chromedriver; its console log is kept at every level."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail("the browser tier needs Chromium: apt-get install chromium chromium-driver (.ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def opened(browser, digits, tmp_path_factory):
    """A report with every section (two runs compared) opened from disk; returns (driver, info, dataset)."""
    scored = scored_digits(digits, 36)
    later = scored.map(lambda row: {"difficulty": None if row["difficulty"] is None else 1 - row["difficulty"]})
    attach_provenance(later, {**read_provenance(scored), "model": "tiny-vlm-trained"})
    path = tmp_path_factory.mktemp("browser") / "report.html"
    info = write_report(scored, path, compare=later, rows_per_bucket=8)
    browser.get(path.resolve().as_uri())
    return browser, info, scored


def test_the_page_logs_no_console_errors(opened):
    driver, _, _ = opened
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def test_every_thumbnail_decodes(opened):
    driver, info, _ = opened
    sizes = driver.execute_script(
        "return Array.from(document.images).map(image => [image.complete, image.naturalWidth]);"
    )
    assert len(sizes) == info.num_thumbnails > 0
    assert all(complete and width > 0 for complete, width in sizes)


def test_the_counts_on_the_page_equal_the_datasets(opened):
    driver, _, scored = opened
    shown = driver.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('td[data-bucket]'))"
        ".map(cell => [cell.dataset.bucket, Number(cell.textContent)]));"
    )
    summary = summarize(scored)
    assert shown == {**summary.buckets, "failed": summary.num_failed, "total": summary.num_rows}


def test_a_script_injected_in_a_prompt_did_not_run_and_is_shown_as_text(opened):
    driver, _, _ = opened
    assert driver.execute_script("return typeof window.injected;") == "undefined"
    prompts = driver.execute_script(
        "return Array.from(document.querySelectorAll('pre.prompt')).map(p => p.textContent);"
    )
    assert INJECTED_PROMPT in prompts
    assert driver.execute_script("return document.scripts.length;") == 0


def test_a_screenshot_is_saved_as_an_artifact(opened):
    driver, _, _ = opened
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / "report-browser.png"
    assert driver.save_screenshot(str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000
