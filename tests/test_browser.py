"""The reviewer's web pages in a real browser (issue 16): headless Debian Chromium driven by
selenium. What a person sees: the table rows, a critical finding first, a trace that expands,
links that resolve, no console errors; a screenshot of each page is kept in test-artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from conftest import CASES
from test_cli import JAKCDS

pytestmark = pytest.mark.slow  # Chromium
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (.ci/run does)")
        pytest.skip("no chromium / chromedriver on this machine")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def run(*args: str) -> None:
    done = subprocess.run([str(JAKCDS), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def local_links_resolve(driver, page: Path) -> None:
    """Every link that is not to the web: a fragment that names an element, or a file that exists."""
    from selenium.webdriver.common.by import By

    for link in driver.find_elements(By.CSS_SELECTOR, "a[href]:not(.external)"):
        href = link.get_attribute("href")
        url = urlparse(href)
        assert url.scheme == "file", href
        target = Path(unquote(url.path))
        assert target.is_file(), href
        if url.fragment and target == page:
            assert driver.find_elements(By.ID, url.fragment), href


def keep(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_a_decision_page_shows_risk_first_and_a_trace_that_expands(browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "report.html"
    run("report", str(CASES / "platelets-40-myelofibrosis" / "patient.json"), "-o", str(page))
    browser.get(page.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#ranking tbody tr.candidate")
    assert [row.get_attribute("data-drug") for row in rows] == ["tofacitinib", "ruxolitinib"]  # the critical one ranks last
    first = rows[1].find_elements(By.CSS_SELECTOR, "li.finding")[0]
    assert first.get_attribute("data-severity") == "critical" and first.is_displayed()
    assert "CRITICAL" in first.text
    trace = browser.find_element(By.ID, "trace-ruxolitinib")
    assert trace.get_attribute("open") is None
    body = trace.find_elements(By.TAG_NAME, "h4")[0]
    assert not body.is_displayed()
    trace.find_element(By.TAG_NAME, "summary").click()
    assert trace.get_attribute("open") is not None and body.is_displayed()
    assert "did not fire" in trace.text or "fired" in trace.text
    assert browser.find_elements(By.CSS_SELECTOR, "#excluded tr")  # every other drug's why-not
    local_links_resolve(browser, page)
    assert console_errors(browser) == []
    keep(browser, "decision-platelets-40")


def test_a_fhir_decision_page_lists_what_was_not_used(browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "fhir.html"
    run("report", str(CASES / "wenzel-chilblain-lupus-fhir" / "bundle.json"), "--condition", "chilblain lupus", "--as-of", "2016-03-01", "-o", str(page))
    browser.get(page.as_uri())
    unmapped = browser.find_elements(By.CSS_SELECTOR, "#unmapped li")
    assert len(unmapped) == 5 and any("entered-in-error" in item.text for item in unmapped)
    assert console_errors(browser) == []
    keep(browser, "decision-wenzel-fhir")


def test_the_rule_site_filters_and_its_pages_link_up(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run("rules", "docs", "-o", str(tmp_path / "site"), "--cases", str(CASES))
    index = tmp_path / "site" / "index.html"
    browser.get(index.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#rules tbody tr.rule")
    assert len(rows) > 150
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-filter=kind]")).select_by_visible_text("exclude")
    shown = [row for row in rows if row.is_displayed()]
    assert shown and all(row.get_attribute("data-kind") == "exclude" for row in shown) and len(shown) < len(rows)
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-filter=drug]")).select_by_visible_text("ruxolitinib")
    assert all(" ruxolitinib " in row.get_attribute("data-drug") for row in rows if row.is_displayed())
    keep(browser, "rules-index-filtered")
    local_links_resolve(browser, index)
    browser.get((tmp_path / "site" / "rules" / "LABEL-RUX-021.html").as_uri())
    assert "LABEL-RUX-021" in browser.find_element(By.TAG_NAME, "h1").text
    assert "10 mg twice daily" in browser.page_source and "record:" in browser.page_source
    local_links_resolve(browser, tmp_path / "site" / "rules" / "LABEL-RUX-021.html")
    assert console_errors(browser) == []
    keep(browser, "rule-LABEL-RUX-021")


def test_the_impact_page_counts_changes_and_opens_a_patient_on_click(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from test_impact import edited_pack, profiles

    from conftest import RULES

    out = tmp_path / "impact"
    run("rules", "impact", "--base", str(RULES), "--head", str(edited_pack(tmp_path)), "--on", str(profiles(tmp_path)), "-o", str(out))
    browser.get((out / "impact.html").as_uri())
    assert "2 of 4 patients change" in browser.find_element(By.ID, "counts").text
    kinds = {row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#kinds tbody tr")}
    assert {"candidate removed", "reason added"} <= kinds
    patient = browser.find_element(By.ID, "patient-lymph-650")
    change = patient.find_elements(By.CSS_SELECTOR, "tr.change")[0]
    assert patient.get_attribute("open") is None and not change.is_displayed()
    patient.find_element(By.TAG_NAME, "summary").click()
    assert change.is_displayed() and "LABEL-TOF-001" in patient.text
    assert console_errors(browser) == []
    keep(browser, "impact-lymphocyte-threshold")
