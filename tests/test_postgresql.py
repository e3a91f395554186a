"""What is PostgreSQL's own: its dialect, its url, reservations from many connections at once,
commits seen by others, schema upgrades and refusals. The rest of the storage tests run on
both engines (conftest's `engine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_twisted
from psycopg.conninfo import make_conninfo
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock

from architect.config import ConfigError, StorageConfig, load_config
from architect.database_url import DatabaseUrl, parse_database_url
from architect.storage import SCHEMA_VERSION, Database, SchemaError, StorageError, open_database
from architect.storage.postgresql import open_postgresql_database
from architect.storage.postgresql.dialect import query, schema_script
from tests.postgres import PASSWORD_USER, PostgresServer


def test_placeholders_become_psycopgs_outside_quotes() -> None:
    assert query("SELECT a FROM t WHERE b = ? AND c LIKE '%?x' AND d = ?") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '%%?x' AND d = %s"
    )
    assert query("INSERT OR IGNORE INTO t (a) VALUES (?)") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"
    )


def test_the_schema_keeps_sqlites_64_bit_integers_and_reals() -> None:
    sql = schema_script(
        "-- INTEGER PRIMARY KEY is a row id\n"
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, at REAL, s TEXT);"
    )
    assert "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL," in sql
    assert "at DOUBLE PRECISION, s TEXT)" in sql
    assert "row id" not in sql


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://ann@db.example:6543/runs", DatabaseUrl("runs", "ann", "db.example", 6543)),
        ("postgres:///runs?host=/run/postgresql", DatabaseUrl("runs", host="/run/postgresql")),
        (
            "postgresql://ann@h/runs?sslmode=require",
            DatabaseUrl("runs", "ann", "h", None, (("sslmode", "require"),)),
        ),
    ],
)
def test_a_database_url_is_read(raw: str, expected: DatabaseUrl) -> None:
    assert parse_database_url(raw) == expected
    assert parse_database_url(str(expected)) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("mysql://h/db", "must start with postgresql://"),
        ("postgresql://ann:secret@h/db", "holds a password"),
        ("postgresql://h/", "must name one database"),
        ("postgresql://h/a/b", "must name one database"),
        ("postgresql://h:99999/db", "port"),
        ("postgresql://h/db?password=x", "unknown url option"),
        ("postgresql://h/db?host=/tmp", "gives the host twice"),
        ("postgresql:///db?host=relative", "absolute path"),
        ("postgresql://h/db?sslmode=maybe", "sslmode"),
        ("postgresql://h/db?connect_timeout=0", "connect_timeout"),
        ("postgresql://h/" + "d" * 64, "not a PostgreSQL name"),
    ],
)
def test_a_bad_database_url_is_refused_saying_why(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_database_url(raw)


def test_the_storage_keys_are_checked_with_the_config(tmp_path: Path) -> None:
    ini = tmp_path / "router.ini"
    ini.write_text("[storage]\nurl = postgresql://ann:pw@h/db\n")
    with pytest.raises(ConfigError, match=r"\[storage\] url.*password"):
        load_config(ini)
    ini.write_text("[storage]\npassword_file = nowhere\n")
    with pytest.raises(ConfigError, match="password_file"):
        load_config(ini)
    (tmp_path / "pw").write_text("secret\n")
    ini.write_text("[storage]\npassword_file = pw\n")
    with pytest.raises(ConfigError, match="is for a PostgreSQL url"):
        load_config(ini)
    ini.write_text("[storage]\nurl = postgresql://ann@h/db\npassword_file = pw\n")
    storage = load_config(ini).storage
    assert storage.url == DatabaseUrl("db", "ann", "h")
    assert storage.password_file == tmp_path / "pw"


def connect(url: DatabaseUrl) -> psycopg.Connection[tuple[Any, ...]]:
    """A plain connection of our own, beside the engine's (autocommit: sees only commits)."""
    return psycopg.connect(make_conninfo("", **url.connect_args()), autocommit=True)


async def _connections(url: DatabaseUrl, data: Path, count: int) -> list[Database]:
    return [await open_postgresql_database(url, data) for _ in range(count)]


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_fifty_workers_on_five_connections_never_share_a_unit(
    postgres_url: DatabaseUrl, tmp_path: Path
) -> None:
    """Five databases (five connections, five threads: as five daemons) reserve at once
    from the same candidates; the advisory lock lets each unit go to one agent only."""
    databases = await _connections(postgres_url, tmp_path / "data", 5)
    try:
        first = databases[0]
        run = await first.find_or_create_task_run("run", {})
        await first.add_assignments(run.id, [{"n": i} for i in range(20)])
        unit_ids = [u.id for u in await first.list_units(run.id)]
        workers = [await first.find_or_create_worker("mock", f"w{i}") for i in range(50)]
        for _ in range(3):  # three rounds: the races differ each time
            results = await gatherResults(
                [
                    databases[i % 5].reserve_unit(run.id, w.id, f"a-{w.id}-{_}", unit_ids)
                    for i, w in enumerate(workers)
                ]
            )
            got = [u.id for u in results if u is not None]
            assert len(got) == len(set(got))
            assert set(got) <= set(unit_ids)
            units = await first.list_units(run.id)
            holders = {u.id: u.agent_id for u in units if u.agent_id is not None}
            agents = {a.agent_id: a.unit_id for a in await first.list_agents(run.id)}
            assert len(holders) == len(set(holders.values()))
            assert all(agents[agent] == unit for unit, agent in holders.items())
            if _ < 2:  # give every unit back for the next round
                for agent in agents:
                    await first.set_agent_status(agent, "disconnect", "available")
        assert len(got) == 20  # the last round: every unit once, 30 workers turned away
    finally:
        for database in databases:
            await database.close()


