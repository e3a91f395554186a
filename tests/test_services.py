"""The daemon's small service parts: OneShot, the database service, the children's order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from architect.config import BackendConfig, Config, RouterConfig, StorageConfig
from architect.once import OneShot
from architect.storage import Database
from architect.storage.service import DatabaseService
from architect.tap import ArchitectService, build_service
from tests.clients import reactor


def outcomes(d: Deferred[Any]) -> list[Any]:
    seen: list[Any] = []
    d.addBoth(seen.append)
    return seen


def test_a_one_shot_answers_those_waiting_and_those_who_come_later() -> None:
    shot: OneShot[int] = OneShot()
    early = outcomes(shot.when())
    assert early == []
    shot.succeed(7)
    assert early == [7] and outcomes(shot.when()) == [7]
    shot.reset()
    late = outcomes(shot.when())
    assert late == []
    shot.fail(Failure(ValueError("no")))
    assert isinstance(late[0], Failure) and late[0].check(ValueError)


class FakeDatabase:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> Deferred[None]:
        self.closed += 1
        return succeed(None)


def test_the_database_service_opens_at_start_and_closes_at_stop() -> None:
    database = FakeDatabase()
    # Only close() is asked of the database here: a fake with just that stands for one.
    service = DatabaseService(lambda: succeed(cast(Database, database)))
    waiting = outcomes(service.when_open())
    service.startService()
    assert waiting == [database] and service.database is database
    assert outcomes(service.stopService()) == [None]
    assert database.closed == 1 and service.database is None


def test_a_database_that_cannot_be_opened_fails_its_waiters() -> None:
    service = DatabaseService(lambda: fail(OSError("read-only")))
    service.startService()
    [failure] = outcomes(service.when_open())
    assert isinstance(failure, Failure) and failure.check(OSError)
    assert outcomes(service.stopService()) == [None]


def test_the_daemon_has_named_children_by_mode(tmp_path: Path) -> None:
    def children(mode: str) -> list[str]:
        config = Config(
            path=tmp_path / "router.ini",
            router=RouterConfig(listen="tcp:0:interface=127.0.0.1"),
            backend=BackendConfig(mode=mode, router_url="ws://127.0.0.1:1/"),
            storage=StorageConfig(data_dir=Path("data")),
        )
        return [child.name for child in build_service(config, reactor)]

    assert children("off") == ["router"]
    assert children("embedded") == ["router", "database", "backend", "units"]
    assert children("remote") == ["database", "backend", "units"]


def test_children_stop_one_after_the_other_the_last_started_first() -> None:
    stopped: list[str] = []
    pending: dict[str, Deferred[None]] = {}

    class Child(Service):
        def stopService(self) -> Deferred[None]:
            super().stopService()
            assert self.name is not None
            stopped.append(self.name)
            pending[self.name] = Deferred()
            return pending[self.name]

    top = ArchitectService()
    for name in ("router", "database", "backend"):
        child = Child()
        child.setName(name)
        child.setServiceParent(top)
    top.startService()
    done = outcomes(top.stopService())
    assert stopped == ["backend"]  # the database waits for the backend's channels
    pending["backend"].callback(None)
    assert stopped == ["backend", "database"]
    pending["database"].callback(None)
    pending["router"].callback(None)
    assert stopped == ["backend", "database", "router"] and done == [None]
