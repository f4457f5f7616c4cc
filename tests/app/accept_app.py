"""A raw ASGI app that counts event-loop iterations, for tests/app/test_accept.py.

``GET /block?until=<path>`` starts a callback that re-schedules itself with ``call_soon`` (so it
runs once per loop iteration and counts them), writes ``<path>.blocking`` and blocks the loop until
``<path>`` exists: the client opens its connections meanwhile, and they wait in the kernel's
accept queue. Every other request answers the iteration at which the app saw it; ``GET /stop``
ends the count.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fleetkit.types import Receive, Scope, Send

__all__ = ["make_app"]


def make_app() -> Any:
    state = {"iteration": 0, "counting": False}

    def tick() -> None:
        if state["counting"]:
            state["iteration"] += 1
            asyncio.get_running_loop().call_soon(tick)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/block":
            until = scope["query_string"].decode().removeprefix("until=")
            with open(until + ".blocking", "w"):
                pass  # the client may open its connections now
            state["counting"] = True
            asyncio.get_running_loop().call_soon(tick)
            deadline = time.monotonic() + 60
            while not os.path.exists(until) and time.monotonic() < deadline:
                time.sleep(0.01)  # blocking on purpose: the loop cannot accept meanwhile
        elif path == "/stop":
            state["counting"] = False
        body = str(state["iteration"]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app