@pytest_twisted.ensureDeferred
async def test_a_write_is_seen_by_another_connection_once_its_deferred_fires(
    postgres_url: DatabaseUrl, tmp_path: Path
) -> None:
    database = await open_postgresql_database(postgres_url, tmp_path / "data", clock=Clock())
    try:
        await database.find_or_create_task_run("seen", {"k": 1})
        with connect(postgres_url) as other:
            rows = other.execute("SELECT name, config FROM task_runs").fetchall()
        assert rows == [("seen", '{"k": 1}')]
    finally:
        await database.close()


@pytest_twisted.ensureDeferred
async def test_an_old_schema_is_upgraded_with_the_shared_steps(
    postgres_url: DatabaseUrl, tmp_path: Path
) -> None:
    await (
        await open_postgresql_database(postgres_url, tmp_path / "data", target_version=1)
    ).close()
    with connect(postgres_url) as other:  # rows as a version 1 Architect wrote them
        other.execute("INSERT INTO task_runs (name, config, created_at) VALUES ('old', '{}', 1)")
        for index in (0, 1):
            other.execute(
                "INSERT INTO assignments (task_run_id, assignment_index, data, created_at)"
                " VALUES (1, %s, %s, 1)",
                (index, f'{{"n": {index + 1}}}'),
            )
            other.execute(
                "INSERT INTO units (task_run_id, assignment_id, unit_index, status, created_at)"
                " VALUES (1, %s, 0, 'available', 1)",
                (index + 1,),
            )
    new = await open_postgresql_database(postgres_url, tmp_path / "data")
    try:
        run = await new.get_task_run("old")
        assert run is not None
        units = await new.available_units(run.id)
        assert [u.assignment_data for u in units] == [{"n": 1}, {"n": 2}]
        assert [u.assignment_index for u in units] == [0, 1]
    finally:
        await new.close()
    with connect(postgres_url) as other:
        assert other.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


@pytest_twisted.ensureDeferred
async def test_a_failing_upgrade_leaves_the_database_as_it_was(
    postgres_url: DatabaseUrl, tmp_path: Path
) -> None:
    await (
        await open_postgresql_database(postgres_url, tmp_path / "data", target_version=1)
    ).close()
    schema = tmp_path / "schema"
    schema.mkdir()
    (schema / "upgrade_v1_to_v2.sql").write_text(
        "ALTER TABLE agents ADD COLUMN fine TEXT; ALTER TABLE nowhere ADD COLUMN x TEXT;"
    )
    with pytest.raises(SchemaError, match=r"upgrade_v1_to_v2\.sql failed on PostgreSQL"):
        await open_postgresql_database(
            postgres_url, tmp_path / "data", schema_dir=schema, target_version=2
        )
    with connect(postgres_url) as other:
        assert other.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        columns = other.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'agents'"
        ).fetchall()
    assert ("fine",) not in columns


@pytest_twisted.ensureDeferred
async def test_a_database_with_foreign_tables_is_refused(
    postgres_url: DatabaseUrl, tmp_path: Path
) -> None:
    with connect(postgres_url) as other:
        other.execute("CREATE TABLE theirs (x INTEGER)")
    with pytest.raises(SchemaError, match="no schema_version: not ours"):
        await open_postgresql_database(postgres_url, tmp_path / "data")


@pytest_twisted.ensureDeferred
async def test_an_unreachable_server_is_one_clear_error(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = parse_database_url(f"postgresql://architect@127.0.0.1:{postgres_server.port}/absent")
    with pytest.raises(StorageError, match=r"cannot open the database postgresql://.*/absent"):
        await open_database(StorageConfig(data_dir=tmp_path / "data", url=url))


@pytest_twisted.ensureDeferred
async def test_the_password_comes_from_its_file(
    postgres_server: PostgresServer, postgres_url: DatabaseUrl, tmp_path: Path
) -> None:
    with postgres_server.admin() as admin:
        admin.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD 'pw-of-ann'")
        admin.execute(f'GRANT ALL ON DATABASE "{postgres_url.dbname}" TO {PASSWORD_USER}')
        admin.execute(f'ALTER DATABASE "{postgres_url.dbname}" OWNER TO {PASSWORD_USER}')
    try:
        url = DatabaseUrl(postgres_url.dbname, PASSWORD_USER, postgres_url.host, postgres_url.port)
        (tmp_path / "wrong").write_text("not-it\n")
        with pytest.raises(StorageError, match="password authentication failed"):
            await open_postgresql_database(url, tmp_path / "data", password_file=tmp_path / "wrong")
        (tmp_path / "pw").write_text("pw-of-ann\n")
        database = await open_database(
            StorageConfig(data_dir=tmp_path / "data", url=url, password_file=tmp_path / "pw")
        )
        assert (await database.find_or_create_task_run("r", {})).id == 1
        await database.close()
        (tmp_path / "empty").write_text("")
        with pytest.raises(StorageError, match=r"password file .* is empty"):
            await open_postgresql_database(url, tmp_path / "data", password_file=tmp_path / "empty")
    finally:
        postgres_server.drop_database(postgres_url.dbname)
        with postgres_server.admin() as admin:
            admin.execute(f"DROP ROLE {PASSWORD_USER}")
