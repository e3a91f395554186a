"""The `architect` command as a subprocess, reading a database the storage layer filled."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from architect.database_url import DatabaseUrl
from architect.protocol import Status
from architect.storage import SubmissionKind, UnitStatus, open_sqlite_database
from architect.storage.postgresql import open_postgresql_database

pytestmark = pytest.mark.slow
ARCHITECT = str(Path(sys.executable).parent / "architect")


def architect(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ARCHITECT, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "router.ini"
    path.write_text("[storage]\ndata_dir = data\n[task]\nname = run-a\n")
    return path


async def fill(tmp_path: Path) -> dict[str, Any]:
    db = await open_sqlite_database(tmp_path / "data")
    try:
        run = await db.find_or_create_task_run("run-a", {})
        await db.add_assignments(run.id, [{"n": 0}, {"n": 1}, {"n": 2}])
        units = await db.list_units(run.id)
        w1 = await db.find_or_create_worker("mock", "w1")
        w2 = await db.find_or_create_worker("mock", "w2")
        await db.grant_qualification(w1.id, "english", 1)
        await db.reserve_unit(run.id, w1.id, "agent1", [units[1].id], status=Status.IN_TASK)
        await db.reserve_unit(run.id, w2.id, "agent2", [units[0].id], status=Status.IN_TASK)
        kept = await db.write_file("notes.txt", b"my notes", "text/plain")
        await db.store_submission("agent1", SubmissionKind.UNIT, {"answer": 1}, "k1", [kept])
        await db.set_agent_status("agent1", Status.COMPLETED, UnitStatus.COMPLETED)
        await db.store_submission("agent1", SubmissionKind.METADATA, {"feedback": "ok"}, "k2")
        other = await db.find_or_create_task_run("run-b", {})
        await db.add_assignments(other.id, [{"m": 0}])
        return {"file": str(db.data_dir / kept.stored_path)}
    finally:
        await db.close()


@pytest_twisted.ensureDeferred
async def test_results_status_and_workers(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    filled = await fill(tmp_path)

    out = architect("results", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["kind"], r["agent_id"], r["data"]) for r in rows] == [
        ("unit", "agent1", {"answer": 1}),
        ("metadata", "agent1", {"feedback": "ok"}),
    ]
    unit = rows[0]
    assert (unit["worker_name"], unit["provider_type"]) == ("w1", "mock")
    assert (unit["assignment_index"], unit["unit_index"]) == (1, 0)
    assert unit["assignment_data"] == {"n": 1}
    assert unit["agent_status"] == Status.COMPLETED
    assert isinstance(unit["received_at"], float)
    assert unit["files"] == [
        {"original_name": "notes.txt", "path": filled["file"], "size": 8, "mimetype": "text/plain"}
    ]

    out = architect("results", "--config", str(config), "--format", "csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["kind"], json.loads(r["data"])) for r in table] == [
        ("unit", {"answer": 1}),
        ("metadata", {"feedback": "ok"}),
    ]

    out = architect("status", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "task run run-a",
        "units: available 1, completed 1, reserved 1 (total 3)",
        "agents: completed 1, in task 1 (total 2)",
    ]
    out = architect("status", "--config", str(config), "--run", "run-b", cwd=tmp_path)
    assert out.stdout.splitlines()[1:] == ["units: available 1 (total 1)", "agents: none (total 0)"]

    out = architect("workers", "--config", str(config), cwd=tmp_path)
    workers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(w["worker_name"], w["qualifications"]) for w in workers] == [
        ("w1", {"english": 1}),
        ("w2", {}),
    ]


@pytest_twisted.ensureDeferred
async def test_grant_and_revoke(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await fill(tmp_path)

    def qualifications() -> dict[str, Any]:
        out = architect("workers", "--config", str(config), cwd=tmp_path)
        return {
            w["worker_name"]: w["qualifications"]
            for w in map(json.loads, out.stdout.split("\n")[:-1])
        }

    out = architect("grant", "--config", str(config), "w2", "accuracy", "0.95", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "granted accuracy = 0.95 to mock worker w2\n"
    architect("grant", "--config", str(config), "w2", "country", "NZ", cwd=tmp_path)
    architect("grant", "--config", str(config), "newcomer", "english", cwd=tmp_path)
    assert qualifications() == {
        "w1": {"english": 1},
        "w2": {"accuracy": 0.95, "country": "NZ"},
        "newcomer": {"english": 1},  # qualified before ever coming
    }
    out = architect("revoke", "--config", str(config), "w1", "english", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert qualifications()["w1"] == {}
    out = architect("revoke", "--config", str(config), "w1", "english", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "architect: mock worker 'w1' has no qualification 'english'"
    out = architect("revoke", "--config", str(config), "ghost", "english", cwd=tmp_path)
    assert out.returncode == 1 and "no mock worker named 'ghost'" in out.stderr


@pytest_twisted.ensureDeferred
async def test_a_missing_run_or_database_is_one_line_and_a_failure(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = architect("status", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"architect: no database at {tmp_path / 'data' / 'architect.sqlite3'}"
        f" (has the daemon run with {config}?)"
    ]
    assert not (tmp_path / "data").exists()  # nothing created

    await fill(tmp_path)
    out = architect("results", "--config", str(config), "--run", "nope", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "architect: no task run named 'nope' (runs: run-a, run-b)"
    ]


def test_bad_arguments_and_config(tmp_path: Path) -> None:
    out = architect("results", "--config", str(tmp_path / "none.ini"), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == f"architect: {tmp_path / 'none.ini'}: no such file"
    out = architect("frobnicate", cwd=tmp_path)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


@pytest_twisted.ensureDeferred
async def test_csv_results_start_no_formula(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = await open_sqlite_database(tmp_path / "data")
    try:
        run = await db.find_or_create_task_run("run-a", {})
        await db.add_assignments(run.id, ["=HYPERLINK(1)", {"n": 1}])
        units = await db.list_units(run.id)
        # A worker kept before names were checked at registration.
        worker = await db.find_or_create_worker("+mock", "=cmd|' /C calc'!A0")
        for unit, answer in zip(units, ("=1+1", "-2"), strict=True):
            agent_id = f"agent-{unit.id}"
            await db.reserve_unit(run.id, worker.id, agent_id, [unit.id], status=Status.IN_TASK)
            await db.store_submission(agent_id, SubmissionKind.UNIT, {"answer": answer}, agent_id)
    finally:
        await db.close()

    out = architect("results", "--config", str(config), "--format", "csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(table) == 2
    assert [v for row in table for v in row.values() if v and v[0] in "=+-@\t\r"] == []
    assert (table[0]["worker_name"], table[0]["provider_type"]) == ("'=cmd|' /C calc'!A0", "'+mock")
    assert table[0]["assignment_data"] == "'=HYPERLINK(1)"  # a JSON string unit, quoted
    assert [json.loads(row["data"]) for row in table] == [{"answer": "=1+1"}, {"answer": "-2"}]

    out = architect("results", "--config", str(config), cwd=tmp_path)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[0]["worker_name"] == "=cmd|' /C calc'!A0"  # JSON lines keep the text as it is


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_migrate_copies_the_sqlite_database_into_postgresql(
    tmp_path: Path, postgres_url: DatabaseUrl
) -> None:
    """After `migrate`, every command reads the same from PostgreSQL as from the file (one
    changed line in the ini); new rows get new ids; a second migrate is refused."""
    config = write_config(tmp_path)
    await fill(tmp_path)
    pg_config = tmp_path / "pg.ini"
    pg_config.write_text(
        f"[storage]\ndata_dir = data\nurl = {postgres_url}\n[task]\nname = run-a\n"
    )

    migrated = architect(
        "migrate", "--config", str(config), "--to", str(postgres_url), cwd=tmp_path
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "agents: 2 rows" in migrated.stdout
    assert "submissions: 2 rows" in migrated.stdout

    for command in (["results"], ["results", "--format", "csv"], ["status"], ["workers"]):
        on_sqlite = architect(*command, "--config", str(config), cwd=tmp_path)
        on_postgresql = architect(*command, "--config", str(pg_config), cwd=tmp_path)
        assert on_sqlite.returncode == on_postgresql.returncode == 0, on_postgresql.stderr
        assert on_postgresql.stdout == on_sqlite.stdout
        assert on_sqlite.stdout

    database = await open_postgresql_database(postgres_url, tmp_path / "data")
    try:
        w3 = await database.find_or_create_worker("mock", "w3")
        assert w3.id == 3
        run = await database.get_task_run("run-a")
        assert run is not None
        assert len(await database.list_agents(task_run_id=run.id)) == 2
    finally:
        await database.close()

    again = architect("migrate", "--config", str(config), "--to", str(postgres_url), cwd=tmp_path)
    assert again.returncode == 1
    assert "already holds data" in again.stderr
    bad = architect(
        "migrate", "--config", str(config), "--to", "postgresql://u:pw@h/db", cwd=tmp_path
    )
    assert bad.returncode == 2
    assert "holds a password" in bad.stderr
