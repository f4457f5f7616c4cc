"""A small uvicorn app wiring the health components (run by test_shutdown/test_probe).

    python tests/health/drain_app.py PORT SHUTDOWN_DELAY
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fleetkit.health import ComponentStatus, HealthMiddleware, HealthRegistry, drain_on_signal

registry = HealthRegistry(interval=0.5)
DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0


async def ok_check() -> ComponentStatus:
    return ComponentStatus("pass", "datastore")


registry.add("db", ok_check, critical=True)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await registry.start()
    restore = drain_on_signal(registry, delay=DELAY)
    yield
    restore()
    await registry.aclose()


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


app = HealthMiddleware(Starlette(routes=[Route("/", hello)], lifespan=lifespan),
                       registry=registry, show_details=True)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), lifespan="on",
                log_level="warning", timeout_graceful_shutdown=5)
