"""Persistence: the SQLModel tables of an experiment and the repository functions over them.

A `sweep` row groups the experiments of one grid (by config hash); its members' rows are the experiments'
own, so a sweep adds nothing to how an experiment is run or stored.

`TOWERFLOW_DATABASE_URL` picks the database; the default is a SQLite file under `TOWERFLOW_HOME`
(default ~/.towerflow). `postgresql://` URLs run on psycopg 3. Tables are created on first use.
Every function opens its own short transaction, so the orchestrator and its workers (separate
processes) can write to the same database. Functions take plain values (dicts or pydantic models
for findings and epochs), so callers need no trainer import.

Ownership is a lease: a run that claims an experiment records its flow run id, its process
(`owner`, host:pid) and `lease_expires_at`, renewed while it works; another run may take the
experiment over only when that lease has expired or the caller knows the owner is gone.

Writes and reads retry on connection errors (a failover, a restart) with backoff for
`TOWERFLOW_DB_RETRY_S` seconds (default 120), then raise `DatabaseUnavailable` naming the URL
with its password masked.

Non-finite floats (a diverged loss) round-trip as nan/inf on both databases. SQLite stores NaN as
NULL, so on SQLite a NaN is written as the text 'NaN' (a REAL column keeps a non-numeric text as is)
and read back as a float; PostgreSQL double precision holds NaN and ±Infinity natively.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import DateTime, Double, UniqueConstraint, delete, event, inspect, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from tasks.settings import towerflow_home
from tasks.views import ExperimentView, PointView, SweepHead, SweepView
from trainer.errors import ExpectedError, NoSpaceLeft

EXPERIMENT_STATUSES = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "halted",
    "awaiting_approval",
    "stopped",
)
ACTIVE_STATUSES = ("pending", "running", "awaiting_approval")  # someone is (or should be) working on it
ATTEMPT_STATUSES = ("running", "succeeded", "collapsed", "diverged", "failed")
SEVERITIES = ("error", "warning")
SQLITE_BUSY_TIMEOUT_S = 30.0
DB_RETRY_ENV = "TOWERFLOW_DB_RETRY_S"
DATABASE_URL_ENV = "TOWERFLOW_DATABASE_URL"
BACKENDS = ("sqlite", "postgresql")
DEFAULT_DB_RETRY_S = 120.0
CONNECT_TIMEOUT_S = 5

log = logging.getLogger("towerflow.store")


class DatabaseUnavailable(ExpectedError):
    """The database refused connections for the whole retry budget."""


class DatabaseUnusable(ExpectedError):
    """A database URL towerflow cannot use (not a URL, another kind of database) or a database it cannot
    read (a file that is not SQLite); the message names it."""

    exit_code = 2


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- column types ----------------------------------------------------------------------------


class FloatValue(TypeDecorator[float]):
    """A double that keeps NaN on SQLite too (written there as the text 'NaN')."""

    impl = Double
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> float | str | None:
        if value is None:
            return None
        number = float(value)  # a non-numeric value fails here, inside the caller's transaction
        if math.isnan(number) and dialect.name == "sqlite":
            return "NaN"
        return number

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":  # skip SQLite's own float processor: it would turn 'NaN' back into NULL
            return lambda value: self.process_bind_param(value, dialect)
        return super().bind_processor(dialect)

    def process_result_value(self, value: Any, dialect: Any) -> float | None:
        return None if value is None else float(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp (SQLite drops the zone; it is put back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None or value.tzinfo is None:  # naive means UTC
            return value
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# --- tables ----------------------------------------------------------------------------------


class Experiment(SQLModel, table=True):
    __tablename__ = "experiment"

    id: int | None = Field(default=None, primary_key=True)
    config_hash: str = Field(unique=True, max_length=64)
    name: str = Field(index=True)
    spec_json: str
    status: str = "pending"
    message: str | None = None
    flow_run_id: str | None = None
    owner: str | None = None  # host:pid of the process that holds the lease
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=_utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=_utcnow, sa_type=UTCDateTime)

    def lease_live(self, now: datetime | None = None) -> bool:
        """True while the owner's lease has not expired."""
        return self.lease_expires_at is not None and self.lease_expires_at > (now or _utcnow())


