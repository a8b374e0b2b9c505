"""tasks.store on SQLite and PostgreSQL (the `database_url` fixture runs each test on both)."""

from __future__ import annotations

import json
import math
import threading
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel
from sqlalchemy import event, inspect, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, select

from tasks import store
from trainer.errors import NoSpaceLeft

NAN, INF = float("nan"), float("inf")
TABLES = {"experiment", "finding", "attempt", "epoch_metric", "recall_result"}


class EpochMetrics(BaseModel):
    """The trainer's EpochMetrics shape (the store must not need the trainer to accept it)."""

    epoch: int
    loss: float
    steps: int = 10
    examples: int = 640
    buyer_grad_norm_mean: float = 0.5
    buyer_grad_norm_max: float = 0.9
    product_grad_norm_mean: float = 0.4
    product_grad_norm_max: float = 0.8
    nonfinite_steps: int = 0
    seconds: float = 1.5
    learning_rate: float = 0.1
    val_loss: float | None = None


class Finding(BaseModel):
    code: str
    severity: str
    field: str
    message: str
    suggestion: str | None = None


def epochs(*losses: float) -> list[EpochMetrics]:
    return [EpochMetrics(epoch=number, loss=loss) for number, loss in enumerate(losses, start=1)]


def new_experiment(config_hash: str = "a1b2c3d4e5f60718", name: str = "movielens-deep") -> int:
    experiment, _ = store.get_or_create_experiment(config_hash, name, json.dumps({"name": name}))
    assert experiment.id is not None
    return experiment.id


