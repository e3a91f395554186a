"""StoredSubmissions: each kind in the database, files beside it, repeats stored once;
and the comparators of qualification requirements."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from architect.backend.downloads import download_base
from architect.backend.files import FileFetchError
from architect.backend.store import StoredSubmissions
from architect.config import StorageConfig
from architect.embedded import SharedUploads
from architect.protocol import SUBMIT_UNIT, Status
from architect.qualifications import Requirement, parse_requirements
from architect.router.uploads import UploadBounds, UploadFolder
from architect.storage import Database, open_database
from tests.backend_stack import BackendStack
from tests.clients import reactor


class FakeUploads:
    """A router's upload folder: each file with the agent who uploaded it."""

    def __init__(self, files: dict[str, bytes], owner: str = "agent1") -> None:
        self.files = {name: (owner, content) for name, content in files.items()}
        self.fetched: list[str] = []
        self.discarded: list[str] = []

    def fetch(self, filename: str, agent_id: str) -> Deferred[bytes]:
        self.fetched.append(filename)
        owner, content = self.files.get(filename, (None, b""))
        if owner != agent_id:
            return fail(FileFetchError(f"no {filename} of {agent_id}"))
        return succeed(content)

    def discard(self, filename: str, agent_id: str) -> Deferred[None]:
        assert self.files[filename][0] == agent_id
        del self.files[filename]
        self.discarded.append(filename)
        return succeed(None)


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig) -> AsyncIterator[Database]:
    database = await open_database(storage_config, clock=Clock())
    run = await database.find_or_create_task_run("run", {})
    await database.add_assignments(run.id, [{"n": 0}])
    worker = await database.find_or_create_worker("mock", "w1")
    await database.reserve_unit(run.id, worker.id, "agent1", [1])
    yield database
    await database.close()


def file_entry(filename: str, original: str) -> dict[str, Any]:
    return {"filename": filename, "originalname": original, "mimetype": "text/plain", "size": 5}


@pytest_twisted.ensureDeferred
async def test_each_kind_is_stored_once_with_its_files(db: Database) -> None:
    uploads = FakeUploads({"abc.txt": b"hello"})
    store = StoredSubmissions(db, uploads)
    data = {"answer": 1, "files": [file_entry("abc.txt", "notes.txt")]}
    await store.save_unit_submission("agent1", "1", data, "key-1")
    await store.save_unit_submission("agent1", "1", data, "key-1")  # the router's repeat
    await store.save_onboarding("agent1", "1", {"answer": "4"}, "key-2")
    await store.save_metadata("agent1", "1", {"feedback": "fine"}, "key-3")
    stored = await db.list_submissions(agent_id="agent1")
    assert [(s.kind, s.dedupe_key) for s in stored] == [
        ("unit", "key-1"),
        ("onboarding", "key-2"),
        ("metadata", "key-3"),
    ]
    unit = stored[0]
    assert unit.data == data
    [kept] = unit.files
    assert (kept.original_name, kept.size, kept.mimetype) == ("notes.txt", 5, "text/plain")
    assert (db.data_dir / kept.stored_path).read_bytes() == b"hello"
    # the repeat's copy of the file was not left behind, nor the router's
    assert [p.name for p in (db.data_dir / "files").iterdir()] == [Path(kept.stored_path).name]
    assert uploads.discarded == ["abc.txt"] and uploads.files == {}


@pytest_twisted.ensureDeferred
async def test_a_file_that_cannot_be_had_is_logged_and_the_rest_is_kept(
    db: Database,
) -> None:
    store = StoredSubmissions(db, FakeUploads({"good.txt": b"ok"}))
    data = {"files": [file_entry("gone.txt", "a.txt"), file_entry("good.txt", "b.txt")]}
    with capturedLogs() as events:
        await store.save_unit_submission("agent1", "1", data, "key")
    [submission] = await db.list_submissions()
    assert [f.original_name for f in submission.files] == ["b.txt"]
    assert submission.data == data
    # Expected (a file named by the worker that is not there): one line, no traceback.
    assert [e for e in events if e.get("log_failure") is not None] == []
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert [(e["filename"], e["agent_id"]) for e in warnings] == [("gone.txt", "agent1")]
    assert "no gone.txt of agent1" in formatEvent(warnings[0])


