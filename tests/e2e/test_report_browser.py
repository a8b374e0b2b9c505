"""`towerflow report` opened in headless Chromium: the charts are drawn, nothing errors, a screenshot is kept.

The experiment goes through the real store (SQLite) first, so the report reads what the flow writes:
a collapsed attempt, a diverged one (NaN loss), a healthy one, findings and recall. Chromium and its
driver are Debian packages; when they are missing the test fails with the install command
(TOWERFLOW_SKIP_BROWSER=1 skips it on purpose).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from browser import MEASURE_CHARTS, full_page_screenshot, headless_chromium

from flows.cli import main
from tasks import store

BATCH = 1024
# (learning rate, status, reason, [(loss, gradient norm)] per epoch)
ATTEMPTS = [
    (10.0, "collapsed", "scored every product alike for 2 epochs",
     [(math.log(BATCH) + 2e-5, 4e-3), (math.log(BATCH) + 1e-6, 3e-5), (math.log(BATCH), 1e-5)]),
    (1.0, "diverged", "non-finite loss at epoch 3", [(6.1, 2.0), (6.3, 8.0), (math.nan, math.inf)]),
    (0.1, "succeeded", "", [(6.5, 0.9), (5.9, 0.7), (5.6, 0.5), (5.45, 0.42)]),
]

@pytest.fixture
def report_file(tmp_path, monkeypatch) -> Path:
    """The report of a stored experiment, written by `towerflow report --out`."""
    monkeypatch.setenv("TOWERFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'towerflow.db'}")
    spec = '{"name": "collapse-demo", "training": {"batch_size": %d}}' % BATCH
    experiment, _ = store.get_or_create_experiment("c0ffee" * 4, "collapse-demo", spec)
    store.replace_findings(experiment.id, [{
        "code": "high_learning_rate", "severity": "warning", "field": "training.learning_rate",
        "message": "learning rate 10 with 4 dense layers in the buyer tower", "suggestion": "use 0.01"}])
    attempt_id = 0
    for number, (lr, status, reason, epochs) in enumerate(ATTEMPTS, start=1):
        rows = [{"epoch": e, "loss": loss, "steps": 30, "examples": 30 * BATCH,
                 "buyer_grad_norm_mean": grad, "buyer_grad_norm_max": grad * 4,
                 "product_grad_norm_mean": grad / 3, "product_grad_norm_max": grad * 2,
                 "nonfinite_steps": 0 if math.isfinite(loss) else 30, "seconds": 2.0, "learning_rate": lr,
                 "val_loss": loss + 0.15 if status == "succeeded" else None, "uniform_loss": math.log(BATCH)}
                for e, (loss, grad) in enumerate(epochs, start=1)]
        attempt_id = store.record_attempt(experiment.id, number, lr, status, reason, rows)
    store.record_recall(experiment.id, attempt_id, {5: 0.12, 10: 0.21, 50: 0.52, 100: 0.71},
                        {5: 0.05, 10: 0.09, 50: 0.31, 100: 0.47}, n_candidates=400,
                        n_candidate_rows_before_dedup=32000, n_queries=1950, exclude_seen=False)
    store.set_experiment_status(experiment.id, "succeeded", message="succeeded on attempt 3 at lr=0.1")
    out = tmp_path / "report.html"
    assert main(["report", "collapse-demo", "--out", str(out)]) == 0
    yield out
    store.dispose_engines()


def test_report_charts_are_drawn_in_headless_chromium(report_file, tmp_path):
    with headless_chromium(tmp_path / "chromium-profile") as browser:
        browser.get(report_file.as_uri())
        charts = browser.execute_script(MEASURE_CHARTS)
        fits = browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        screenshot = full_page_screenshot(browser, tmp_path / "report.png")
    print(f"screenshot: {screenshot}")

    attempt_charts = [c for c in charts if "attempt-chart" in c["cls"]]
    assert [c["attempt"] for c in attempt_charts] == ["1", "2", "3"]
    assert sum("recall-chart" in c["cls"] for c in charts) == 1
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 80, chart["cls"]
    for chart in attempt_charts:
        lines = [s for s in chart["shapes"] if s["tag"] == "polyline"]
        assert lines and all(s["width"] > 0 for s in lines), f"attempt {chart['attempt']}: a line with no length"
        assert any(s["height"] > 0 for s in lines), f"attempt {chart['attempt']}: every line is flat"
    # The NaN loss and the infinite gradient norms of attempt 2 are drawn as crosses.
    crosses = [s for s in attempt_charts[1]["shapes"] if s["tag"] == "path" and s["cls"] == "cross"]
    assert len(crosses) == 5 and all(s["width"] > 0 and s["height"] > 0 for s in crosses)
    bars = [s for s in charts[-1]["shapes"] if s["tag"] == "rect"]
    assert len(bars) == 8 and all(s["width"] > 1 for s in bars)
    assert fits, "the page scrolls sideways"
    assert errors == []
    assert screenshot.stat().st_size > 10_000