def count(table: str) -> int:
    with store.get_engine().connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_default_database_is_created_under_towerflow_home(tmp_path, monkeypatch):
    home = tmp_path / "not" / "yet"
    monkeypatch.delenv("TOWERFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("TOWERFLOW_HOME", str(home))
    try:
        assert store.list_experiments() == []
        assert (home / "towerflow.db").is_file()
        assert TABLES <= set(inspect(store.get_engine()).get_table_names())
    finally:
        store.dispose_engines()


def test_a_database_made_by_an_older_towerflow_gains_the_new_nullable_columns(database_url):
    with store.get_engine().begin() as connection:  # the epoch table as it was before uniform_gap existed
        connection.execute(text('ALTER TABLE epoch_metric DROP COLUMN uniform_gap'))
    store.dispose_engines()
    experiment_id = new_experiment()
    store.record_attempt(experiment_id, 1, 0.1, "collapsed", "flat", [{**EpochMetrics(epoch=1, loss=6.9).model_dump(),
                                                                       "uniform_gap": 2e-7}])
    [epoch] = store.experiment_detail(experiment_id)["attempts"][0]["epochs"]
    assert epoch["uniform_gap"] == 2e-7


def test_postgresql_urls_run_on_psycopg(monkeypatch):
    assert store.normalize_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert store.normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store.normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store.normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", "postgresql://u@h/db")
    assert store.database_url() == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("url, said", [
    ("foo://x", "TOWERFLOW_DATABASE_URL=foo://x: towerflow stores in SQLite (sqlite:///PATH) or PostgreSQL "
                "(postgresql://USER@HOST:PORT/DATABASE), not foo"),
    ("mysql://me:s3cret@db/x", "TOWERFLOW_DATABASE_URL=mysql://me:***@db/x: towerflow stores in SQLite"),
    ("my database", "TOWERFLOW_DATABASE_URL=my database: not a database URL; towerflow stores in SQLite"),
])
def test_a_database_url_towerflow_cannot_use_is_named_in_one_line(monkeypatch, url, said):
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", url)
    with pytest.raises(store.DatabaseUnusable) as raised:
        store.check_database()
    assert str(raised.value).startswith(said) and "s3cret" not in str(raised.value)
    assert raised.value.exit_code == 2


def test_a_file_that_is_not_a_database_is_named_and_never_overwritten(tmp_path, monkeypatch):
    path = tmp_path / "towerflow.db"
    path.write_bytes(b"my notes, not SQLite\n" * 100)
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", f"sqlite:///{path}")
    try:
        with pytest.raises(store.DatabaseUnusable, match=f"^database sqlite:///{path} cannot be used: file is not a database$"):
            store.list_experiments()
    finally:
        store.dispose_engines()
    assert path.read_bytes() == b"my notes, not SQLite\n" * 100


def test_engine_is_cached_per_url(database_url):
    assert store.get_engine() is store.get_engine(database_url)


def test_get_or_create_experiment_is_idempotent(database_url):
    first, created = store.get_or_create_experiment("feedc0de00000001", "exp", '{"v": 1}')
    again, created_again = store.get_or_create_experiment("feedc0de00000001", "renamed", '{"v": 2}')
    assert (created, created_again) == (True, False)
    assert again.id == first.id and again.name == "exp" and again.spec_json == '{"v": 1}'
    assert [e.id for e in store.list_experiments()] == [first.id]


def test_get_or_create_recovers_when_another_caller_inserts_first(database_url, monkeypatch):
    winner = new_experiment("feedc0de00000002")
    lookup = store._experiment_by_hash
    calls = []

    def miss_first_lookup(session, config_hash):  # the other caller commits between our read and write
        calls.append(config_hash)
        return None if len(calls) == 1 else lookup(session, config_hash)

    monkeypatch.setattr(store, "_experiment_by_hash", miss_first_lookup)
    experiment, created = store.get_or_create_experiment("feedc0de00000002", "late", "{}")
    assert (experiment.id, created, len(calls)) == (winner, False, 2)
    assert count("experiment") == 1


def outcome(experiment_id: int, run: str, **options) -> str:
    return store.claim_experiment(experiment_id, run, f"host:{run}", 60, **options).outcome


def test_only_one_flow_run_claims_a_pending_experiment(database_url):
    experiment_id = new_experiment("feedc0de00000010")
    assert outcome(experiment_id, "run-a") == "claimed"
    assert outcome(experiment_id, "run-b") == "live"  # a re-delivered event
    assert outcome(experiment_id, "run-b", force=True) == "live"  # --force never doubles a live owner
    assert outcome(experiment_id, "run-a") == "claimed"  # the same run, retried
    store.set_experiment_status(experiment_id, "succeeded")
    assert outcome(experiment_id, "run-c") == "finished"
    assert store.experiment_detail(experiment_id)["experiment"]["lease_expires_at"] is None  # ended: released


def test_a_run_takes_over_when_the_lease_expired_or_the_owner_is_gone(database_url):
    experiment_id = new_experiment("feedc0de00000012")
    store.claim_experiment(experiment_id, "run-a", "host:1", lease_s=-1)  # a lease that has already lapsed
    claim = store.claim_experiment(experiment_id, "run-b", "host:2", 60)
    assert (claim.outcome, claim.previous.flow_run_id, claim.experiment.owner) == ("taken_over", "run-a", "host:2")
    assert outcome(experiment_id, "run-c") == "live"
    asked = []
    gone = store.claim_experiment(experiment_id, "run-c", "host:3", 60,
                                  owner_gone=lambda e: asked.append(e.flow_run_id) or True)
    assert gone.outcome == "taken_over" and asked == ["run-b"]


def test_renewing_keeps_the_lease_and_tells_a_run_it_was_taken_over(database_url):
    experiment_id = new_experiment("feedc0de00000013")
    store.claim_experiment(experiment_id, "run-a", "host:1", lease_s=-1)
    assert store.renew_lease(experiment_id, "run-a", "host:1", 60) is True  # renewed in time: live again
    assert outcome(experiment_id, "run-b") == "live"
    store.claim_experiment(experiment_id, "run-b", "host:2", 60, owner_gone=lambda e: True)
    assert store.renew_lease(experiment_id, "run-a", "host:1", 60) is False


def test_an_interrupted_run_releases_its_lease_for_the_next_run_at_once(database_url):
    experiment_id = new_experiment("feedc0de00000014")
    store.claim_experiment(experiment_id, "run-a", "host:1", 60)
    assert store.release_lease(experiment_id, "run-b", "interrupted by SIGTERM") is False  # not run-b's to release
    assert outcome(experiment_id, "run-b") == "live"
    assert store.release_lease(experiment_id, "run-a", "interrupted by SIGTERM") is True
    released = store.experiment_detail(experiment_id)["experiment"]
    assert (released["status"], released["message"]) == ("running", "interrupted by SIGTERM")
    assert outcome(experiment_id, "run-b") == "taken_over"


def test_a_forced_claim_forgets_the_earlier_run(database_url):
    experiment_id = new_experiment("feedc0de00000011")
    store.claim_experiment(experiment_id, "run-a")
    store.record_attempt(experiment_id, 1, 0.1, "collapsed", "flat loss", [EpochMetrics(epoch=1, loss=6.9)])
    store.set_experiment_status(experiment_id, "failed")
    assert outcome(experiment_id, "run-b", force=True) == "claimed"
    detail = store.experiment_detail(experiment_id)
    assert detail["experiment"]["status"] == "running" and detail["experiment"]["flow_run_id"] == "run-b"
    assert detail["attempts"] == [] and count("epoch_metric") == 0


def test_unstarted_submissions_can_be_withdrawn_but_claimed_ones_cannot(database_url):
    pending, claimed = new_experiment("feedc0de00000014"), new_experiment("feedc0de00000015")
    store.claim_experiment(claimed, "run-a")
    assert [e.id for e in store.unfinished_experiments()] == [pending, claimed]
    assert store.delete_if_pending(pending) is True and store.delete_if_pending(claimed) is False
    assert [e.id for e in store.list_experiments()] == [claimed]


def test_connection_errors_are_retried_within_the_budget_then_named_in_one_line(database_url, monkeypatch):
    from sqlalchemy.exc import OperationalError

    calls = []
    real = store._session

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception('database "test" is not currently accepting connections'))
        return real()

    monkeypatch.setattr(store, "_session", flaky)
    monkeypatch.setattr(store.time, "sleep", lambda seconds: None)
    assert store.list_experiments() == [] and len(calls) == 3
    calls.clear()
    monkeypatch.setenv(store.DB_RETRY_ENV, "0")
    with pytest.raises(store.DatabaseUnavailable) as failure:
        store.list_experiments()
    assert "not currently accepting connections" in str(failure.value) and "unreachable:" in str(failure.value)
    assert len(calls) == 1


