"""Pure ASGI rate limiting middleware and the IETF RateLimit header fields.

Headers follow draft-ietf-httpapi-ratelimit-headers-11: ``RateLimit-Policy`` lists each limit
(``"ip-1s";q=50;w=1``) and ``RateLimit`` its state (``"ip-1s";r=49;t=1``); a denial is a 429 with
``Retry-After`` and an ``application/problem+json`` body of type ``quota-exceeded`` (RFC 9457).
Shadow mode counts and logs what would be denied and lets it through. The limiter never raises
on a Redis failure, and the middleware also lets a request through if its key function or the
limiter fails unexpectedly: rate limiting never turns into a 5xx.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from fleetkit.errors import ConfigError, MiddlewareOrderError
from fleetkit.ratelimit import metrics
from fleetkit.ratelimit.keys import KeyFunc, ip_key, user_key
from fleetkit.ratelimit.limiter import Decision, RateLimiter
from fleetkit.ratelimit.limits import Limit, parse_limits
from fleetkit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PROBLEM_TYPE", "DenyHook", "Policy", "RateLimitMiddleware", "merge_ratelimit_headers",
           "problem_body", "ratelimit_headers", "record_decision"]


PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded"
log = logging.getLogger("fleetkit.ratelimit")
_TOKEN = re.compile(r"[^A-Za-z0-9_.:*/+-]")
_STATE_KEY = "ratelimit_decisions"
_OWN_FIELDS = frozenset({b"ratelimit", b"ratelimit-policy", b"retry-after"})

#: Called after each 429 with the request's scope and its denied (policy, key, decision).
DenyHook = Callable[[Scope, Sequence[tuple[str, str, Decision]]], None]


def record_decision(scope: Scope, policy: str, decision: Decision) -> None:
    """Report a limit the app checked itself (e.g. per account on a login route).

    The middleware then answers with ONE ``RateLimit``/``RateLimit-Policy`` pair and one
    ``Retry-After`` covering its policies and these, replacing the fields the app set.
    """
    scope.setdefault("state", {}).setdefault(_STATE_KEY, []).append((policy, decision))


@dataclass(frozen=True)
class Policy:
    """Named limits applied to requests matching ``path``/``methods`` (``path=None``: all).

    ``path`` is exact (``"/login"``) or a prefix ending in ``*`` (``"/api/*"``). ``key`` returns
    who the request counts against, or None to skip the policy. ``limits`` accepts
    ``"20/second;1000/hour"``.
    """

    name: str
    limits: tuple[Limit, ...] | str | Limit
    key: KeyFunc = field(default_factory=ip_key)
    path: str | None = None
    methods: frozenset[str] | None = None
    cost: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", parse_limits(self.limits))
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        if not self.name or _TOKEN.search(self.name):
            raise ConfigError(f"policy name {self.name!r} must be a simple token")

    @property
    def parsed(self) -> tuple[Limit, ...]:
        assert isinstance(self.limits, tuple)
        return self.limits

    def matches(self, path: str, method: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


def _item_name(policy: str, limit: Limit) -> str:
    # An sf-string: keep it to a safe token set so no quoting or escaping is ever needed.
    return '"' + _TOKEN.sub("_", f"{policy}-{limit.name}") + '"'


def ratelimit_headers(results: Sequence[tuple[str, Decision]], *,
                      jitter: float = 0.0) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` and ``RateLimit`` fields (and ``Retry-After`` when denied).

    ``t`` is rounded up to whole seconds plus up to ``jitter`` seconds, so clients told the same
    reset do not all come back in the same instant.
    """
    policies: list[str] = []
    states: list[str] = []
    retry: float | None = None
    for name, decision in results:
        for state in decision.details:
            item = _item_name(name, state.limit)
            window = max(1, math.ceil(state.limit.window))
            policies.append(f"{item};q={state.limit.amount};w={window}")
            t = math.ceil(state.reset_after + (random.uniform(0, jitter) if jitter else 0.0))
            states.append(f"{item};r={max(0, state.remaining)};t={t}")
        if not decision.allowed and decision.retry_after is not None:
            retry = max(retry or 0.0, decision.retry_after)
    headers = [(b"ratelimit-policy", ",".join(policies).encode()),
               (b"ratelimit", ",".join(states).encode())]
    if retry is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry))).encode()))
    return headers


