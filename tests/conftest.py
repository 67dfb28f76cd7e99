"""Shared test helpers: paths to bundled data, config files written under tmp_path, and the
database each delivery and edition test runs on: a SQLite file, then a database of its own
on the session's PostgreSQL server (tests/pgserver.py)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .pgserver import INSTALL_HINT, PgServer, server_bindir

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
FEEDS = DATA / "feeds"


def write_config(
    directory: Path, body: str = "", *, feeds: list[tuple[str, str]] | None = None, smtp: str = ""
) -> Path:
    """A minimal valid config.toml under ``directory`` plus ``body`` (top-level keys first)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "subscribers").mkdir(exist_ok=True)
    feed_text = "".join(
        f'\n[[feeds]]\nname = "{name}"\nurl = "{url}"\n' for name, url in (feeds or [])
    )
    text = (
        textwrap.dedent(body).strip()
        + "\n"
        + textwrap.dedent(
            """
        [sender]
        address = "digest@example.org"
        name = "Paper Digest"
        organization = "Test Lab"
        postal_address = "1 Test Street"
        """
        )
        + (textwrap.dedent(smtp) if smtp else "")
        + feed_text
    )
    path = directory / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def write_subscriber(directory: Path, slug: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{slug}.toml"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def tmp_config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


# -- databases ----------------------------------------------------------------------------------

DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session, in a temporary folder on a free port.
    Without the server binaries the tests that need it skip (and fail under CI, whose
    `.ci/run` installs them)."""
    if server_bindir() is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    with PgServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_database(pg_server: PgServer) -> str:
    """The session's test database, with the project's tables (made by a Store)."""
    from digest.store import Store

    url = pg_server.create_database("digest_tests")
    Store(url).close()
    return url


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL test database with every table of the project emptied:
    a fresh database each time would cost half a second; emptying it, a few milliseconds.
    (A test that needs a database without tables makes one with pg_server.create_database.)"""
    from sqlmodel import SQLModel

    from digest.store._migrate import head

    url: str = request.getfixturevalue("pg_database")
    server: PgServer = request.getfixturevalue("pg_server")
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    server.sql(
        f"SET lock_timeout = '10s'; TRUNCATE {tables} RESTART IDENTITY CASCADE; "
        f"UPDATE alembic_version SET version_num = '{head()}'",
        "digest_tests",
    )
    return url


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's database: a SQLite file under tmp_path, or its own PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'digest.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