def test_a_full_database_is_no_space_left_at_once_not_a_retried_outage(tmp_path, monkeypatch):
    path = tmp_path / "full.db"
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", f"sqlite:///{path}")
    try:
        experiment_id = new_experiment()
        engine = store.get_engine()
        with engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
        # SQLite's own limit: past it every write fails with SQLITE_FULL, as on a full disk
        event.listen(engine, "connect", lambda dbapi, _: dbapi.execute(f"PRAGMA max_page_count = {pages}"))
        engine.dispose()
        monkeypatch.setattr(store.time, "sleep", lambda seconds: pytest.fail("a full disk was retried as an outage"))
        findings = [Finding(code="c", severity="warning", field="f", message="m" * 10_000) for _ in range(20)]
        with pytest.raises(NoSpaceLeft) as raised:
            store.replace_findings(experiment_id, findings)
        assert str(raised.value) == (f"database sqlite:///{path}: database or disk is full; make room and run the same "
                                     "config again: it continues from the last checkpoint")
    finally:
        store.dispose_engines()


def test_a_wrong_query_is_not_retried(database_url, monkeypatch):
    monkeypatch.setattr(store.time, "sleep", lambda seconds: pytest.fail("a programming error was retried"))
    with pytest.raises(LookupError):
        store.set_experiment_status(424242, "running")


def test_the_masked_url_hides_the_password():
    assert store.masked_url("postgresql+psycopg://tf:s3cret@db:5432/x") == "postgresql+psycopg://tf:***@db:5432/x"


