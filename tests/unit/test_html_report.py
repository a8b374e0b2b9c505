"""tasks.html_report on a hand-built experiment detail (the shape `store.experiment_detail` returns), and `towerflow report` over a real SQLite store."""

from __future__ import annotations

import math
import re
from pathlib import Path

import fsspec
import pytest

from flows.cli import main
from tasks import store
from tasks.html_report import render_report, report_filename, write_report
from tasks.views import ExperimentView

COLLAPSE_DEMO = Path(__file__).resolve().parents[2] / "examples" / "collapse_demo.yaml"
UNIFORM = math.log(1024)  # a collapsed model's loss per example at batch size 1024


def epoch(number: int, loss, grad: float, lr: float, val_loss=None) -> dict:
    """One stored epoch row as experiment_detail returns it (non-finite floats as strings)."""
    return {
        "epoch": number, "loss": loss, "steps": 40, "examples": 40960,
        "buyer_grad_norm_mean": grad, "buyer_grad_norm_max": grad * 3,
        "product_grad_norm_mean": grad / 2, "product_grad_norm_max": grad * 2,
        "nonfinite_steps": 0 if loss != "NaN" else 40, "seconds": 1.25, "learning_rate": lr,
        "val_loss": val_loss, "uniform_gap": abs(loss - UNIFORM) if loss != "NaN" else None, "uniform_loss": UNIFORM,
    }


def attempt(number: int, lr: float, status: str, reason: str, epochs: list[dict]) -> dict:
    return {"id": number, "experiment_id": 7, "number": number, "learning_rate": lr, "status": status,
            "reason": reason, "epochs_run": len(epochs), "model_uri": None, "epochs": epochs}


def sample_detail() -> dict:
    """Collapsed at lr 10 (flat on log(batch), tiny gradients), diverged at lr 1 (NaN), healthy at lr 0.1."""
    collapsed = [epoch(e, UNIFORM + 1e-5, grad, 10.0) for e, grad in ((1, 3e-4), (2, 2e-5), (3, 1.2e-5))]
    healthy = [epoch(e, loss, grad, 0.1, val_loss=loss + 0.2)
               for e, loss, grad in ((1, 6.4, 0.9), (2, 5.8, 0.6), (3, 5.5, 0.45))]
    return {
        "experiment": {
            "id": 7, "name": "collapse-demo", "status": "succeeded", "config_hash": "ab12cd34",
            "message": "succeeded on attempt 3 at lr=0.1", "created_at": "2025-01-02T03:04:05+00:00",
            "updated_at": "2025-01-02T03:09:05+00:00", "flow_run_id": None,
            "spec": {"name": "collapse-demo", "training": {"batch_size": 1024}},
        },
        "findings": [{"id": 1, "experiment_id": 7, "code": "high_learning_rate", "severity": "warning",
                      "field": "training.learning_rate", "message": "learning rate 10 with <4> dense layers",
                      "suggestion": "use 0.01"}],
        "attempts": [
            attempt(1, 10.0, "collapsed", "scores alike for 2 epochs", collapsed),
            attempt(2, 1.0, "diverged", "non-finite loss at epoch 1", [epoch(1, "NaN", 0.5, 1.0)]),
            attempt(3, 0.1, "succeeded", "", healthy),
        ],
        "recall": [{"k": k, "value": value, "baseline": base, "n_candidates": 400,
                    "n_candidate_rows_before_dedup": 8000, "n_queries": 1900, "exclude_seen": False,
                    "attempt_id": 3, "experiment_id": 7, "id": k}
                   for k, value, base in ((10, 0.2345, 0.0812), (100, 0.7123, 0.4567))],
    }


def attempt_svgs(html: str) -> dict[int, str]:
    charts = re.findall(r'<svg class="chart attempt-chart" data-attempt="(\d+)".*?>(.*?)</svg>', html, re.S)
    return {int(number): svg for number, svg in charts}


def polyline_ys(svg: str, style: str) -> list[float]:
    ys = []
    for points in re.findall(rf'<polyline class="line {style}" points="([^"]*)"', svg):
        ys += [float(p.split(",")[1]) for p in points.split()]
    return ys


def reference_y(svg: str) -> float:
    (y,) = set(re.findall(r'<line class="reference uniform" x1="[^"]+" x2="[^"]+" y1="([^"]+)" y2="\1"', svg))
    return float(y)


def test_one_chart_per_attempt_each_with_two_log_scale_panels():
    html = render_report(sample_detail())
    svgs = attempt_svgs(html)
    assert sorted(svgs) == [1, 2, 3]
    for svg in svgs.values():
        assert svg.count('<g class="panel" data-scale="log"') == 2
        assert svg.count(">log scale</text>") == 2
        assert "loss per example" in svg and "gradient norm" in svg


