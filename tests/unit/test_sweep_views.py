"""A sweep in the store and its renderers: the leaderboard, progress, and the comparison of experiments
(terminal, markdown artifact, HTML page)."""

from __future__ import annotations

import json
import math

from flows.present import render_comparison, render_leaderboard
from tasks import store
from tasks.html_report import render_comparison as comparison_page
from tasks.report import leaderboard_markdown
from tasks.views import Comparison


def epoch(number: int, loss: float) -> dict:
    return {"epoch": number, "loss": loss, "buyer_grad_norm_mean": 0.5, "buyer_grad_norm_max": 0.5,
            "product_grad_norm_mean": 0.5, "product_grad_norm_max": 0.5, "nonfinite_steps": 0,
            "seconds": 1.0, "learning_rate": 0.1, "uniform_loss": math.log(256)}


def experiment(name: str, config_hash: str, lr: float, recall10: float | None, status: str = "succeeded") -> int:
    spec = {"name": name, "training": {"learning_rate": lr, "epochs": 2}, "model": {"temperature": 0.1}}
    row, _ = store.get_or_create_experiment(config_hash, name, json.dumps(spec))
    first = store.record_attempt(row.id, 1, lr, "collapsed" if recall10 is None else "succeeded", "", [epoch(1, 5.0)])
    if recall10 is not None:
        store.record_recall(row.id, first, {5: recall10 / 2, 10: recall10}, {5: 0.05, 10: 0.1}, 60, 60, 30, False)
    store.set_experiment_status(row.id, status)
    return row.id


def make_sweep() -> store.Sweep:
    experiment("s-lr=0.3", "a" * 16, 0.3, 0.2)
    experiment("s-lr=0.1", "b" * 16, 0.1, 0.4)
    experiment("s-lr=1", "c" * 16, 1.0, None, status="failed")
    points = [{"name": f"s-lr={v}", "config_hash": h * 16, "values": {"training.learning_rate": v}}
              for v, h in ((0.3, "a"), (0.1, "b"), (1, "c"), (0.01, "d"))]
    return store.record_sweep("f" * 16, "s", {"training.learning_rate": [0.3, 0.1, 1, 0.01]}, points)


def test_a_sweep_ranks_its_points_by_recall_and_counts_progress(database_url):
    sweep = make_sweep()
    assert store.record_sweep("f" * 16, "s", {}, []).id == sweep.id  # the same sweep again: one row
    assert store.find_sweep("s").id == sweep.id == store.find_sweep("fff").id
    view = store.sweep_view(sweep.id)
    rows = view.leaderboard(10)
    assert [(r.rank, r.name, r.status) for r in rows] == [
        (1, "s-lr=0.1", "succeeded"), (2, "s-lr=0.3", "succeeded"), (3, "s-lr=1", "failed"), (4, "s-lr=0.01", "queued")]
    assert rows[0].recall == 0.4 and rows[0].popularity == 0.1 and rows[0].final_learning_rate == 0.1
    assert rows[3].experiment_id is None and rows[3].attempts == 0
    assert view.progress().model_dump() == {"done": 3, "running": 0, "queued": 1}
    assert view.ks == [5, 10]
    text = render_leaderboard(view, 10)
    assert "3 done, 0 running, 1 queued (of 4)" in text and "4.00×" in text
    assert text.index("s-lr=0.1 ") < text.index("s-lr=0.3 ")
    card = leaderboard_markdown(view, 5)
    assert "leaderboard by recall@5" in card and "| 1 | s-lr=0.1 | succeeded | 0.2000 | 0.0500 | 4.00× |" in card


def test_a_comparison_shows_only_the_fields_that_differ_and_recall_side_by_side(database_url):
    make_sweep()
    views = [store.experiment_view(store.find_experiment(n).id) for n in ("s-lr=0.3", "s-lr=0.1", "s-lr=1")]
    comparison = Comparison(experiments=views)
    assert comparison.differences == {"training.learning_rate": [0.3, 0.1, 1.0]}
    text = render_comparison(comparison)
    assert "training.learning_rate" in text and "temperature" not in text and "epochs" in text
    assert "0.4000 (4.00×)" in text and "–" in text  # the failed one has no recall
    summary = comparison.summary()
    assert [e["attempts"] for e in summary["experiments"]] == [1, 1, 1]
    assert summary["experiments"][1]["recall"][10] == {"model": 0.4, "popularity": 0.1}


def test_the_comparison_page_overlays_each_final_attempts_loss_and_escapes_names(database_url):
    experiment("<b>x</b>", "e" * 16, 0.1, 0.3)
    experiment("y", "9" * 16, 0.2, 0.1)
    page = comparison_page(Comparison(experiments=[store.experiment_view(store.find_experiment(n).id)
                                                   for n in ("<b>x</b>", "y")]))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert 'class="key series-0"' in page and 'class="key series-1"' in page
    assert page.count('class="dot series-') == 2 and "<script" not in page