def test_concurrent_get_or_create_makes_one_experiment(database_url):
    barrier = threading.Barrier(6)
    results, errors = [], []

    def deliver():
        barrier.wait()
        try:
            results.append(store.get_or_create_experiment("feedc0de00000003", "race", "{}"))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({experiment.id for experiment, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert count("experiment") == 1


def test_record_attempt_stores_attempt_and_epochs(database_url):
    experiment_id = new_experiment()
    reason = "uniform scores for 3 epochs"
    attempt_id = store.record_attempt(
        experiment_id, 1, 0.1, "collapsed", reason, epochs(8.3, 8.31, 8.31), model_uri="file:///m/1", flow_run_id="r1"
    )
    (attempt,) = store.experiment_detail(experiment_id)["attempts"]
    assert attempt["id"] == attempt_id
    assert (attempt["status"], attempt["reason"], attempt["epochs_run"]) == ("collapsed", reason, 3)
    assert (attempt["model_uri"], attempt["flow_run_id"], attempt["learning_rate"]) == ("file:///m/1", "r1", 0.1)
    assert [(e["epoch"], e["loss"]) for e in attempt["epochs"]] == [(1, 8.3), (2, 8.31), (3, 8.31)]
    assert {e["steps"] for e in attempt["epochs"]} == {10}
    assert attempt["finished_at"] is not None


@pytest.mark.parametrize(
    ("bad_epochs", "error"),
    [
        pytest.param(
            epochs(1.0) + [{**epochs(1.0)[0].model_dump(), "epoch": 2, "loss": "x"}], StatementError, id="non-numeric"
        ),
        pytest.param(epochs(1.0, 0.9) + epochs(0.8), IntegrityError, id="duplicate-epoch"),
        pytest.param(epochs(1.0) + [{"epoch": 2, "loss": 1.0, "grad_norm": 2.0}], ValueError, id="unknown-field"),
    ],
)
def test_record_attempt_writes_all_or_nothing(database_url, bad_epochs, error):
    experiment_id = new_experiment()
    with pytest.raises(error):
        store.record_attempt(experiment_id, 1, 0.1, "succeeded", "", bad_epochs)
    assert (count("attempt"), count("epoch_metric")) == (0, 0)

    kept = store.record_attempt(experiment_id, 1, 0.1, "running", "", epochs(2.0))
    with pytest.raises(error):
        store.record_attempt(experiment_id, 1, 0.1, "succeeded", "", bad_epochs)
    (attempt,) = store.experiment_detail(experiment_id)["attempts"]
    assert (attempt["id"], attempt["status"], [e["loss"] for e in attempt["epochs"]]) == (kept, "running", [2.0])


def test_recording_an_attempt_again_replaces_it(database_url):
    experiment_id = new_experiment()
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first = store.record_attempt(experiment_id, 1, 0.1, "running", "", epochs(3.0), started_at=started)
    second = store.record_attempt(experiment_id, 1, 0.1, "succeeded", "ok", epochs(3.0, 2.5, 2.0), model_uri="m")
    other = store.record_attempt(experiment_id, 2, 0.01, "running", "", [])
    assert first == second != other
    attempts = store.experiment_detail(experiment_id)["attempts"]
    assert [(a["number"], a["status"], a["epochs_run"]) for a in attempts] == [
        (1, "succeeded", 3),
        (2, "running", 0),
    ]
    assert [e["loss"] for e in attempts[0]["epochs"]] == [3.0, 2.5, 2.0]
    assert attempts[0]["started_at"] == started.isoformat()
    assert attempts[1]["finished_at"] is None
    assert count("epoch_metric") == 3


def test_non_finite_floats_round_trip(database_url):
    experiment_id = new_experiment()
    diverged = EpochMetrics(
        epoch=1, loss=NAN, buyer_grad_norm_mean=INF, buyer_grad_norm_max=-INF, nonfinite_steps=4, val_loss=NAN
    )
    finite = EpochMetrics(epoch=2, loss=1e-300, val_loss=None)
    attempt_id = store.record_attempt(experiment_id, 1, 0.5, "diverged", "non-finite loss", [diverged, finite])

    table = store.EpochMetric
    with Session(store.get_engine()) as session:
        rows = session.exec(select(table).where(table.attempt_id == attempt_id).order_by(table.epoch)).all()
    assert math.isnan(rows[0].loss) and math.isnan(rows[0].val_loss)
    assert (rows[0].buyer_grad_norm_mean, rows[0].buyer_grad_norm_max) == (INF, -INF)
    assert (rows[1].loss, rows[1].val_loss) == (1e-300, None)

    detail = store.experiment_detail(experiment_id)
    epoch = detail["attempts"][0]["epochs"][0]
    assert (epoch["loss"], epoch["val_loss"], epoch["buyer_grad_norm_mean"], epoch["buyer_grad_norm_max"]) == (
        "NaN", "NaN", "Infinity", "-Infinity"
    )
    assert math.isnan(float(epoch["loss"])) and float(epoch["buyer_grad_norm_max"]) == -INF
    assert json.loads(json.dumps(detail, allow_nan=False)) == detail


def test_find_experiment_by_id_name_and_hash_prefix(database_url):
    old = new_experiment("0a11ce0000000001", "retail")
    new = new_experiment("0b0b000000000002", "retail")
    other = new_experiment("0b0c000000000003", "movielens")
    assert store.find_experiment(other).id == other
    assert store.find_experiment(str(old)).id == old
    assert store.find_experiment("retail").id == new
    assert store.find_experiment("0a11").id == old
    assert store.find_experiment("0B0C").id == other
    assert store.find_experiment("0b0b000000000002").id == new
    assert store.find_experiment("nothing-like-it") is None
    with pytest.raises(LookupError, match="0b0"):
        store.find_experiment("0b0")


def test_experiment_detail_holds_the_whole_run(database_url):
    experiment_id = new_experiment()
    store.set_experiment_status(experiment_id, "running", flow_run_id="flow-1")
    store.replace_findings(experiment_id, [Finding(code="old", severity="error", field="x", message="gone")])
    store.replace_findings(
        experiment_id,
        [
            Finding(
                code="high_lr_deep_tower",
                severity="warning",
                field="training.learning_rate",
                message="lr 0.1 with 3 dense layers",
                suggestion="0.01",
            ),
            {"code": "no_primary_id", "severity": "warning", "field": "product_features", "message": "item_id"},
        ],
    )
    collapsed = store.record_attempt(experiment_id, 1, 0.1, "collapsed", "uniform scores", epochs(8.3, 8.3, 8.3))
    succeeded = store.record_attempt(experiment_id, 2, 0.01, "succeeded", "", epochs(7.0, 6.0))
    store.record_recall(experiment_id, collapsed, {10: 0.0}, {10: 0.05}, 1682, 80000, 900, False)
    model, popularity = {"50": 0.4, "10": 0.2}, {"10": 0.05, "50": 0.2}  # keys as JSON would give them
    store.record_recall(experiment_id, succeeded, model, popularity, 1682, 80000, 900, True)
    store.set_experiment_status(experiment_id, "succeeded", message="beats popularity")

    detail = store.experiment_detail(experiment_id)
    assert set(detail) == {"experiment", "findings", "attempts", "recall", "lr_probe"}
    head = detail["experiment"]
    assert (head["status"], head["message"], head["flow_run_id"]) == ("succeeded", "beats popularity", "flow-1")
    assert head["spec"] == {"name": "movielens-deep"} and "spec_json" not in head
    assert head["updated_at"] > head["created_at"]
    assert [(f["code"], f["suggestion"]) for f in detail["findings"]] == [
        ("high_lr_deep_tower", "0.01"),
        ("no_primary_id", None),
    ]
    assert [(a["number"], a["status"], len(a["epochs"])) for a in detail["attempts"]] == [
        (1, "collapsed", 3),
        (2, "succeeded", 2),
    ]
    assert [(r["k"], r["value"], r["baseline"], r["attempt_id"], r["exclude_seen"]) for r in detail["recall"]] == [
        (10, 0.2, 0.05, succeeded, True),
        (50, 0.4, 0.2, succeeded, True),
    ]
    counts = {(r["n_candidates"], r["n_candidate_rows_before_dedup"], r["n_queries"]) for r in detail["recall"]}
    assert counts == {(1682, 80000, 900)}


def test_reset_experiment_keeps_only_the_row(database_url):
    experiment_id = new_experiment()
    store.set_experiment_status(experiment_id, "failed", message="all attempts collapsed", flow_run_id="f")
    store.replace_findings(experiment_id, [Finding(code="c", severity="warning", field="f", message="m")])
    attempt_id = store.record_attempt(experiment_id, 1, 0.1, "succeeded", "", epochs(1.0, 0.5))
    store.record_recall(experiment_id, attempt_id, {5: 0.1}, {5: 0.01}, 10, 12, 3, False)
    keep = new_experiment("ffff000000000009", "other")
    store.record_attempt(keep, 1, 0.1, "succeeded", "", epochs(1.0))

    experiment = store.reset_experiment(experiment_id)
    assert (experiment.id, experiment.status, experiment.message, experiment.flow_run_id) == (
        experiment_id,
        "pending",
        None,
        None,
    )
    detail = store.experiment_detail(experiment_id)
    assert (detail["findings"], detail["attempts"], detail["recall"]) == ([], [], [])
    assert (count("experiment"), count("attempt"), count("epoch_metric"), count("recall_result")) == (2, 1, 1, 0)
    assert store.get_or_create_experiment("a1b2c3d4e5f60718", "again", "{}")[0].id == experiment_id


def test_bad_values_are_named(database_url):
    experiment_id = new_experiment()
    with pytest.raises(ValueError, match="'done'"):
        store.set_experiment_status(experiment_id, "done")
    with pytest.raises(ValueError, match="'exploded'"):
        store.record_attempt(experiment_id, 1, 0.1, "exploded", "", [])
    with pytest.raises(ValueError, match="'fatal'"):
        store.replace_findings(experiment_id, [Finding(code="c", severity="fatal", field="f", message="m")])
    with pytest.raises(ValueError, match="missing fields \\['message'\\]"):
        store.replace_findings(experiment_id, [{"code": "c", "severity": "error", "field": "f"}])
    attempt_id = store.record_attempt(experiment_id, 1, 0.1, "succeeded", "", [])
    with pytest.raises(ValueError, match="\\[5, 10\\].*\\[5\\]"):
        store.record_recall(experiment_id, attempt_id, {5: 0.1, 10: 0.2}, {5: 0.1}, 1, 1, 1, False)
    with pytest.raises(LookupError, match="no experiment with id 999"):
        store.experiment_detail(999)
    assert store.find_experiment(experiment_id).status == "pending"


def test_status_updates_keep_the_flow_run_and_move_updated_at(database_url):
    experiment_id = new_experiment()
    created = store.find_experiment(experiment_id).updated_at
    store.set_experiment_status(experiment_id, "running", flow_run_id="flow-9")
    experiment = store.set_experiment_status(experiment_id, "awaiting_approval", message="2 warnings")
    stored = store.find_experiment(experiment_id)
    assert (stored.status, stored.message, stored.flow_run_id) == ("awaiting_approval", "2 warnings", "flow-9")
    assert stored.updated_at == experiment.updated_at > created
    assert stored.updated_at.tzinfo is not None and stored.updated_at - created < timedelta(minutes=1)


def test_ease_recall_is_stored_beside_popularity(database_url):
    experiment_id = new_experiment()
    attempt_id = store.record_attempt(experiment_id, 1, 0.1, "succeeded", "", epochs(1.0, 0.5))
    store.record_recall(experiment_id, attempt_id, {5: 0.1, 10: 0.2}, {5: 0.05, 10: 0.1}, 60, 60, 30, False,
                        ease={5: 0.12, 10: 0.18})
    recall = store.experiment_view(experiment_id).recall
    assert [(r.k, r.value, r.baseline, r.ease) for r in recall] == [(5, 0.1, 0.05, 0.12), (10, 0.2, 0.1, 0.18)]


def test_a_database_from_before_the_ease_column_gets_it(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store.get_engine(url)
    store.dispose_engines()
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.execute('ALTER TABLE recall_result DROP COLUMN "ease"')
    columns = [column["name"] for column in inspect(store.get_engine(url)).get_columns("recall_result")]
    assert "ease" in columns
    store.dispose_engines()
