"""Database fixtures: `database_url` runs a test on SQLite and on PostgreSQL.

PostgreSQL comes from TOWERFLOW_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test);
each test session works in a fresh schema that is dropped at the end. When the server does not
answer, the PostgreSQL tests fail, saying how to start it; TOWERFLOW_SKIP_POSTGRES=1 skips them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tasks import store

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[tuple[psycopg.Connection, str]]:
    """An autocommit connection to the test server and the name of this session's fresh schema."""
    if os.environ.get("TOWERFLOW_SKIP_POSTGRES") == "1":
        pytest.skip("TOWERFLOW_SKIP_POSTGRES=1: PostgreSQL tests skipped on request")
    url = os.environ.get("TOWERFLOW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        connection = psycopg.connect(url.replace("+psycopg", ""), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        message = (
            f"PostgreSQL at {url} (TOWERFLOW_TEST_POSTGRES_URL) does not answer: {error}\n"
            f"Start it with: {START_POSTGRES}\n"
            "or set TOWERFLOW_SKIP_POSTGRES=1 to skip the PostgreSQL tests on purpose."
        )
        raise pytest.fail.Exception(message, pytrace=False) from None
    schema = f"towerflow_test_{secrets.token_hex(4)}"
    connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield connection, schema
    finally:
        store.dispose_engines()
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        connection.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_admin: tuple[psycopg.Connection, str]) -> str:
    """The test server's URL with this session's schema as the search path."""
    _, schema = postgres_admin
    url = make_url(os.environ.get("TOWERFLOW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> Iterator[str]:
    """An empty database, set as TOWERFLOW_DATABASE_URL: a SQLite file, then the PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'towerflow.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        _empty_schema(*request.getfixturevalue("postgres_admin"))
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", url)
    yield url
    store.dispose_engines()


def _empty_schema(connection: psycopg.Connection, schema: str) -> None:
    rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
    tables = [table for (table,) in rows]
    if tables:
        names = ", ".join(f'"{schema}"."{table}"' for table in tables)
        connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
