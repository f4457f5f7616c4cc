"""Testing helpers: in-memory components, a controllable clock, an in-process client that runs
the app's lifespan, and pytest fixtures.

Use the fixtures with ``pytest_plugins = ["fleetkit.testing"]`` in your ``conftest.py`` and an
``app`` fixture of your own; see ``docs/testing.md``. Needs ``httpx`` (the ``httpx`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from fleetkit.config import Settings, load_settings
from fleetkit.errors import ASGIError, ConfigError, InvalidArgument
from fleetkit.types import ASGIApp, Message

if TYPE_CHECKING:
    import httpx

    from fleetkit.integration import Fleet

__all__ = ["ManualClock", "client", "embedded_settings", "lifespan", "memory_fleet"]

#: Embedded mode (every component in memory), plain-HTTP cookies, nothing from the environment.
TEST_ENV: Mapping[str, str] = {"SESSION_COOKIE_SECURE": "false", "ENVIRONMENT": "test",
                               "LOG_JSON": "false"}


def embedded_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings for tests: embedded mode unless ``env`` sets ``REDIS_URL``; the process
    environment and ``.env`` are not read."""
    return load_settings(env={**TEST_ENV, **(env or {})}, **overrides)


def memory_fleet(env: Mapping[str, str] | None = None, **options: Any) -> Fleet:
    """A :class:`~fleetkit.integration.Fleet` with every component in memory."""
    from fleetkit.integration import Fleet

    settings = embedded_settings(env)
    if not settings.embedded:
        raise ConfigError("memory_fleet() is embedded mode: do not set REDIS_URL")
    return Fleet.from_settings(settings, **options)


class ManualClock:
    """A clock that moves only when told: ``RateLimiter(redis=None, clock=clock)``."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise InvalidArgument("a clock does not go back")
        self.now += seconds


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp, *, timeout: float = 30.0) -> AsyncIterator[None]:
    """Run the ASGI lifespan of ``app`` around the block, as a server does.

    A failed start-up raises :class:`RuntimeError` with the app's message (for example a
    :class:`~fleetkit.errors.MiddlewareOrderError`); the original exception is its cause.
    """
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    async def run() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    task = asyncio.create_task(run())

    async def expect(event: str) -> None:
        await inbox.put({"type": f"lifespan.{event}"})
        getter = asyncio.ensure_future(outbox.get())
        done, _ = await asyncio.wait({getter, task}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            if task in done and task.exception() is not None:
                raise ASGIError(f"lifespan {event} failed: {task.exception()}") \
                    from task.exception()
            raise ASGIError(f"lifespan {event}: no answer from the app")
        message = getter.result()
        if message["type"] == f"lifespan.{event}.failed":
            cause = task.exception() if task.done() else None
            raise ASGIError(f"lifespan {event} failed: {message.get('message', '')}") \
                from cause
        if message["type"] != f"lifespan.{event}.complete":
            raise ASGIError(f"lifespan {event}: unexpected {message['type']}")

    try:
        await expect("startup")
    except BaseException:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, timeout)
        raise
    try:
        yield
    finally:
        await expect("shutdown")
        await task


@contextlib.asynccontextmanager
async def client(app: ASGIApp, *, base_url: str = "http://test",
                 **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` talking to ``app`` in-process, inside its lifespan."""
    import httpx

    async with lifespan(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url, **kwargs) as http:
        yield http


# --------------------------------------------------------------------------- pytest plugin
try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixtures
    pass
else:
    @pytest.fixture
    def fleetkit_settings() -> Settings:
        """Embedded-mode settings (override the fixture to point at a real Redis)."""
        return embedded_settings()

    @pytest.fixture
    def fleetkit_clock() -> ManualClock:
        return ManualClock()

    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - the async fixture needs pytest-asyncio
        pass
    else:
        @pytest_asyncio.fixture
        async def fleetkit_client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
            """A client for your ``app`` fixture, its lifespan (fleetkit's start-up) running."""
            async with client(app) as http:
                yield http
