"""The Prefect UI as the people who use towerflow see it, in headless Chromium against `towerflow serve`.

The collapse demo and an approval run go through a real server with its UI: the flow-run page shows
attempts 1-2 as red "Collapsed" task runs and attempt 3 green; the artifacts carry the config hash and the
report link opens over http with its charts drawn; the Event Feed lists towerflow's events; and the
approval form, answered in the browser, trains at the suggested learning rate. Screenshots of every page
are kept under the test's tmp_path (printed on failure).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from browser import MEASURE_CHARTS, full_page_screenshot, headless_chromium
from faults import serve_until_ready, stop_left_server, towerflow, towerflow_env, wait_for
from tiny_configs import tiny_config

from flows.prefect_api import post_json, read_flow_runs, stop_process
from trainer.spec import load_spec

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class Pages:
    """The browser, the UI's base URL, and a screenshot of every page looked at."""

    def __init__(self, browser, ui: str, shots: Path):
        self.browser, self.ui, self.shots = browser, ui, shots

    def open(self, path: str, shot: str, ready_text: str):
        self.browser.get(f"{self.ui}{path}")
        wait_for(f"{ready_text!r} on {path}", lambda: ready_text in self.text(), timeout_s=60)
        full_page_screenshot(self.browser, self.shots / f"{shot}.png")

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.TAG_NAME, "body").text

    def click_tab(self, tab_id: str, ready_text: str, shot: str):
        from selenium.webdriver.common.by import By

        self.browser.find_element(By.ID, tab_id).click()
        wait_for(f"{ready_text!r} in tab {tab_id}", lambda: ready_text in self.text(), timeout_s=60)
        full_page_screenshot(self.browser, self.shots / f"{shot}.png")

    def button(self, label: str, within=None):
        from selenium.webdriver.common.by import By

        buttons = (within or self.browser).find_elements(By.TAG_NAME, "button")
        return next(button for button in buttons if button.text.strip() == label)


def task_run_states(pages: Pages) -> dict[str, tuple[str, str]]:
    """Task run name -> (state badge class, state name), as the flow run's Task Runs tab lists them."""
    from selenium.webdriver.common.by import By

    states = {}
    for item in pages.browser.find_elements(By.CSS_SELECTOR, ".task-run-list-item"):
        badge = item.find_element(By.CSS_SELECTOR, ".state-badge")
        kind = next(c for c in badge.get_attribute("class").split() if c.startswith("state--"))
        states[item.find_element(By.CSS_SELECTOR, "a").text.strip()] = (kind, badge.text.strip())
    return states


def ended(env, name: str) -> dict | None:
    done = towerflow(env, "results", name, "--json")
    if done.returncode != 0:
        return None
    detail = json.loads(done.stdout)
    return detail if detail["experiment"]["status"] not in ("pending", "running", "awaiting_approval") else None


def test_the_prefect_ui_tells_the_whole_story(tmp_path):
    env = towerflow_env(tmp_path)
    shots = tmp_path / "screenshots"
    serve, api_url = serve_until_ready(env, tmp_path / "serve.log")
    ui = api_url.removesuffix("/api")
    demo = ROOT / "examples" / "collapse_demo.yaml"
    demo_hash = load_spec(str(demo)).content_hash()
    approval = tmp_path / "approve-me.yaml"
    approval.write_text(yaml.safe_dump(tiny_config(
        name="approve-me", model__buyer_layers=[{"units": 16}, {"units": 16}, {"units": 8}],
        training__learning_rate=0.5, validation={"on_warning": "approve", "approval_timeout_s": 600})))
    try:
        assert towerflow(env, "submit", str(demo)).returncode == 0
        detail = wait_for("the collapse demo to end", lambda: ended(env, "collapse-demo"), timeout_s=600, every_s=2)
        assert detail["experiment"]["status"] == "succeeded"
        (run,) = read_flow_runs(api_url, "run-experiment")
        with headless_chromium(tmp_path / "chromium-profile", window="1600,1200") as browser:
            pages = Pages(browser, ui, shots)
            try:
                check_flow_run_page(pages, run["id"])
                check_artifacts_and_report(pages, run["id"], api_url, demo_hash)
                check_event_feed(pages)
                check_approval_form(pages, env, api_url, approval)
            except Exception:
                full_page_screenshot(browser, shots / "failure.png")
                print(f"screenshots: {shots}")
                raise
    finally:
        stop_process(serve)
        stop_left_server(env)