def test_collapse_sits_on_the_uniform_loss_line_and_recovery_falls_below_it():
    svgs = attempt_svgs(render_report(sample_detail()))
    collapsed_loss, uniform = polyline_ys(svgs[1], "loss"), reference_y(svgs[1])
    assert len(collapsed_loss) == 3
    assert max(abs(y - uniform) for y in collapsed_loss) < 0.5  # pixels: flat on the reference
    healthy_loss = polyline_ys(svgs[3], "loss")
    assert all(y > reference_y(svgs[3]) + 10 for y in healthy_loss)  # lower loss is further down the chart
    assert healthy_loss == sorted(healthy_loss)  # and keeps falling


def test_uniform_loss_falls_back_to_log_batch_size_from_the_spec():
    detail = sample_detail()
    for row in detail["attempts"][0]["epochs"]:
        row["uniform_loss"] = None
    svg = attempt_svgs(render_report(detail))[1]
    assert f"log(batch) = {UNIFORM:.4g}" in svg
    assert max(abs(y - reference_y(svg)) for y in polyline_ys(svg, "loss")) < 0.5


def test_gradient_axis_spans_the_tiny_collapsed_norms_and_the_healthy_ones():
    svg = attempt_svgs(render_report(sample_detail()))[1]
    grad_panel = svg.split('<g class="panel"')[2]
    low, high = map(float, re.search(r'data-range="([^"]+)"', grad_panel).group(1).split(".."))
    assert low <= 6e-6 and high >= 2.7  # product mean 1.2e-5 / 2 ... buyer max 0.9 * 3
    ticks = [float(t) for t in re.findall(r'class="tick y-tick"[^>]*>([^<]+)<', grad_panel)]
    assert len(ticks) >= 3 and max(ticks) / min(ticks) >= 1e4


def test_nan_loss_is_marked_and_left_out_of_the_line():
    svg = attempt_svgs(render_report(sample_detail()))[2]
    mark = re.search(
        r'<g class="nonfinite loss" data-epoch="1"[^>]*><title>([^<]*)</title>.*?<text[^>]*>([^<]*)</text>', svg
    )
    assert mark, "the NaN loss of attempt 2 has no mark"
    assert "NaN" in mark.group(1) and mark.group(2) == "NaN"
    assert polyline_ys(svg, "loss") == []


def test_lineage_rows_in_attempt_order_with_rates_statuses_and_reasons():
    html = render_report(sample_detail())
    rows = re.findall(r'<tr class="lineage-row">(.*?)</tr>', html)
    assert len(rows) == 3
    cells = [re.sub(r"<[^>]+>", "", row) for row in rows]
    assert cells[0].startswith("110") and "collapsed" in cells[0] and "scores alike for 2 epochs" in cells[0]
    assert cells[1].startswith("21 (× 0.1)") and "diverged" in cells[1] and "NaN" in cells[1]
    assert cells[2].startswith("30.1 (× 0.1)") and "succeeded" in cells[2]


