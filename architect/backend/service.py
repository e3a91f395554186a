"""BackendService: runs a ClientIOHandler over its channels as a Twisted service.

The handler comes from `start_backend`, whose Deferred fires once what it
needs is ready (the database open, the task run prepared). Only then do the
channels open: no router hears of this backend before it can answer. On stop,
the handler stops and the channels close; the database, a service of its own, is
stopped after this one (tap.ArchitectService stops its children in turn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.backend.channel import Channel
from architect.backend.client_io import ClientIOHandler
from architect.once import OneShot

log = Logger()


class BackendService(Service):
    def __init__(
        self,
        start_backend: Callable[[], Deferred[ClientIOHandler]],
        channels: Sequence[Channel],
        on_start_failure: Callable[[Failure], None] | None = None,
    ) -> None:
        self.start_backend = start_backend
        self.on_start_failure = on_start_failure
        self.channels = list(channels)
        self.handler: ClientIOHandler | None = None
        self._starting: Deferred[None] | None = None
        self._serving = False
        self._ready: OneShot[ClientIOHandler] = OneShot()

    def when_ready(self) -> Deferred[ClientIOHandler]:
        """Fires with the handler once the channels are opening (fails if the start failed)."""
        return self._ready.when()

    def startService(self) -> None:
        super().startService()
        self._ready.reset()
        self._starting = self.start_backend().addCallbacks(self._serve, self._start_failed)

    def _serve(self, handler: ClientIOHandler) -> None:
        if not self.running:
            return  # stopped while starting
        self.handler = handler
        for channel in self.channels:
            if channel not in handler.channels:
                handler.add_channel(channel)
        self._serving = True
        for channel in self.channels:
            channel.open()
        handler.start()
        self._ready.succeed(handler)

    def _start_failed(self, failure: Failure) -> None:
        log.critical("the backend cannot start: {error}", error=failure.getErrorMessage())
        log.failure("the backend's start failed", failure)
        self._ready.fail(failure)
        if self.on_start_failure is not None:
            self.on_start_failure(failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        starting = self._starting or succeed(None)
        return starting.addBoth(lambda _: self._stop())

    def _stop(self) -> Deferred[None]:
        closing: Deferred[None] = succeed(None)
        if self._serving and self.handler is not None:
            self._serving = False
            self._ready.reset()
            self.handler.stop()
            closing_all = [channel.close() for channel in self.channels]
            if self.handler.events is not None:  # what waits is written before the end
                closing_all.append(self.handler.events.settled())
            channels = gatherResults(closing_all)
            closing = channels.addCallback(lambda _: None)
        return closing
