"""Shared fixtures. Tests never touch the network; every model file is built by the test."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A path a malicious payload would create if it ever ran. Tests assert it does not exist."""
    path = tmp_path / "CANARY_PAYLOAD_RAN"
    yield path
    assert not path.exists(), "a payload ran: the canary file was created"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the default database and any config out of the real home directory."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.delenv("CONSENTRY_DB", raising=False)
    monkeypatch.delenv("CONSENTRY_REGISTRY", raising=False)
    monkeypatch.delenv("CONSENTRY_REGISTRY_KEY", raising=False)
    monkeypatch.delenv("CONSENTRY_IMAGE_BASE_URL", raising=False)


# --- store backends ---------------------------------------------------------------------------
# Store tests take `store_target` (or `store`) and run once on SQLite and once on PostgreSQL.
# PostgreSQL comes from CONSENTRY_TEST_POSTGRES_URL (.ci/run starts a throwaway server and sets
# it); each test gets its own schema, chosen through the URL's search_path, dropped afterwards.

POSTGRES_URL_ENV = "CONSENTRY_TEST_POSTGRES_URL"


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def postgres_admin_url() -> str:
    """The test server's URL; skips the test locally without one, fails it under CI."""
    url = os.environ.get(POSTGRES_URL_ENV)
    problem = None
    if not url:
        problem = f"{POSTGRES_URL_ENV} is not set (a postgresql:// URL of a database the tests may use)"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            problem = "psycopg is not installed (pip install -e '.[postgres]')"
    if problem:
        if _running_in_ci():  # CI must never pass by silently skipping the PostgreSQL half
            pytest.fail(f"PostgreSQL store tests cannot run under CI: {problem}", pytrace=False)
        pytest.skip(f"PostgreSQL store tests skipped: {problem}")
    return url


def postgres_url_with_schema(url: str, schema: str) -> str:
    """``url`` whose sessions use ``schema`` for every unqualified table, named for cleanup."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(options=f"-csearch_path={schema}", application_name=schema)
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def postgres_schema(url: str):
    """A new, empty schema on the test server, dropped (with its leftover sessions) on exit."""
    import psycopg
    from psycopg import sql

    schema = f"consentry_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield postgres_url_with_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            # A store a failed test left open would hold locks and make DROP wait forever.
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (schema,))
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path):
    """Where a fresh, empty store lives: a SQLite file, or a postgresql:// URL of its own schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
        return
    with postgres_schema(postgres_admin_url()) as url:
        yield url


@pytest.fixture
def store(store_target: str):
    """``Store.open(store_target)``, closed after the test."""
    from consentry.store import Store

    with Store.open(store_target) as opened:
        yield opened