def check_flow_run_page(pages: Pages, run_id: str) -> None:
    pages.open(f"/runs/flow-run/{run_id}", "flow-run", "collapse-demo (")
    pages.click_tab("task-runs", "attempt 3 @ lr=0.1", "task-runs")
    states = task_run_states(pages)
    assert states["collapse-demo / attempt 1 @ lr=10"] == ("state--failed", "Collapsed"), states
    assert states["collapse-demo / attempt 2 @ lr=1"] == ("state--failed", "Collapsed"), states
    assert states["collapse-demo / attempt 3 @ lr=0.1"] == ("state--completed", "Completed"), states
    assert "persist recall of attempt 3" in states  # attempt numbers, not database row ids


def check_artifacts_and_report(pages: Pages, run_id: str, api_url: str, config_hash: str) -> None:
    from selenium.webdriver.common.by import By

    slug = f"collapse-demo-{config_hash[:8]}"
    pages.click_tab("artifacts", f"{slug}-recall", "artifacts")
    text = pages.text()
    for what in ("recall", "lineage", "progress", "report", "attempt-1-epochs"):
        assert f"{slug}-{what}" in text, what
    artifacts = post_json(api_url, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    keys = [artifact["key"] for artifact in artifacts]
    assert f"{slug}-findings" in keys  # the validate task's, on its task run
    assert f"{slug}-summary" in keys  # the run's summary card
    assert keys.count(f"{slug}-lineage") == 1 and keys.count(f"{slug}-progress") == 1  # updated, not duplicated
    report = next(artifact for artifact in artifacts if artifact["key"] == f"{slug}-report")
    pages.open(f"/artifacts/artifact/{report['id']}", "report-artifact", "collapse-demo report")
    link = pages.browser.find_element(By.LINK_TEXT, "collapse-demo report").get_attribute("href")
    assert link.startswith("http://127.0.0.1:"), link  # never file://
    pages.browser.get(link)
    charts = wait_for("the report's charts", lambda: pages.browser.execute_script(MEASURE_CHARTS), timeout_s=30)
    full_page_screenshot(pages.browser, pages.shots / "report.png")
    assert sum("attempt-chart" in chart["cls"] for chart in charts) == 3
    assert all(chart["width"] > 300 and chart["height"] > 80 for chart in charts)


def check_event_feed(pages: Pages) -> None:
    pages.open("/events", "event-feed", "towerflow.experiment.completed")
    text = pages.text()
    for event in ("towerflow.config.submitted", "towerflow.attempt.collapsed", "towerflow.attempt.retrying"):
        assert event in text, event


def check_approval_form(pages: Pages, env, api_url: str, config: Path) -> None:
    from flows.experiment import SUGGESTED
    from trainer.rules import suggested_learning_rate

    assert towerflow(env, "submit", str(config)).returncode == 0
    paused = {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}
    (run,) = wait_for("the approval pause", lambda: post_json(api_url, "/flow_runs/filter", paused), timeout_s=180)
    answer_approval_form(pages, api_url, run["id"], SUGGESTED)
    detail = wait_for("the approved run to end", lambda: ended(env, "approve-me"), timeout_s=300, every_s=2)
    [attempt] = detail["attempts"]
    assert attempt["learning_rate"] == pytest.approx(suggested_learning_rate(load_spec(str(config))))


def answer_approval_form(pages: Pages, api_url: str, run_id: str, decision: str, tries: int = 3) -> None:
    """Open the paused run's Resume form, check what it says, choose `decision` and submit it, until the
    run leaves Paused. The form is rebuilt while its schema loads (a slow machine shows the first build
    long enough to be found, then it goes stale), so each try finds its elements afresh."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from flows.experiment import SUGGESTED

    def paused() -> bool:
        return post_json(api_url, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})[0][
            "state_type"] == "PAUSED"

    for attempt in range(1, tries + 1):
        pages.open(f"/runs/flow-run/{run_id}", f"paused-run-{attempt}", "Resume")
        try:
            pages.button("Resume").click()
            dialog = wait_for("the approval form", lambda: pages.browser.find_elements(By.CSS_SELECTOR,
                                                                                      "[role=dialog]"))[0]
            wait_for("the form's fields", lambda: "Your decision" in dialog.text)
            text = dialog.text
            assert "suggested 0.01" in text and "waits 600 s" in text, text  # the rate and the timeout, in words
            choice = Select(dialog.find_element(By.CSS_SELECTOR, "select"))
            assert [option.text for option in choice.options][0] == SUGGESTED
            full_page_screenshot(pages.browser, pages.shots / f"approval-form-{attempt}.png")
            choice.select_by_visible_text(decision)
            pages.button("Submit", within=dialog).click()
        except StaleElementReferenceException:
            continue  # the form was rebuilt under us: open it again
        try:
            wait_for("the run to leave Paused", lambda: not paused(), timeout_s=30, every_s=1)
            return
        except AssertionError:
            full_page_screenshot(pages.browser, pages.shots / f"still-paused-{attempt}.png")
    raise AssertionError(f"the approval form was answered {tries} times and the run is still Paused")

