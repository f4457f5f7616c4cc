"""FastAPI integration: a per-route dependency (or decorator) and the 429 problem+json handler.

    limiter = RateLimiter(redis=client)
    login_limit = RateLimit(limiter, "5/minute;50/hour", name="login", key=ip_key())

    @app.post("/login", dependencies=[Depends(login_limit)])
    async def login(): ...

    @app.get("/search")                          # the route decorator first,
    @rate_limited(limiter, "10/second", name="search")   # then the limit (async def or def)
    async def search(q: str): ...

    install(app)   # renders denials as application/problem+json (else FastAPI's JSON 429)
"""

from __future__ import annotations

import functools
import gc
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request, Response
from starlette.exceptions import HTTPException

from fleetkit.errors import UsageError
from fleetkit.ratelimit.asgi import problem_body, ratelimit_headers, record_decision
from fleetkit.ratelimit.keys import KeyFunc, ip_key
from fleetkit.ratelimit.limiter import Decision, RateLimiter
from fleetkit.ratelimit.limits import Limit, parse_limits

__all__ = ["RateLimit", "RateLimited", "install", "rate_limited"]

F = TypeVar("F", bound=Callable[..., Any])


class RateLimited(HTTPException):
    """A 429 raised by :class:`RateLimit`; an ``HTTPException`` so that it is a 429 even
    without :func:`install`."""

    def __init__(self, name: str, decision: Decision, headers: list[tuple[bytes, bytes]]):
        super().__init__(429, "rate limit exceeded",
                         headers={k.decode(): v.decode() for k, v in headers})
        self.policy = name
        self.decision = decision


class RateLimit:
    """Dependency: limit the route by ``key``; sets the RateLimit fields on the response."""

    def __init__(self, limiter: RateLimiter, limits: str | Limit | Sequence[Limit], *,
                 name: str = "route", key: KeyFunc | None = None, cost: int = 1,
                 shadow: bool = False, headers: bool = True) -> None:
        self.limiter = limiter
        self.limits = parse_limits(limits if isinstance(limits, str | Limit) else tuple(limits))
        self.name = name
        self.key = key or ip_key()
        self.cost = cost
        self.shadow = shadow
        self.headers = headers

    async def __call__(self, request: Request, response: Response) -> Decision | None:
        try:
            key = self.key(request.scope)
        except Exception:  # a key function failure lets the request through
            return None
        if key is None:
            return None
        decision = await self.limiter.hit_many(f"{self.name}:{key}", self.limits,
                                               cost=self.cost, policy=self.name)
        fields = ratelimit_headers([(self.name, decision)]) if self.headers else []
        if self.headers and not self.shadow:
            # RateLimitMiddleware (if outside) merges it into one RateLimit/-Policy pair.
            record_decision(request.scope, self.name, decision)
        if not decision.allowed and not self.shadow:
            raise RateLimited(self.name, decision, fields)
        if not self.shadow:
            for k, v in fields:
                response.headers[k.decode()] = v.decode()
        return decision


def rate_limited(limiter: RateLimiter, limits: str | Limit | Sequence[Limit], *,
                 name: str = "route", key: KeyFunc | None = None,
                 cost: int = 1) -> Callable[[F], F]:
    """Decorator form of :class:`RateLimit` for ``async def`` and ``def`` endpoints.

    Place it *under* the route decorator (``@app.get(...)`` registers what it receives, so a
    limit above it would never run): placed above, it raises ``TypeError`` at import.
    """
    dependency = RateLimit(limiter, limits, name=name, key=key, cost=cost)

    def decorate(func: F) -> F:
        _refuse_registered(func)
        signature = inspect.signature(func)
        extra = inspect.Parameter("_fleetkit_rate_limit", inspect.Parameter.KEYWORD_ONLY,
                                  default=Depends(dependency))
        params = list(signature.parameters.values())
        at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
        params.insert(at, extra)
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, _fleetkit_rate_limit: Any = None,
                                    **kwargs: Any) -> Any:
                return await func(*args, **kwargs)

            wrapper = async_wrapper
        else:
            # A plain def stays one: FastAPI still runs it in its thread pool, and the limit
            # (an async dependency) is checked on the event loop before.
            @functools.wraps(func)
            def sync_wrapper(*args: Any, _fleetkit_rate_limit: Any = None, **kwargs: Any) -> Any:
                return func(*args, **kwargs)

            wrapper = sync_wrapper
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[union-attr]
        return wrapper  # type: ignore[return-value]

    return decorate


def _refuse_registered(func: Callable[..., Any]) -> None:
    """``TypeError`` when ``func`` is already the endpoint of a route (decorator order)."""
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    holders = gc.get_referrers(func)
    # A route holds the function directly or through its instance __dict__.
    candidates = [*holders, *(r for h in holders if isinstance(h, dict)
                              for r in gc.get_referrers(h))]
    for obj in candidates:
        if isinstance(obj, APIRoute | Route) and getattr(obj, "endpoint", None) is func:
            raise UsageError(
                f"rate_limited(...) is above the route decorator of {func.__qualname__} "
                f"({obj.path}): the route is already registered and would not be limited. "
                "Put @rate_limited(...) under @app.get(...)/@router.post(...), or pass "
                "dependencies=[Depends(RateLimit(...))] to the route decorator.")


async def _handle(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)
    fields = ratelimit_headers([(exc.policy, exc.decision)])
    return Response(problem_body([(exc.policy, exc.decision)], request.url.path), status_code=429,
                    media_type="application/problem+json",
                    headers={k.decode(): v.decode() for k, v in fields})


def install(app: FastAPI) -> None:
    """Render :class:`RateLimited` as a 429 ``application/problem+json`` response."""
    app.add_exception_handler(RateLimited, _handle)
