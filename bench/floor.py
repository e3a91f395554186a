"""The floor: a bare one-hop Python WebSocket echo server (aiohttp), no router, no backend.

``python -m bench.floor PORT``. Every text frame on "/" is sent straight back;
``POST /request_agent`` is answered at once with a made-up ``agent_details`` packet.
What a router adds on top of this is its own cost.
"""

from __future__ import annotations

import itertools
import sys

from aiohttp import WSMsgType, web

_numbers = itertools.count()


async def echo(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.json_response({"status": "floor"})
    ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


async def request_agent(request: web.Request) -> web.Response:
    body = await request.json()
    number = next(_numbers)
    return web.json_response(
        {
            "packet_type": "agent_details",
            "subject_id": str(number),
            "data": {
                "request_id": str(number),
                "agent_id": f"floor-agent-{number}",
                "worker_id": f"floor-worker-{number}",
                "init_task_data": {},
                "provider_data": body.get("provider_data"),
            },
        }
    )


async def is_alive(request: web.Request) -> web.Response:
    return web.json_response({"status": "Alive!"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/", echo)
    app.router.add_get("/is_alive", is_alive)
    app.router.add_post("/request_agent", request_agent)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