@pytest_twisted.ensureDeferred
async def test_a_file_entry_is_logged_cut_short(db: Database) -> None:
    store = StoredSubmissions(db, FakeUploads({}))
    data = {"files": [{"originalname": "x" * 100_000}]}  # no filename
    with capturedLogs() as events:
        await store.save_unit_submission("agent1", "1", data, "key")
    [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
    assert "without a filename" in formatEvent(warning)
    assert len(formatEvent(warning)) < 2_500


@pytest_twisted.ensureDeferred
async def test_a_file_name_with_control_characters_is_logged_on_one_line(
    db: Database,
) -> None:
    """A worker names the files of a JSON submission itself: a newline there forged a
    second log line (found by fuzzing)."""
    store = StoredSubmissions(db, FakeUploads({}))
    data = {"files": [file_entry("gone\nforged: a line\x1b[31m.txt", "a.txt")]}
    with capturedLogs() as events:
        await store.save_unit_submission("agent1", "1", data, "key")
    [warning] = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    assert "gone\\nforged: a line\\x1b[31m.txt" in warning
    assert "\n" not in warning and "\x1b" not in warning


@pytest_twisted.ensureDeferred
async def test_a_submission_brings_only_files_of_its_own_agent(db: Database) -> None:
    uploads = FakeUploads({"mine.txt": b"mine"})
    uploads.files["theirs.txt"] = ("agent2", b"theirs")
    store = StoredSubmissions(db, uploads)
    data = {"files": [file_entry("theirs.txt", "a.txt"), file_entry("mine.txt", "b.txt")]}
    with capturedLogs() as events:
        await store.save_unit_submission("agent1", "1", data, "key")
    [submission] = await db.list_submissions()
    assert [f.original_name for f in submission.files] == ["b.txt"]
    assert uploads.files == {"theirs.txt": ("agent2", b"theirs")}  # untouched
    assert any(e.get("filename") == "theirs.txt" for e in events if e["log_level"] == LogLevel.warn)


@pytest_twisted.ensureDeferred
async def test_shared_uploads_give_only_the_agents_own_files(tmp_path: Path) -> None:
    folder = UploadFolder(tmp_path / "up", UploadBounds(10**6, 10**7, 0))
    body = (
        b'--b\r\nContent-Disposition: form-data; name="f"; filename="x.txt"\r\n\r\nx\r\n--b--\r\n'
    )
    [entry] = folder.store_files(io.BytesIO(body), "multipart/form-data; boundary=b", "agent1")
    name = entry["filename"]
    (tmp_path / "secret").write_bytes(b"s")
    files = SharedUploads(reactor, folder)
    assert await files.fetch(name, "agent1") == b"x"
    for bad in (name, "../secret", "..", "", "a/b", "0" * 32 + ".txt"):
        with pytest.raises(FileFetchError):
            await files.fetch(bad, "agent2")
    await files.discard(name, "agent1")
    assert not (tmp_path / "up" / name).exists()
    with pytest.raises(FileFetchError):
        await files.fetch(name, "agent1")


def test_download_urls_follow_the_router_url() -> None:
    assert download_base("ws://127.0.0.1:3000/") == "http://127.0.0.1:3000/download_file/"
    assert download_base("wss://r.example/x?token=t") == "https://r.example/x/download_file/"


# --- qualification requirements ---


@pytest.mark.parametrize(
    ("requirement", "held", "met"),
    [
        (Requirement("q", "exists"), {"q": 0}, True),
        (Requirement("q", "exists"), {}, False),
        (Requirement("q", "not exists"), {}, True),
        (Requirement("q", "not exists"), {"q": 1}, False),
        (Requirement("q", "==", "a"), {"q": "a"}, True),
        (Requirement("q", "==", "a"), {"q": "b"}, False),
        (Requirement("q", "==", "a"), {}, False),
        (Requirement("q", "!=", "a"), {"q": "b"}, True),
        (Requirement("q", "!=", "a"), {"q": "a"}, False),
        (Requirement("q", "!=", "a"), {}, False),
        (Requirement("q", "<", 5), {"q": 4.9}, True),
        (Requirement("q", "<", 5), {"q": 5}, False),
        (Requirement("q", "<=", 5), {"q": 5}, True),
        (Requirement("q", "<=", 5), {"q": 5.1}, False),
        (Requirement("q", ">", 5), {"q": 6}, True),
        (Requirement("q", ">", 5), {"q": 5}, False),
        (Requirement("q", ">=", 5), {"q": 5}, True),
        (Requirement("q", ">=", 5), {"q": 4}, False),
        (Requirement("q", ">=", 5), {"q": "9"}, False),  # not a number
        (Requirement("q", ">=", 1), {"q": True}, False),
        (Requirement("q", "in", ["a", "b"]), {"q": "b"}, True),
        (Requirement("q", "in", ["a", "b"]), {"q": "c"}, False),
        (Requirement("q", "not in", ["a", "b"]), {"q": "c"}, True),
        (Requirement("q", "not in", ["a", "b"]), {"q": "a"}, False),
        (Requirement("q", "not in", ["a"]), {}, False),
    ],
)
def test_each_comparator(requirement: Requirement, held: dict[str, Any], met: bool) -> None:
    assert requirement.met_by(held) is met


def test_requirements_parse_from_json() -> None:
    assert parse_requirements("") == ()
    assert parse_requirements('[["a", "exists"], ["b", ">=", 2], ["c", "in", [1]]]') == (
        Requirement("a", "exists"),
        Requirement("b", ">=", 2),
        Requirement("c", "in", [1]),
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[", "not valid JSON"),
        ('{"a": 1}', "must be a JSON list"),
        ('[["a"]]', "requirement 1 must be a list"),
        ('[["a", "~", 1]]', "'~' is not one of"),
        ('[["a", ">"]]', "needs a value"),
        ('[["a", ">", "x"]]', "needs a number"),
        ('[["a", "in", 3]]', "needs a list"),
        ('[["", "exists"]]', "non-empty string"),
    ],
)
def test_bad_requirements_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("[", r"\[")):
        parse_requirements(text)


