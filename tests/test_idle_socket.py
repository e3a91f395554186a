"""What an open WebSocket keeps of its opening handshake (router/websocket.py): nothing of
the HTTP channel and request that took the upgrade, nor the handshake's text.

These pin Twisted's and Autobahn's behaviour the router relies on: the TCP transport's
`producer` attribute names the HTTP channel until the router lets it go."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest_twisted
from twisted.web.http import Request

from architect.config import RouterConfig
from architect.router.websocket import RouterSocket
from tests.clients import open_socket, running_router, wait_for


@pytest_twisted.ensureDeferred
async def test_an_open_socket_lets_go_of_its_upgrade_request(tmp_path: Path) -> None:
    config = RouterConfig(upload_dir=tmp_path / "uploads")
    with running_router(config) as (hub, port):
        client = await open_socket(port)
        await wait_for(lambda: hub.unnamed_links, "the router's side of the socket")
        (socket,) = hub.unnamed_links
        assert isinstance(socket, RouterSocket) and socket.transport is not None
        assert getattr(socket.transport, "producer", None) is None
        assert socket.http_headers == {} and socket.http_request_data == b""
        # The upgrade request (from this client's port) is garbage, and its channel.
        assert client.transport is not None
        port_used = getattr(client.transport.getHost(), "port", None)
        gc.collect()
        upgrades = [
            o
            for o in gc.get_objects()
            if isinstance(o, Request) and getattr(o.getClientAddress(), "port", None) == port_used
        ]
        assert upgrades == []
        await client.close()