class Finding(SQLModel, table=True):
    __tablename__ = "finding"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", index=True)
    code: str
    severity: str
    field: str
    message: str
    suggestion: str | None = None


class Attempt(SQLModel, table=True):
    __tablename__ = "attempt"
    __table_args__ = (UniqueConstraint("experiment_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", index=True)
    number: int
    learning_rate: float = Field(sa_type=FloatValue)
    status: str
    reason: str = ""
    epochs_run: int = 0
    model_uri: str | None = None
    flow_run_id: str | None = None
    started_at: datetime = Field(default_factory=_utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EpochMetric(SQLModel, table=True):
    __tablename__ = "epoch_metric"
    __table_args__ = (UniqueConstraint("attempt_id", "epoch"),)

    id: int | None = Field(default=None, primary_key=True)
    attempt_id: int = Field(foreign_key="attempt.id", ondelete="CASCADE")
    epoch: int
    loss: float = Field(sa_type=FloatValue)
    steps: int | None = None
    examples: int | None = None
    buyer_grad_norm_mean: float = Field(sa_type=FloatValue)
    buyer_grad_norm_max: float = Field(sa_type=FloatValue)
    product_grad_norm_mean: float = Field(sa_type=FloatValue)
    product_grad_norm_max: float = Field(sa_type=FloatValue)
    nonfinite_steps: int = 0
    seconds: float = Field(sa_type=FloatValue)
    learning_rate: float = Field(sa_type=FloatValue)
    val_loss: float | None = Field(default=None, sa_type=FloatValue)
    uniform_gap: float | None = Field(default=None, sa_type=FloatValue)  # ~0: every candidate scored alike
    uniform_loss: float | None = Field(default=None, sa_type=FloatValue)  # log(batch size)


class RecallResult(SQLModel, table=True):
    __tablename__ = "recall_result"
    __table_args__ = (UniqueConstraint("experiment_id", "k"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE")
    attempt_id: int = Field(foreign_key="attempt.id", ondelete="CASCADE", index=True)
    k: int
    value: float = Field(sa_type=FloatValue)
    baseline: float = Field(sa_type=FloatValue)  # popularity recall@k on the same queries
    ease: float | None = Field(default=None, sa_type=FloatValue)  # EASE recall@k, when measured
    n_candidates: int
    n_candidate_rows_before_dedup: int
    n_queries: int
    exclude_seen: bool


class LrProbe(SQLModel, table=True):
    """The learning-rate range test run before an experiment's first attempt (`validation.lr_probe`): one per experiment."""

    __tablename__ = "lr_probe"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", unique=True)
    mode: str  # warn | pick
    curve_json: str  # trainer.probe_curve.ProbeCurve: the rates, what each measured, the reading
    created_at: datetime = Field(default_factory=_utcnow, sa_type=UTCDateTime)


class Sweep(SQLModel, table=True):
    """A grid of experiments run or submitted together; members are experiments by config hash, in grid order."""

    __tablename__ = "sweep"

    id: int | None = Field(default=None, primary_key=True)
    sweep_hash: str = Field(unique=True, max_length=64)
    name: str = Field(index=True)
    grid_json: str  # {dotted spec key: [values]}
    points_json: str  # [{name, config_hash, values}] per member
    created_at: datetime = Field(default_factory=_utcnow, sa_type=UTCDateTime)


# --- engine ----------------------------------------------------------------------------------

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def database_url() -> str:
    """The database URL: `TOWERFLOW_DATABASE_URL`, else a SQLite file under `TOWERFLOW_HOME`."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return normalize_url(url)
    return f"sqlite:///{towerflow_home() / 'towerflow.db'}"


def normalize_url(url: str) -> str:
    """Run plain `postgresql://` (and `postgres://`) URLs on psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def get_engine(url: str | None = None) -> Engine:
    """The engine for `url` (default: `database_url()`), created with its tables on first use."""
    url = normalize_url(url) if url else database_url()
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create_engine(url)
    return engine


def dispose_engines() -> None:
    """Close every cached engine's connections (tests; a forked worker)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _create_engine(url: str) -> Engine:
    backend = _backend(url)
    if backend == "sqlite":
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        try:
            SQLModel.metadata.create_all(engine)
        except DBAPIError as error:
            if _is_connection_error(error):
                raise
            # Another process created the tables between the existence check and CREATE TABLE.
            SQLModel.metadata.create_all(engine)
    except DBAPIError as error:
        if _is_connection_error(error):
            raise
        raise DatabaseUnusable(f"database {masked_url(url)} cannot be used: {_first_line(error)}") from None
    _add_missing_columns(engine)
    return engine


def _backend(url: str) -> str:
    """The kind of database `url` names; DatabaseUnusable unless it is one towerflow stores in."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        backend = None
    if backend not in BACKENDS:
        kinds = "SQLite (sqlite:///PATH) or PostgreSQL (postgresql://USER@HOST:PORT/DATABASE)"
        said = (f"towerflow stores in {kinds}, not {backend}" if backend
                else f"not a database URL; towerflow stores in {kinds}")
        raise DatabaseUnusable(f"{DATABASE_URL_ENV}={_without_password(url)}: {said}")
    return backend


def _without_password(url: str) -> str:
    """`url` with any password hidden, even where it does not parse as a URL."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _first_line(error: DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__


def _add_missing_columns(engine: Engine) -> None:
    """Bring a database made by an older towerflow up to date: add the nullable columns it lacks.

    create_all makes missing tables only; columns added since (all nullable) would otherwise make
    every read of an existing database fail.
    """
    inspector = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(
                    f"{engine.url.render_as_string()}: table {table.name} lacks the required column "
                    f"{column.name}; this database was made by an incompatible towerflow"
                )
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as connection:
                connection.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begin in _on_begin below
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads and then writes fails
        # at once with "database is locked" when another process wrote in between.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def _session() -> Iterator[Session]:
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def masked_url(url: str | None = None) -> str:
    """The database URL with its password hidden, for messages."""
    return make_url(url or database_url()).render_as_string(hide_password=True)


def _is_connection_error(error: Exception) -> bool:
    """A refused, dropped or locked connection (worth retrying), not a wrong query."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    text = str(error.orig).lower()
    return any(word in text for word in ("connect", "accepting", "terminat", "closed", "locked", "unable to open",
                                         "timeout", "timed out", "shutting down", "starting up"))


def _is_disk_full(error: DBAPIError) -> bool:
    """SQLite's SQLITE_FULL, PostgreSQL's disk_full (53100) or a write that found no space."""
    text = str(error.orig).lower()
    return "database or disk is full" in text or "no space left on device" in text or (
        getattr(error.orig, "sqlstate", None) == "53100")


_retry_budget: contextvars.ContextVar[float | None] = contextvars.ContextVar("towerflow_db_retry_s", default=None)


def retry_budget_s() -> float:
    """Seconds a store call keeps retrying a connection error (TOWERFLOW_DB_RETRY_S, default 120)."""
    override = _retry_budget.get()
    return override if override is not None else float(os.environ.get(DB_RETRY_ENV, DEFAULT_DB_RETRY_S))


@contextmanager
def retrying_for(seconds: float) -> Iterator[None]:
    """Use another retry budget inside the block (0: fail on the first connection error)."""
    token = _retry_budget.set(seconds)
    try:
        yield
    finally:
        _retry_budget.reset(token)


def _retrying(function: Callable) -> Callable:
    """Retry `function` on connection errors with backoff (0.5 s doubling to 10 s) within the budget."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + retry_budget_s()
        delay = 0.5
        while True:
            try:
                return function(*args, **kwargs)
            except DBAPIError as error:
                if _is_disk_full(error):
                    raise NoSpaceLeft.writing(f"database {masked_url()}", _first_line(error)) from None
                if not _is_connection_error(error):
                    raise
                left = deadline - time.monotonic()
                reason = _first_line(error)
                if left <= 0:
                    budget = retry_budget_s()
                    waited = f"unreachable for {budget:.0f}s ({DB_RETRY_ENV})" if budget else "unreachable"
                    raise DatabaseUnavailable(f"database {masked_url()} {waited}: {reason}") from None
                log.warning("database %s: %s; retrying %s in %.1fs", masked_url(), reason, function.__name__, delay)
                time.sleep(min(delay, left))
                delay = min(delay * 2, 10.0)

    return wrapper


def check_database() -> None:
    """Fail fast (one connection, no retries) when the database cannot be reached or created."""
    with retrying_for(0):
        _ping()


@_retrying
def _ping() -> None:
    with _session() as session:
        session.exec(select(Experiment.id).limit(1)).first()


# --- repository --------------------------------------------------------------------------------

Row = TypeVar("Row", bound=SQLModel)
_NEWEST_FIRST = (col(Experiment.created_at).desc(), col(Experiment.id).desc())


@_retrying
def get_or_create_experiment(config_hash: str, name: str, spec_json: str) -> tuple[Experiment, bool]:
    """The experiment keyed by `config_hash`, created if new; `created` says which.

    Safe against concurrent callers (a re-delivered event, two workers): one row results.
    """
    with _session() as session:
        found = _experiment_by_hash(session, config_hash)
        if found is not None:
            return found, False
        experiment = Experiment(config_hash=config_hash, name=name, spec_json=spec_json)
        session.add(experiment)
        try:
            session.commit()
        except IntegrityError:  # another caller inserted the same hash after our read
            session.rollback()
            found = _experiment_by_hash(session, config_hash)
            if found is None:
                raise
            return found, False
        return experiment, True


@_retrying
def set_experiment_status(
    experiment_id: int, status: str, message: str | None = None, flow_run_id: str | None = None
) -> Experiment:
    """Set the status and message; `flow_run_id` is kept unless a new one is given; an ended status
    releases the lease."""
    _check_choice("experiment status", status, EXPERIMENT_STATUSES)
    with _session() as session:
        experiment = _get(session, Experiment, experiment_id)
        experiment.status = status
        experiment.message = message
        if flow_run_id is not None:
            experiment.flow_run_id = flow_run_id
        if status not in ACTIVE_STATUSES:  # it ended: nobody holds it any more
            experiment.lease_expires_at = None
        experiment.updated_at = _utcnow()
        session.commit()
        return experiment


@_retrying
def replace_findings(experiment_id: int, findings: Iterable[Mapping[str, Any] | BaseModel]) -> None:
    """Replace the experiment's findings with `findings` (Finding-like models or dicts)."""
    rows = [_row(Finding, finding, experiment_id=experiment_id) for finding in findings]
    for row in rows:
        _check_choice("finding severity", row.severity, SEVERITIES)
    with _session() as session:
        _get(session, Experiment, experiment_id)
        session.exec(delete(Finding).where(Finding.experiment_id == experiment_id))
        session.add_all(rows)
        session.commit()


@_retrying
def record_lr_probe(experiment_id: int, mode: str, curve: BaseModel) -> None:
    """Store (or replace) the experiment's learning-rate probe: its mode and its curve (a ProbeCurve)."""
    with _session() as session:
        _get(session, Experiment, experiment_id)
        session.exec(delete(LrProbe).where(LrProbe.experiment_id == experiment_id))
        session.add(LrProbe(experiment_id=experiment_id, mode=mode, curve_json=curve.model_dump_json()))
        session.commit()


@_retrying
def record_attempt(
    experiment_id: int,
    number: int,
    learning_rate: float,
    status: str,
    reason: str,
    epochs: Iterable[Mapping[str, Any] | BaseModel],
    model_uri: str | None = None,
    flow_run_id: str | None = None,
    *,
    epochs_run: int | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> int:
    """Write attempt `number` and all its epoch rows in one transaction; return the attempt id.

    Recording the same number again replaces the attempt's values and epochs (same id).
    `epochs_run` defaults to the number of epoch rows; `started_at` to the first recording;
    `finished_at` to now unless the status is `running`.
    """
    _check_choice("attempt status", status, ATTEMPT_STATUSES)
    epoch_data = [_plain(epoch) for epoch in epochs]
    values = {
        "learning_rate": learning_rate,
        "status": status,
        "reason": reason,
        "epochs_run": len(epoch_data) if epochs_run is None else epochs_run,
        "model_uri": model_uri,
        "flow_run_id": flow_run_id,
        "finished_at": finished_at or (None if status == "running" else _utcnow()),
    }
    with _session() as session:
        _get(session, Experiment, experiment_id)
        attempt = session.exec(
            select(Attempt).where(Attempt.experiment_id == experiment_id, Attempt.number == number)
        ).first()
        if attempt is None:
            attempt = Attempt(experiment_id=experiment_id, number=number, **values)
            session.add(attempt)
        else:
            attempt.sqlmodel_update(values)
            session.exec(delete(EpochMetric).where(EpochMetric.attempt_id == attempt.id))
        if started_at is not None:
            attempt.started_at = started_at
        session.flush()  # assigns attempt.id
        session.add_all(_row(EpochMetric, epoch, attempt_id=attempt.id) for epoch in epoch_data)
        session.commit()
        assert attempt.id is not None
        return attempt.id


@_retrying
def record_recall(
    experiment_id: int,
    attempt_id: int,
    values: Mapping[int, float],
    baseline: Mapping[int, float],
    n_candidates: int,
    n_candidate_rows_before_dedup: int,
    n_queries: int,
    exclude_seen: bool,
    ease: Mapping[int, float] | None = None,
) -> None:
    """Replace the experiment's recall@k rows (model `values`, popularity `baseline` and, when measured,
    `ease` per k)."""
    model = {int(k): value for k, value in values.items()}
    popularity = {int(k): value for k, value in baseline.items()}
    if model.keys() != popularity.keys():
        raise ValueError(
            f"recall: model ks {sorted(model)} and baseline ks {sorted(popularity)} differ"
        )
    with _session() as session:
        attempt = _get(session, Attempt, attempt_id)
        if attempt.experiment_id != experiment_id:
            raise ValueError(
                f"attempt {attempt_id} belongs to experiment {attempt.experiment_id}, not {experiment_id}"
            )
        session.exec(delete(RecallResult).where(RecallResult.experiment_id == experiment_id))
        session.add_all(
            RecallResult(
                experiment_id=experiment_id,
                attempt_id=attempt_id,
                k=k,
                value=model[k],
                baseline=popularity[k],
                ease=None if ease is None else ease[k],
                n_candidates=n_candidates,
                n_candidate_rows_before_dedup=n_candidate_rows_before_dedup,
                n_queries=n_queries,
                exclude_seen=exclude_seen,
            )
            for k in sorted(model)
        )
        session.commit()


@dataclass(frozen=True)
class Claim:
    """What `claim_experiment` found and did.

    outcome: `claimed` (it was pending, or this flow run had it already), `taken_over` (its owner's
    lease had expired or the owner is gone: `previous` says who it was), `finished` (it already
    ended: the stored result stands) or `live` (another run holds a live lease: `previous`).
    """

    outcome: str
    experiment: Experiment
    previous: Experiment | None = None

    @property
    def won(self) -> bool:
        return self.outcome in ("claimed", "taken_over")


def _lease_values(flow_run_id: str, owner: str, lease_s: float) -> dict[str, Any]:
    now = _utcnow()
    return {"flow_run_id": flow_run_id, "owner": owner, "lease_expires_at": now + timedelta(seconds=lease_s),
            "updated_at": now}


@_retrying
def claim_experiment(
    experiment_id: int,
    flow_run_id: str,
    owner: str = "",
    lease_s: float = 120.0,
    *,
    force: bool = False,
    owner_gone: Callable[[Experiment], bool] = lambda experiment: False,
) -> Claim:
    """Make `flow_run_id` (running in process `owner`) the experiment's owner for `lease_s` seconds.

    One run wins: a re-delivered `config.submitted` event finds the experiment claimed. A pending
    experiment, or one whose owner's lease expired or whose owner `owner_gone` says is dead (a
    killed process, a Crashed flow run), is taken. A live owner is never doubled, not even with
    `force`; `force` reruns a finished experiment from scratch (its stored attempts are deleted).
    The change is a compare-and-set on (status, flow run id), so two takers cannot both win.
    """
    with _session() as session:
        current = _get(session, Experiment, experiment_id)
    status, holder = current.status, current.flow_run_id
    outcome = "claimed"
    if holder == flow_run_id:
        pass  # the same flow run again (a retried flow)
    elif status in ACTIVE_STATUSES and holder is not None:
        if current.lease_live() and not owner_gone(current):
            return Claim("live", current, current)
        outcome = "taken_over"
    elif status not in ACTIVE_STATUSES:
        if not force:
            return Claim("finished", current)
        _delete_results(experiment_id)
    with _session() as session:
        won = session.exec(
            update(Experiment)
            .where(col(Experiment.id) == experiment_id, col(Experiment.status) == status)
            .where(col(Experiment.flow_run_id) == holder if holder else col(Experiment.flow_run_id).is_(None))
            .values(status="running", message=None, **_lease_values(flow_run_id, owner, lease_s))
        ).rowcount == 1
        session.commit()
        claimed = _get(session, Experiment, experiment_id)
    if not won:  # another run changed it between the read and the update
        return Claim("live" if claimed.status in ACTIVE_STATUSES else "finished", claimed, claimed)
    return Claim(outcome, claimed, current if outcome == "taken_over" else None)


@_retrying
def renew_lease(experiment_id: int, flow_run_id: str, owner: str, lease_s: float) -> bool:
    """Extend the lease of the owning run; False when another run has taken the experiment over."""
    with _session() as session:
        renewed = session.exec(
            update(Experiment)
            .where(col(Experiment.id) == experiment_id, col(Experiment.flow_run_id) == flow_run_id)
            .where(col(Experiment.status).in_(ACTIVE_STATUSES))
            .values(**_lease_values(flow_run_id, owner, lease_s))
        ).rowcount == 1
        session.commit()
        return renewed


@_retrying
def release_lease(experiment_id: int, flow_run_id: str, message: str) -> bool:
    """End the owning run's lease now, saying why in `message` (the run was interrupted): the
    experiment stays unfinished, for the next run to continue at once. False when it was not this run's."""
    with _session() as session:
        released = session.exec(
            update(Experiment)
            .where(col(Experiment.id) == experiment_id, col(Experiment.flow_run_id) == flow_run_id)
            .where(col(Experiment.status).in_(ACTIVE_STATUSES))
            .values(lease_expires_at=_utcnow(), message=message, updated_at=_utcnow())
        ).rowcount == 1
        session.commit()
        return released


@_retrying
def unfinished_experiments() -> list[Experiment]:
    """Experiments someone should be working on (pending, running, awaiting approval), oldest first."""
    with _session() as session:
        query = select(Experiment).where(col(Experiment.status).in_(ACTIVE_STATUSES)).order_by(Experiment.id)
        return list(session.exec(query).all())


@_retrying
def delete_if_pending(experiment_id: int) -> bool:
    """Delete an experiment nobody has started (a submission whose event was never delivered)."""
    with _session() as session:
        deleted = session.exec(
            delete(Experiment).where(col(Experiment.id) == experiment_id, col(Experiment.status) == "pending",
                                     col(Experiment.flow_run_id).is_(None))
        ).rowcount == 1
        session.commit()
        return deleted


def _delete_results(experiment_id: int) -> None:
    with _session() as session:
        for table in (RecallResult, Finding, Attempt, LrProbe):  # epoch rows go with their attempt (cascade)
            session.exec(delete(table).where(table.experiment_id == experiment_id))
        session.commit()


@_retrying
def reset_experiment(experiment_id: int) -> Experiment:
    """Forget a run: delete findings, attempts, epochs and recall; keep the row, pending and unowned."""
    _delete_results(experiment_id)
    with _session() as session:
        experiment = _get(session, Experiment, experiment_id)
        experiment.status = "pending"
        experiment.message = None
        experiment.flow_run_id = None
        experiment.owner = None
        experiment.lease_expires_at = None
        experiment.updated_at = _utcnow()
        session.commit()
        return experiment


@_retrying
def find_experiment(name_or_id: str | int) -> Experiment | None:
    """Look up by id (all digits), else the latest experiment with that name, else a hash prefix.

    Raises LookupError when a hash prefix matches several experiments.
    """
    return _find(Experiment, Experiment.config_hash, name_or_id)


def _find(table: type[Row], hash_column: Any, name_or_id: str | int) -> Row | None:
    """A row of `table` by id, else the newest with that name, else by a prefix of `hash_column`."""
    key = str(name_or_id).strip()
    with _session() as session:
        if key.isdigit():
            found = session.get(table, int(key))
            if found is not None:
                return found
        newest = (col(table.created_at).desc(), col(table.id).desc())
        found = session.exec(select(table).where(table.name == key).order_by(*newest)).first()
        if found is not None:
            return found
        matches = session.exec(select(table).where(col(hash_column).startswith(key.lower())).limit(2)).all()
    if len(matches) > 1:
        raise LookupError(f"hash prefix {key!r} matches several {table.__tablename__}s; give more characters")
    return matches[0] if matches else None


@_retrying
def list_experiments() -> list[Experiment]:
    """Every experiment, newest first."""
    with _session() as session:
        return list(session.exec(select(Experiment).order_by(*_NEWEST_FIRST)).all())


@_retrying
def experiment_detail(experiment_id: int) -> dict[str, Any]:
    """Everything stored about one experiment as plain JSON-ready values.

    Keys: experiment (with `spec` parsed from spec_json), findings, attempts (by number, each with
    its `epochs`), recall (by k), lr_probe (its mode and curve, or None). Timestamps are ISO 8601 strings; non-finite floats are the
    strings 'NaN', 'Infinity', '-Infinity' (so `json.dumps(..., allow_nan=False)` works and
    `float()` reads them back).
    """
    with _session() as session:
        experiment = _get(session, Experiment, experiment_id)
        findings = session.exec(
            select(Finding).where(Finding.experiment_id == experiment_id).order_by(Finding.id)
        ).all()
        attempts = session.exec(
            select(Attempt).where(Attempt.experiment_id == experiment_id).order_by(Attempt.number)
        ).all()
        epochs = session.exec(
            select(EpochMetric)
            .join(Attempt)
            .where(Attempt.experiment_id == experiment_id)
            .order_by(EpochMetric.epoch)
        ).all()
        recall = session.exec(
            select(RecallResult)
            .where(RecallResult.experiment_id == experiment_id)
            .order_by(RecallResult.k)
        ).all()
        probe = session.exec(select(LrProbe).where(LrProbe.experiment_id == experiment_id)).first()
    head = as_dict(experiment)
    head["spec"] = json.loads(head.pop("spec_json"))
    epochs_by_attempt: dict[int, list[dict[str, Any]]] = {}
    for epoch in epochs:
        epochs_by_attempt.setdefault(epoch.attempt_id, []).append(as_dict(epoch))
    return {
        "experiment": head,
        "findings": [as_dict(finding) for finding in findings],
        "attempts": [
            {**as_dict(attempt), "epochs": epochs_by_attempt.get(attempt.id or 0, [])} for attempt in attempts
        ],
        "recall": [as_dict(row) for row in recall],
        "lr_probe": None if probe is None else {
            "mode": probe.mode, **json.loads(probe.curve_json, parse_constant=str)  # NaN stays the string 'NaN'
        },
    }


def as_dict(row: SQLModel) -> dict[str, Any]:
    """A row's columns as JSON-ready values (see `experiment_detail`)."""
    return {name: _json_value(getattr(row, name)) for name in type(row).model_fields}


def experiment_view(experiment_id: int) -> ExperimentView:
    """`experiment_detail(experiment_id)` as the typed view every renderer reads (`tasks.views`)."""
    return ExperimentView.of(experiment_detail(experiment_id))


@_retrying
def record_sweep(sweep_hash: str, name: str, grid: Mapping[str, list[Any]], points: list[Mapping[str, Any]]) -> Sweep:
    """The sweep keyed by `sweep_hash`, created if new (a rerun of the same sweep finds its row)."""
    with _session() as session:
        found = session.exec(select(Sweep).where(Sweep.sweep_hash == sweep_hash)).first()
        if found is not None:
            return found
        sweep = Sweep(sweep_hash=sweep_hash, name=name, grid_json=json.dumps(dict(grid)),
                      points_json=json.dumps(list(points)))
        session.add(sweep)
        try:
            session.commit()
        except IntegrityError:  # another caller recorded the same sweep after our read
            session.rollback()
            return session.exec(select(Sweep).where(Sweep.sweep_hash == sweep_hash)).one()
        return sweep


@_retrying
def find_sweep(name_or_id: str | int) -> Sweep | None:
    """Look up a sweep by id, else the latest with that name, else a hash prefix (LookupError if several)."""
    return _find(Sweep, Sweep.sweep_hash, name_or_id)


def sweep_view(sweep_id: int) -> SweepView:
    """The sweep with each member's experiment view (None for a member no run has started)."""
    sweep = _sweep_row(sweep_id)
    head = SweepHead(id=sweep_id, sweep_hash=sweep.sweep_hash, name=sweep.name, grid=json.loads(sweep.grid_json),
                     points=json.loads(sweep.points_json), created_at=sweep.created_at)
    points = []
    for point in head.points:
        experiment = experiment_by_hash(point.config_hash)
        points.append(PointView(point=point, experiment=None if experiment is None else experiment_view(experiment.id)))
    return SweepView(sweep=head, points=points)


@_retrying
def _sweep_row(sweep_id: int) -> Sweep:
    with _session() as session:
        return _get(session, Sweep, sweep_id)


@_retrying
def experiment_by_hash(config_hash: str) -> Experiment | None:
    """The experiment of the config whose content hash is `config_hash`, if one is stored."""
    with _session() as session:
        return _experiment_by_hash(session, config_hash)


# --- helpers -----------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _experiment_by_hash(session: Session, config_hash: str) -> Experiment | None:
    return session.exec(select(Experiment).where(Experiment.config_hash == config_hash)).first()


def _get(session: Session, table: type[Row], row_id: int) -> Row:
    row = session.get(table, row_id)
    if row is None:
        raise LookupError(f"no {table.__tablename__} with id {row_id}")
    return row


def _plain(item: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    return item.model_dump() if isinstance(item, BaseModel) else dict(item)


def _row(table: type[Row], item: Mapping[str, Any] | BaseModel, **fixed: Any) -> Row:
    """A `table` row from a dict or model; unknown or missing fields are named in a ValueError."""
    data = _plain(item)
    fields = table.model_fields
    allowed = set(fields) - set(fixed) - {"id"}
    unknown = sorted(set(data) - allowed)
    missing = sorted(name for name in allowed if fields[name].is_required() and name not in data)
    if unknown or missing:
        raise ValueError(
            f"{table.__tablename__} row: unknown fields {unknown}, missing fields {missing}"
        )
    return table(**data, **fixed)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(choices)}")