@pytest_twisted.ensureDeferred
async def test_a_unit_submission_commits_its_agents_completion_with_it(db: Database) -> None:
    stack = await BackendStack.make(db, [{"n": 0}, {"n": 1}])
    agent_id = (await stack.register("w1"))["agent_id"]
    stack.held(agent_id).set_status(Status.IN_TASK)
    await stack.settled()
    separate: list[tuple[str, str]] = []
    record = db.set_agent_status

    def spied(agent: str, status: str, unit_status: str | None = None) -> Deferred[bool]:
        separate.append((agent, status))
        return record(agent, status, unit_status)

    db.set_agent_status = spied  # type: ignore[method-assign, assignment]
    await stack.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})  # acknowledged
    assert stack.sizes()["recorder.writes"] == 0 and separate == []  # no write of its own
    history = [change.status for change in await db.status_history(agent_id)]
    assert history[-2:] == [Status.IN_TASK, Status.COMPLETED]
    stored = await db.get_agent(agent_id)
    assert stored is not None and stored.status == Status.COMPLETED
    assert (await stack.register("w2")).get("agent_id")  # the other unit; this one is used up
    assert (await stack.register("w3")).get("agent_id") is None


@pytest_twisted.ensureDeferred
async def test_a_submission_with_files_leaves_the_completion_to_the_recorder(
    db: Database,
) -> None:
    uploads = FakeUploads({})
    stack = await BackendStack.make(db, [{"n": 0}], files=uploads)
    agent_id = (await stack.register("w1"))["agent_id"]
    uploads.files["u1.txt"] = (agent_id, b"hello")
    stack.held(agent_id).set_status(Status.IN_TASK)
    await stack.submit(agent_id, {"files": [file_entry("u1.txt", "a.txt")]})
    stored = await db.get_agent(agent_id)
    assert stored is not None and stored.status == Status.COMPLETED
    assert len(await db.list_submissions(agent_id=agent_id)) == 1
