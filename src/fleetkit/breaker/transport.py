"""httpx transport that sends every outbound request through a circuit breaker."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from fleetkit.breaker.breaker import CircuitBreaker
from fleetkit.errors import ConfigError

__all__ = ["BreakerTransport", "server_error"]


def server_error(response: object) -> bool:
    """5xx is a failure of the service; 4xx is the caller's problem and does not count."""
    return isinstance(response, httpx.Response) and response.status_code >= 500


class BreakerTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=BreakerTransport(breaker))``.

    ``breaker`` is one breaker, or a function choosing one per request (for instance
    ``lambda req: registry.get(req.url.host)``). Connection errors and timeouts are failures,
    responses are classified by ``is_failure`` (default: status >= 500). A rejected request
    raises :class:`~fleetkit.errors.CircuitOpenError` without touching the network.
    """

    def __init__(self, breaker: CircuitBreaker | Callable[[httpx.Request], CircuitBreaker], *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 is_failure: Callable[[object], bool] = server_error) -> None:
        if not callable(breaker):
            raise ConfigError("BreakerTransport needs a CircuitBreaker or a function choosing "
                              f"one per request, not {type(breaker).__name__}")
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigError("transport must be an httpx.AsyncBaseTransport")
        if not callable(is_failure):
            raise ConfigError("is_failure must be callable")
        self._choose = breaker if not isinstance(
            breaker, CircuitBreaker) else (lambda _request: breaker)
        self._transport = transport or httpx.AsyncHTTPTransport()
        self._is_failure = is_failure

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        breaker = self._choose(request)
        send = self._transport.handle_async_request
        response: httpx.Response = await breaker.protect(result_is_failure=self._is_failure)(
            send)(request)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()