def merge_ratelimit_headers(headers: Sequence[tuple[bytes, bytes]],
                            extra: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` plus ``extra``, with one ``RateLimit`` and one ``RateLimit-Policy`` field:
    items a route already set (its own limit) come first, the middleware's are appended to the
    same list. ``Retry-After`` already set by the route wins."""
    merged: dict[bytes, bytes] = {}
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        key = name.lower()
        if key in (b"ratelimit", b"ratelimit-policy"):
            merged[key] = merged[key] + b"," + value if key in merged else value
        else:
            out.append((name, value))
    has_retry = any(name.lower() == b"retry-after" for name, _ in out)
    for name, value in extra:
        if name in (b"ratelimit", b"ratelimit-policy"):
            merged[name] = merged[name] + b"," + value if name in merged else value
        elif not (name == b"retry-after" and has_retry):
            out.append((name, value))
    return [*out, *merged.items()]


def problem_body(results: Sequence[tuple[str, Decision]], instance: str | None = None) -> bytes:
    """RFC 9457 problem details for a 429, naming the violated policies."""
    violated = [_item_name(name, s.limit).strip('"') for name, d in results if not d.allowed
                for s in d.details if s.retry_after is not None]
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE,
        "title": "Request cannot be satisfied as assigned quota has been exceeded",
        "status": 429,
        "detail": "Too many requests; retry after the time given in Retry-After.",
        "violated-policies": violated,
    }
    if instance:
        body["instance"] = instance
    return orjson.dumps(body)


class RateLimitMiddleware:
    """Apply global and per-route :class:`Policy` objects to HTTP requests.

    ``headers`` adds the RateLimit fields to every limited response (merged into the fields a
    route's own limit set, so a response carries one ``RateLimit``/``RateLimit-Policy`` pair);
    ``shadow`` never blocks. ``on_deny`` is called (synchronously, after the 429 is sent) with
    the scope and the denied ``(policy, key, decision)`` triples: an audit hook such as
    :class:`fleetkit.ratelimit.audit.DenialAudit`; it must be cheap, and an error in it is
    logged, never raised.

    A :func:`user_key` policy needs the user, which :class:`~fleetkit.sessions.SessionMiddleware`
    puts in the scope: it must run *before* this middleware (with ``add_middleware``, be added
    after it). Without it the policy would silently never apply, so start-up fails with
    :class:`~fleetkit.errors.MiddlewareOrderError` (or the first request, when the server runs
    no lifespan). ``check_order=False`` is for apps whose own middleware sets ``scope["user"]``.
    """

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, policies: Sequence[Policy],
                 shadow: bool = False, headers: bool = True, jitter: float = 0.0,
                 exempt: Sequence[str] = (), check_order: bool = True,
                 on_deny: DenyHook | None = None) -> None:
        self.app = app
        self.on_deny = on_deny
        self.limiter = limiter
        self.policies = tuple(policies)
        self.shadow = shadow
        self.headers = headers
        self.jitter = jitter
        self.exempt = tuple(exempt)
        # Names of the policies that need SessionMiddleware outside; checked once.
        self._needs_user = [p.name for p in self.policies if p.key is user_key] if check_order \
            else []

    def _order_error(self) -> MiddlewareOrderError:
        names = ", ".join(repr(n) for n in self._needs_user)
        return MiddlewareOrderError(
            f"RateLimitMiddleware has per-user policies ({names}) but no SessionMiddleware runs "
            "before it, so they would never apply. Add SessionMiddleware after "
            "RateLimitMiddleware with app.add_middleware (the last added runs first), or use "
            "fleetkit.fastapi.install(app, settings), which adds both in the right order; pass "
            "check_order=False if your own middleware sets scope['user'].")

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        from fleetkit.sessions.asgi import LAYERS_KEY

        present = "sessions" in scope.get(LAYERS_KEY, ())

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and not present:
                raise self._order_error()
            return message

        if present:
            self._needs_user = []  # verified: no per-request check
        await self.app(scope, checked_receive if not present else receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self._needs_user:
                await self._lifespan(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if self._needs_user:  # no lifespan ran (an in-process client): check the first request
            state = scope.get("state") or {}
            if "sessions" not in state and "user" not in scope:
                raise self._order_error()
            self._needs_user = []
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        if self.exempt and path.startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        results, keys = await self._decide(scope, path, method)
        if not results:
            await self.app(scope, receive, send)
            return
        denied = [name for name, d in results if not d.allowed]
        if denied and self.shadow:
            for name in denied:
                metrics.SHADOW_DENIALS.labels(name).inc()
            log.info("rate limit exceeded (shadow mode, let through): policies=%s path=%s",
                     ",".join(denied), path)
        elif denied:
            await self._reject(send, results, path)
            if self.on_deny is not None:
                self._report(scope, results, keys)
            return
        if not self.headers or self.shadow:
            await self.app(scope, receive, send)
            return
        extra = ratelimit_headers(results, jitter=self.jitter)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                more = scope.get("state", {}).get(_STATE_KEY)
                if more:  # the app's own limits: merge them, drop the fields it set itself
                    merged = ratelimit_headers([*results, *more], jitter=self.jitter)
                    kept = [h for h in message.get("headers", ()) if h[0].lower() not in
                            _OWN_FIELDS]
                    message["headers"] = [*kept, *merged]
                else:  # fields a route set without recording its decision: one list each
                    message["headers"] = merge_ratelimit_headers(message.get("headers", ()),
                                                                 extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _report(self, scope: Scope, results: list[tuple[str, Decision]],
                keys: list[str]) -> None:
        assert self.on_deny is not None
        try:
            self.on_deny(scope, [(name, key, d) for (name, d), key in
                                 zip(results, keys, strict=True) if not d.allowed])
        except Exception:  # an audit hook must not fail a request that is already answered
            log.exception("rate limit on_deny hook failed")

    async def _decide(self, scope: Scope, path: str,
                      method: str) -> tuple[list[tuple[str, Decision]], list[str]]:
        """The decisions of the policies that apply, and each one's key."""
        calls: list[tuple[str, Sequence[Limit], int, str]] = []
        keys: list[str] = []
        for policy in self.policies:
            if not policy.matches(path, method):
                continue
            try:
                key = policy.key(scope)
            except Exception:  # a buggy key function must not fail the request
                log.exception("rate limit key function of policy %r failed", policy.name)
                continue
            if key is None:
                continue
            calls.append((f"{policy.name}:{key}", policy.parsed, policy.cost, policy.name))
            keys.append(key)
        if not calls:
            return [], []
        try:
            # Queued together: one pipeline (one script call on standalone Redis), no tasks.
            decisions = await self.limiter.hit_all(calls)
        except Exception:  # the limiter already absorbs Redis errors; this is a last guard
            log.exception("rate limiter failed; letting the request through")
            return [], []
        return [(call[3], d) for call, d in zip(calls, decisions, strict=True)], keys

    async def _reject(self, send: Send, results: list[tuple[str, Decision]], path: str) -> None:
        body = problem_body(results, path)
        headers = [(b"content-type", b"application/problem+json"),
                   (b"content-length", str(len(body)).encode()),
                   *ratelimit_headers(results, jitter=self.jitter)]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
