"""Fixtures shared by the test modules (tests/browser has more of its own), and the
hypothesis profiles of the fuzz tests (tests/test_fuzz.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import HealthCheck, settings

from architect.config import StorageConfig
from architect.database_url import DatabaseUrl, parse_database_url
from tests.daemon import Daemons
from tests.engines import ENGINES
from tests.fuzz_inputs import long_run
from tests.postgres import PostgresServer, start_server

# The default run is short and the same each time (CI); ARCHITECT_FUZZ_EXAMPLES=N runs N
# examples per property, with new random inputs each run. No example database is kept
# (no .hypothesis folder): a failure prints the example, and its seed to reproduce it.
settings.register_profile(
    "architect",
    deadline=None,
    database=None,
    derandomize=not long_run(),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("architect")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with DAEMONS_ON_EVERY_ENGINE = True runs its daemon tests once per engine
    (tests/engines.py: on_every_engine does it for one test)."""
    if getattr(metafunc.module, "DAEMONS_ON_EVERY_ENGINE", False):
        if "daemon_engine" in metafunc.fixturenames:
            metafunc.parametrize("daemon_engine", ENGINES)


@pytest.fixture
def daemon_engine() -> str:
    """The engine of the embedded daemons `daemons` starts (see pytest_generate_tests)."""
    return "sqlite"


@pytest_twisted.async_yield_fixture
async def daemons(
    tmp_path: Path, daemon_engine: str, request: pytest.FixtureRequest
) -> AsyncIterator[Daemons]:
    """Starts daemons (tests/daemon.py) in tmp_path; stops them all when the test ends.
    On PostgreSQL, each embedded daemon gets a database of its own, dropped at the end."""
    made: list[str] = []
    server: PostgresServer | None = None
    databases = None
    if daemon_engine == "postgresql":
        server = request.getfixturevalue("postgres_server")

        def databases() -> DatabaseUrl:
            assert server is not None
            made.append(server.fresh_database())
            return parse_database_url(server.url(made[-1]))

    started = Daemons(tmp_path, databases)
    try:
        yield started
    finally:
        await started.stop_all()
        for name in made:
            assert server is not None
            server.drop_database(name)
    # A test run "on PostgreSQL" whose daemons kept nothing there is mislabelled.
    assert daemon_engine != "postgresql" or made, "no daemon of this test used PostgreSQL"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own for the session (tests/postgres.py); fails if it cannot."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[DatabaseUrl]:
    """The url of a new, empty PostgreSQL database, dropped when the test ends."""
    name = postgres_server.fresh_database()
    try:
        yield parse_database_url(postgres_server.url(name))
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn: a test taking it (or storage_config) runs once per engine."""
    name: str = request.param
    return name


@pytest.fixture
def storage_config(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> StorageConfig:
    """A [storage] section on the engine under test: its data folder in tmp_path/data."""
    if engine == "postgresql":
        url: DatabaseUrl = request.getfixturevalue("postgres_url")
        return StorageConfig(data_dir=tmp_path / "data", url=url)
    return StorageConfig(data_dir=tmp_path / "data")
