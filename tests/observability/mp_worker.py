"""One worker process serving N requests through the HTTP metrics middleware, then exiting.

    PROMETHEUS_MULTIPROC_DIR=dir python tests/observability/mp_worker.py FIRST_ID COUNT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fleetkit.observability import HTTPMetricsMiddleware


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.path_params["item_id"])


app = Starlette(routes=[Route("/items/{item_id}", item)],
                middleware=[Middleware(HTTPMetricsMiddleware)])


async def main(first: int, count: int) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        for i in range(first, first + count):
            assert (await client.get(f"/items/{i}")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
