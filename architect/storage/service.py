"""DatabaseService: the backend's database as a Twisted service, opened when the service
starts and closed when it stops. Those who need it wait for `when_open()`."""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from architect.once import OneShot
from architect.storage.interface import Database


class DatabaseService(Service):
    def __init__(self, open_database: Callable[[], Deferred[Database]]) -> None:
        self.open_database = open_database
        self.database: Database | None = None
        self._open: OneShot[Database] = OneShot()
        self._opening: Deferred[None] | None = None

    def when_open(self) -> Deferred[Database]:
        """Fires with the open database (fails if it could not be opened)."""
        return self._open.when()

    def startService(self) -> None:
        super().startService()
        self._opening = self.open_database().addCallbacks(self._opened, self._failed)

    def _opened(self, database: Database) -> None:
        self.database = database
        self._open.succeed(database)

    def _failed(self, failure: Failure) -> None:
        self._open.fail(failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        opening = self._opening or succeed(None)
        return opening.addCallback(lambda _: self._close())

    def _close(self) -> Deferred[None]:
        self._open.reset()
        database, self.database = self.database, None
        return succeed(None) if database is None else database.close()
