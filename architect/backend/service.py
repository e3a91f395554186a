"""BackendService: runs a ClientIOHandler over its channels as a Twisted service."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults

from architect.backend.channel import Channel
from architect.backend.client_io import ClientIOHandler


class BackendService(Service):
    def __init__(self, handler: ClientIOHandler, channels: Sequence[Channel]) -> None:
        self.handler = handler
        self.channels = list(channels)
        for channel in self.channels:
            handler.add_channel(channel)

    def startService(self) -> None:
        super().startService()
        for channel in self.channels:
            channel.open()
        self.handler.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.handler.stop()
        closing = gatherResults([channel.close() for channel in self.channels])
        return closing.addCallback(lambda _: None)