def test_recall_values_baseline_and_lift_in_table_and_chart():
    html = render_report(sample_detail())
    rows = {k: re.sub(r"<[^>]+>", " ", row).split()
            for k, row in re.findall(r'<tr class="recall-row" data-k="(\d+)">(.*?)</tr>', html)}
    assert rows == {"10": ["@10", "0.2345", "0.0812", "2.89×"], "100": ["@100", "0.7123", "0.4567", "1.56×"]}
    bars = re.findall(r'<rect class="bar (model|popularity)" x="[^"]+" y="[^"]+" width="([^"]+)"', html)
    widths = {(style, i // 2): float(width) for i, (style, width) in enumerate(bars)}
    assert widths[("model", 0)] / widths[("popularity", 0)] == pytest.approx(0.2345 / 0.0812, rel=0.01)
    assert "400 unique products" in html and "8000 rows before de-duplication" in html


def test_every_k_below_popularity_is_named():
    assert "below popularity" not in render_report(sample_detail())
    detail = sample_detail()
    detail["recall"][0]["value"] = 0.05  # @10 now below popularity's 0.0812, @100 still above
    (line,) = re.findall(r'<p class="below-baseline">([^<]*)</p>', render_report(detail))
    assert line == "below popularity at @10: not worth serving there"


def test_the_epoch_table_has_the_artifacts_columns_and_verdicts():
    html = render_report(sample_detail())
    figure = html.split('id="attempt-1"')[1].split("</figure>")[0]
    headers = re.findall(r"<th>([^<]*)</th>", figure)
    assert headers == ["epoch", "loss/example", "uniform loss", "gap", "grad norm buyer", "grad norm product",
                       "non-finite steps", "seconds", "verdict"]
    assert figure.count("<td>at uniform loss</td>") == 3
    diverged = html.split('id="attempt-2"')[1].split("</figure>")[0]
    assert '<span class="nonfinite-value">NaN</span>' in diverged and "<td>non-finite</td>" in diverged


def test_findings_are_shown_escaped():
    html = render_report(sample_detail())
    assert "training.learning_rate" in html and "use 0.01" in html
    assert "&lt;4&gt; dense layers" in html and "<4>" not in html


def test_everything_stored_is_escaped_by_the_template():
    detail = sample_detail()
    detail["experiment"] |= {"name": "<script>alert(1)</script>", "message": 'a "quoted" & <b>bold</b> message'}
    detail["attempts"][0]["reason"] = "<img src=x>"
    html = render_report(detail)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "&amp;" in html and "<img" not in html


def test_a_view_and_its_detail_dict_render_alike():
    detail = sample_detail()
    assert render_report(ExperimentView.of(detail)) == render_report(detail)
    assert report_filename(ExperimentView.of(detail)) == report_filename(detail) == "collapse-demo-7.html"


def test_a_long_name_gives_a_file_name_a_filesystem_takes(tmp_path):
    detail = sample_detail()
    detail["experiment"]["name"] = "ünïcode ✓ " + "x" * 5000
    name = report_filename(detail)
    assert name.startswith("n-code-xxx") and name.endswith("-7.html") and len(name.encode()) <= 255
    assert (tmp_path / name).write_text("ok") == 2  # writable as named


def test_the_page_loads_nothing_from_anywhere():
    html = render_report(sample_detail())
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=|@import|url\(", html)


def test_an_experiment_without_attempts_or_recall_still_renders():
    detail = sample_detail() | {"attempts": [], "recall": []}
    detail["experiment"] = detail["experiment"] | {"status": "halted", "message": "halted on warnings"}
    html = render_report(detail)
    assert attempt_svgs(html) == {}
    assert "No attempt was made." in html and "No recall" in html and "halted on warnings" in html


def test_write_report_returns_a_file_uri_locally_and_the_url_elsewhere(tmp_path):
    detail = sample_detail()
    uri = write_report(detail, tmp_path / "deep" / "er" / report_filename(detail))
    assert uri == (tmp_path / "deep" / "er" / "collapse-demo-7.html").as_uri()
    assert (tmp_path / "deep" / "er" / "collapse-demo-7.html").read_text(encoding="utf-8") == render_report(detail)
    remote = write_report(detail, "memory://reports/r.html")
    assert remote == "memory://reports/r.html"
    with fsspec.open(remote, "r", encoding="utf-8") as stored:
        assert "attempt-chart" in stored.read()


@pytest.fixture
def stored_experiment(tmp_path, monkeypatch) -> store.Experiment:
    monkeypatch.setenv("TOWERFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'towerflow.db'}")
    experiment, _ = store.get_or_create_experiment("f00d" * 4, "my demo/exp", "{}")
    store.record_attempt(experiment.id, 1, 0.1, "diverged", "nan", [epoch(1, float("nan"), 0.5, 0.1)])
    yield experiment
    store.dispose_engines()


def test_report_command_writes_under_towerflow_home_and_prints_the_uri(stored_experiment, tmp_path, capsys):
    assert main(["report", "my demo/exp"]) == 0
    path = tmp_path / "home" / "reports" / f"my-demo-exp-{stored_experiment.id}.html"
    assert capsys.readouterr().out.strip() == path.as_uri()
    assert 'class="nonfinite loss"' in path.read_text(encoding="utf-8")  # the stored NaN came back marked


def test_report_command_out_path_and_unknown_experiment(stored_experiment, tmp_path, capsys):
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(stored_experiment.id), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == out.as_uri() and out.exists()
    assert main(["report", "no-such-experiment"]) == 2
    assert "no-such-experiment" in capsys.readouterr().err


def test_the_flow_links_the_report_and_a_failure_to_write_it_only_warns(stored_experiment, tmp_path, monkeypatch):
    from flows import experiment as flow_module
    from trainer.spec import load_spec

    spec = load_spec(str(COLLAPSE_DEMO))
    monkeypatch.setenv("TOWERFLOW_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("TOWERFLOW_REPORT_URL", "http://127.0.0.1:8765")  # a report server serves the artifacts
    links, summaries = [], []
    monkeypatch.setattr(flow_module, "create_link_artifact", lambda link, **kwargs: links.append((link, kwargs)))
    # the summary card goes to Prefect (test_prefect_ui checks it there); here no Prefect API is needed
    monkeypatch.setattr(flow_module, "publish_summary", lambda spec, view: summaries.append(view.experiment.id))
    flow_module._link_report(spec, stored_experiment.id)
    assert summaries == [stored_experiment.id]
    path = tmp_path / "artifacts" / spec.content_hash() / f"my-demo-exp-{stored_experiment.id}.html"
    assert [link for link, _ in links] == [f"http://127.0.0.1:8765/{spec.content_hash()}/{path.name}"]
    assert links[0][1]["key"] == f"collapse-demo-{spec.content_hash()[:8]}-report"  # the hash keeps configs apart
    assert "attempt-chart" in path.read_text(encoding="utf-8")

    def broken(detail, path):
        raise OSError("disk full")

    monkeypatch.setattr(flow_module, "write_report", broken)
    warnings: list[str] = []
    logger = type("Logger", (), {"warning": lambda self, message, *args: warnings.append(message % args)})()
    monkeypatch.setattr(flow_module, "get_run_logger", lambda: logger)
    flow_module._link_report(spec, stored_experiment.id)  # does not raise
    assert len(links) == 1 and len(warnings) == 1 and "OSError: disk full" in warnings[0]
