"""The learning-rate probe in the presentation layer: its rows, its chart panels and its section of the HTML report."""

from __future__ import annotations

import math
import re

from tasks import charts, wording
from tasks.html_report import render_report
from tasks.views import ExperimentView
from trainer.probe_curve import ProbePoint, analyse

UNIFORM = math.log(1024)


def probe(mode: str = "pick") -> dict:
    losses = [UNIFORM, UNIFORM - 0.4, UNIFORM - 0.9, UNIFORM - 0.7, UNIFORM]  # collapses back at the 5th rate
    points = [ProbePoint(rate=10.0 ** (i - 3), loss=loss, uniform_loss=UNIFORM, buyer_grad_norm=10.0 ** i,
                         product_grad_norm=2.0, steps=10) for i, loss in enumerate(losses)]
    return {"mode": mode, **analyse(points, seconds=4.2).model_dump(mode="json")}


def detail(first_rate: float, lr_probe: dict | None) -> dict:
    epochs = [{"epoch": 1, "loss": 6.0, "steps": 40, "examples": 40960, "buyer_grad_norm_mean": 0.5,
               "buyer_grad_norm_max": 0.9, "product_grad_norm_mean": 0.4, "product_grad_norm_max": 0.8,
               "nonfinite_steps": 0, "seconds": 1.0, "learning_rate": first_rate, "uniform_loss": UNIFORM}]
    return {
        "experiment": {"id": 3, "name": "probed", "status": "succeeded", "config_hash": "ab12cd34",
                       "spec": {"training": {"batch_size": 1024}}},
        "attempts": [{"id": 1, "number": 1, "learning_rate": first_rate, "status": "succeeded", "epochs_run": 1,
                      "epochs": epochs}],
        "lr_probe": lr_probe,
    }


def test_rows_mark_the_lowest_loss_and_the_first_failure():
    view = ExperimentView.of(detail(0.001, probe()))
    readings = [row["reading"] for row in wording.probe_rows(view.lr_probe)]
    assert readings == ["", "", "lowest loss", "", "collapsed"]


def test_panels_put_rates_across_with_the_uniform_line_on_the_loss():
    loss, grads = charts.probe_panels(ExperimentView.of(detail(0.001, probe())).lr_probe)
    assert loss.reference == UNIFORM and loss.axis.x_title == "learning rate"
    assert [loss.axis.x_label(i) for i in range(1, 6)] == ["0.001", "0.01", "0.1", "1", "10"]
    assert [t.series.label for t in grads.traces] == ["buyer mean", "product mean"]
    assert charts.probe_panels(None) == []


def test_the_report_shows_the_probe_and_says_when_attempt_1_trained_at_its_suggestion():
    page = render_report(detail(0.1, probe()))
    section = page[page.index('id="lr-probe"'):page.index("Training attempts")]
    assert "Suggested learning rate <strong>0.1</strong>: attempt 1 trained at it" in section
    assert len(re.findall('class="probe-row"', section)) == 5 and ">learning rate</text>" in section
    assert "collapsed to the uniform-score loss at lr 10" in section
    assert "attempt 1 trained at it" not in render_report(detail(0.05, probe("warn")))
    assert 'id="lr-probe"' not in render_report(detail(0.05, None))


def test_the_lineage_card_says_where_attempt_1s_rate_came_from():
    from tasks.report import lineage_markdown
    from trainer.results import AttemptResult

    attempt = AttemptResult(status="succeeded", reason="trained", learning_rate=0.02, epochs=[], epochs_run=2,
                            model_uri=None, workdir="w")
    card = lineage_markdown("probed", [attempt], "the learning-rate probe's suggestion 0.02, configured 10")
    assert card.endswith("Attempt 1's learning rate: the learning-rate probe's suggestion 0.02, configured 10.")
    assert "Attempt 1's learning rate" not in lineage_markdown("plain", [attempt])
