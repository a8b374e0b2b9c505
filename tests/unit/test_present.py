"""The shared words (tasks.wording) and the renderers that use them: the terminal (flows.present) and the
markdown summary artifact (tasks.report.summary_markdown)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from flows.present import render_experiment, render_experiment_list
from tasks import wording
from tasks.report import lineage_markdown, summary_markdown
from tasks.views import ExperimentView
from trainer.results import EPOCHS_FILE, EpochMetrics, checkpointed_epochs

NAN, INF = float("nan"), float("inf")


def view(recall=((5, 0.03, 0.05), (10, 0.06, 0.06), (50, 0.4, 0.2)), attempts=True, findings=True,
         name="demo") -> ExperimentView:
    scope = {"n_candidates": 400, "n_candidate_rows_before_dedup": 8000, "n_queries": 1900, "exclude_seen": False}
    return ExperimentView.of({
        "experiment": {"id": 7, "config_hash": "ab12cd34", "name": name, "status": "succeeded",
                       "message": "succeeded on attempt 2 at lr=0.1"},
        "findings": [{"code": "high_learning_rate", "severity": "warning", "field": "training.learning_rate",
                      "message": "lr 1 | deep tower", "suggestion": "use 0.1"}] if findings else [],
        "attempts": [{"number": 1, "learning_rate": 1.0, "status": "collapsed", "reason": "scores alike",
                      "epochs_run": 3},
                     {"number": 2, "learning_rate": 0.1, "status": "succeeded", "epochs_run": 5}] if attempts else [],
        "recall": [{"k": k, "value": value, "baseline": base, **scope} for k, value, base in recall],
    })


@pytest.mark.parametrize(("value", "digits", "expected"), [
    (None, 4, "–"), (NAN, 4, "NaN"), (INF, 4, "Infinity"), (-INF, 4, "-Infinity"),
    (0.123456, 4, "0.1235"), (15606400000.0, 3, "1.56e+10"), (3, 4, "3"),
])
def test_number(value, digits, expected):
    assert wording.number(value, digits) == expected


def test_cells_round_to_significant_digits_and_name_what_a_number_cannot_say():
    assert [wording.cell(v) for v in (4.912345678, 4.73022e-7, NAN, -INF, None, 7, "x")] == [
        4.912, 4.73e-7, "NaN", "-Infinity", "", 7, "x"]


def test_lift_and_its_words():
    assert wording.lift(0.2345, 0.0812) == 2.89 and wording.lift_text(0.2345, 0.0812) == "2.89×"
    for model, baseline in ((0.2, 0.0), (NAN, 0.1), (0.2, INF)):
        assert wording.lift(model, baseline) is None and wording.lift_text(model, baseline) == "–"


def test_rates_and_their_changes():
    assert (wording.rate(0.1), wording.rate(1e-5)) == ("0.1", "1e-05")
    assert wording.rate_change(10.0, 1.0) == "× 0.1" and wording.rate_change(0.1, 0.01) == "× 0.1"
    assert wording.rate_change(None, 1.0) is None and wording.rate_change(1.0, NAN) is None


def test_the_recall_scope_sentence():
    scope = SimpleNamespace(n_candidates=400, n_candidate_rows_before_dedup=8000, n_queries=1900, exclude_seen=True)
    assert wording.recall_scope(scope) == (
        "over 400 unique products (8000 rows before de-duplication), 1900 buyers, exclude_seen=True")
    assert ", 1900 buyers, 2100 test pairs, exclude_seen" in wording.recall_scope(scope, n_pairs=2100)


def test_below_popularity_and_status_words():
    assert wording.below_popularity([5, 10]) == "below popularity at @5, @10: not worth serving there"
    assert wording.below_popularity([]) is None
    assert [wording.status_word(s) for s in ("collapsed", "awaiting_approval")] == ["Collapsed", "Awaiting approval"]


def test_markdown_cells_cannot_break_the_table():
    lines = wording.markdown_table(["a", "b"], [["x | y", "two\nlines"]])
    assert lines == ["| a | b |", "|---|---|", "| x \\| y | two lines |"]


def test_names_and_data_values_show_in_markdown_as_they_are_never_as_markup():
    hostile = "<img src=x onerror=alert(1)> **bold** [link](javascript:x) # c_1"
    assert wording.markdown_text(hostile) == (
        "\\<img src=x onerror=alert(1)\\> \\*\\*bold\\*\\* \\[link\\](javascript:x) \\# c\\_1")
    text = summary_markdown(view(name=hostile))
    assert text.startswith(f"# {wording.markdown_text(hostile)}: Succeeded") and "<img" not in text.replace("\\<", "")


def test_the_terminal_names_every_k_below_popularity_with_the_shared_words():
    text = render_experiment(view())
    assert "recall over 400 unique products (8000 rows before de-duplication), 1900 buyers, exclude_seen=False:" in text
    assert "  below popularity at @5, @10: not worth serving there" in text  # @10 ties: not a win
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip().startswith("@")}
    assert rows == {"@5": ["0.0300", "0.0500", "0.60×"], "@10": ["0.0600", "0.0600", "1.00×"],
                    "@50": ["0.4000", "0.2000", "2.00×"]}  # recall to 4 decimals: a column that lines up
    assert "below popularity" not in render_experiment(view(recall=((10, 0.3, 0.1),)))


def test_the_terminal_accepts_the_detail_dict_the_cli_holds():
    detail = view().model_dump()
    assert render_experiment(detail) == render_experiment(view())
    assert "[succeeded]  hash ab12cd34" in render_experiment(detail)


def test_an_unfinished_experiment_nobody_works_on_says_why_and_what_continues_it():
    unowned = "its process host:42 is gone"
    text = render_experiment(view(), unowned).splitlines()
    assert text[2] == (f"  no run is working on it ({unowned}): run its config again, or let `towerflow serve` "
                       "recover it; it continues from its last checkpoint")
    assert "no run is working on it" not in render_experiment(view())
    listed = render_experiment_list([{"id": 1, "name": "a", "status": "running", "config_hash": "ab", "message": None,
                                      "updated_at": "2026-12-07T05:52:19", "unowned": unowned}])
    assert "running (unowned)" in listed


def test_a_running_attempt_shows_how_far_its_checkpoints_have_got(tmp_path):
    running = ExperimentView.of({
        "experiment": {"id": 8, "config_hash": "cd", "name": "live", "status": "running", "spec": {"training": {"epochs": 40}}},
        "attempts": [{"number": 1, "learning_rate": 1.0, "status": "collapsed", "reason": "scores alike", "epochs_run": 3},
                     {"number": 2, "learning_rate": 0.1, "status": "running"}],
    })
    epochs = [EpochMetrics(epoch=e, loss=5.0 - e / 10, steps=2, examples=64, buyer_grad_norm_mean=1.0,
                           buyer_grad_norm_max=1.0, product_grad_norm_mean=1.0, product_grad_norm_max=1.0,
                           nonfinite_steps=0, seconds=0.1, learning_rate=0.1, uniform_loss=6.0) for e in (1, 2, 3)]
    workdir = tmp_path / "attempt-2"
    (workdir / "checkpoints").mkdir(parents=True)
    (workdir / EPOCHS_FILE).write_text(json.dumps([m.model_dump(mode="json") for m in epochs]))
    so_far = checkpointed_epochs(str(workdir))
    assert so_far == epochs and checkpointed_epochs(str(tmp_path / "attempt-3")) == []

    lines = render_experiment(running, checkpointed={1: epochs, 2: so_far}).splitlines()
    assert lines[-1].split()[:6] == ["2", "0.1", "running", "3", "of", "40"]
    assert lines[-1].endswith("epoch 3 checkpointed: loss/example 4.7000 (uniform scores: 6.0000)")
    assert lines[-2].split()[:4] == ["1", "1", "collapsed", "3"]  # an attempt that ended shows what is stored
    assert render_experiment(running).splitlines()[-1].split() == ["2", "0.1", "running", "0"]
    (workdir / EPOCHS_FILE).write_text('[{"epoch": 1, "lo')  # being written, or damaged: nothing to show
    assert checkpointed_epochs(str(workdir)) == []


def test_summary_markdown_has_recall_with_lift_the_lineage_and_the_findings():
    text = summary_markdown(view())
    assert text.startswith("# demo: Succeeded\n\nsucceeded on attempt 2 at lr=0.1\n")
    assert "| @50 | 0.4000 | 0.2000 | 2.00× |" in text and "| @5 | 0.0300 | 0.0500 | 0.60× |" in text
    assert "**below popularity at @5, @10: not worth serving there**" in text
    assert "| 1 | 1 | Collapsed | 3 | scores alike |" in text and "| 2 | 0.1 | Succeeded | 5 |  |" in text
    assert "| warning | training.learning\\_rate | lr 1 \\| deep tower | use 0.1 |" in text  # shown as training.learning_rate
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Recall@k against popularity", "## Attempts", "## Findings"]


def test_summary_markdown_of_an_experiment_that_never_trained():
    text = summary_markdown(view(recall=(), attempts=False, findings=False))
    assert "No recall" in text and "No attempt was made." in text and "No findings" in text
    assert "below popularity" not in text and "|" not in text


def test_the_lineage_card_and_the_summary_share_the_status_words():
    results = [SimpleNamespace(learning_rate=1.0, status="collapsed", epochs_run=3, reason="scores alike"),
               SimpleNamespace(learning_rate=0.1, status="succeeded", epochs_run=5, reason="")]
    card = lineage_markdown("demo", results)
    assert card.splitlines()[0] == "# demo: attempt lineage"
    table = card.split("\n\n", 1)[1]
    assert table in summary_markdown(view())


def test_ease_is_shown_beside_popularity_only_where_it_was_measured():
    plain = view()
    assert wording.recall_table(plain.recall)[0] == ["k", "model", "popularity", "lift"]
    measured = ExperimentView.of({**plain.model_dump(), "recall": [
        {**r.model_dump(), "ease": ease} for r, ease in zip(plain.recall, (0.06, 0.05, 0.5))]})
    headers, rows = wording.recall_table(measured.recall)
    assert headers == ["k", "model", "popularity", "lift", "EASE", "model / EASE"]
    assert rows[0][-2:] == ["0.0600", "0.50×"] and rows[2][-2:] == ["0.5000", "0.80×"]
    assert "| EASE | model / EASE |" in summary_markdown(measured)
    assert "model / EASE" in render_experiment(measured) and "EASE" not in render_experiment(plain)
