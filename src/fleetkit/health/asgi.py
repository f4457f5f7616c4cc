"""``/health``, ``/health/ready`` and ``/health/live`` as pure ASGI, in ``application/health+json``.

Format: draft-inadarei-api-health-check. ``pass`` and ``warn`` answer 200, ``fail`` 503. Check
details (outputs, observed values) can reveal topology, so they are only sent when
``show_details`` is set; the status alone is always sent.
"""

from __future__ import annotations

import datetime
from typing import Any

import orjson

from fleetkit.errors import ASGIError
from fleetkit.health.registry import HealthRegistry, HealthReport, Kind
from fleetkit.types import ASGIApp, Receive, Scope, Send

__all__ = ["HealthEndpoint", "HealthMiddleware", "health_routes", "render"]


MEDIA_TYPE = b"application/health+json"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds")


def render(report: HealthReport, *, show_details: bool, service_id: str | None = None,
           version: str | None = None) -> dict[str, Any]:
    """The health+json document of ``report``."""
    body: dict[str, Any] = {"status": report.status}
    if report.shutting_down:
        body["output"] = "shutting down"
    if not show_details:
        return body
    if version:
        body["version"] = version
    if service_id:
        body["serviceId"] = service_id
    checks: dict[str, list[dict[str, Any]]] = {}
    stale = []
    for c in report.checks:
        r = c.result
        entry: dict[str, Any] = {"componentId": c.name, "componentType": c.component_type,
                                 "status": c.status, "time": _iso(c.observed_at)}
        if r is not None and r.observed_value is not None:
            entry["observedValue"] = r.observed_value
        if r is not None and r.observed_unit:
            entry["observedUnit"] = r.observed_unit
        output = r.output if r is not None else None
        if r is not None and r.status != c.status:
            output = f"{output or r.status} (damped: raw {r.status}, reporting {c.status})"
        if c.stale:
            output = f"stale: refresh overdue; {output or c.status}"
            entry["stale"] = True
            stale.append(c.name)
        if output:
            entry["output"] = output
        if not c.critical:
            entry["critical"] = False
        if r is not None and r.details:
            entry["details"] = r.details
        checks.setdefault(f"{c.name}:{c.measurement}", []).append(entry)
    body["checks"] = checks
    if stale:
        body["notes"] = [f"stale results: {', '.join(stale)}"]
    return body


class HealthEndpoint:
    """One health endpoint as an ASGI app (usable as a Starlette/FastAPI route endpoint)."""

    def __init__(self, registry: HealthRegistry, kind: Kind, *, show_details: bool = False,
                 service_id: str | None = None, version: str | None = None) -> None:
        self.registry = registry
        self.kind = kind
        self.show_details = show_details
        self.service_id = service_id
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ASGIError("health endpoints only serve HTTP")
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b'{"status":"fail","output":"method not allowed"}',
                           extra=[(b"allow", b"GET, HEAD")])
            return
        if self.kind == "live":
            report = self.registry.live()
        elif self.kind == "ready":
            report = await self.registry.ready()
        else:
            report = await self.registry.health()
        body = orjson.dumps(render(report, show_details=self.show_details,
                                   service_id=self.service_id, version=self.version))
        await _respond(send, report.http_status, b"" if method == "HEAD" else body,
                       length=len(body))


async def _respond(send: Send, status: int, body: bytes, *, length: int | None = None,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", MEDIA_TYPE), (b"cache-control", b"no-store"),
               (b"content-length", str(len(body) if length is None else length).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


class HealthMiddleware:
    """Answers the health paths before the rest of the stack runs (no rate limit, no session).

    Probes then cost nothing but the registry read, and a misbehaving middleware further in
    cannot make an instance look dead.
    """

    def __init__(self, app: ASGIApp, *, registry: HealthRegistry, prefix: str = "/health",
                 show_details: bool = False, service_id: str | None = None,
                 version: str | None = None) -> None:
        self.app = app
        opts: dict[str, Any] = {"show_details": show_details, "service_id": service_id,
                                "version": version}
        self.endpoints: dict[str, HealthEndpoint] = {
            prefix: HealthEndpoint(registry, "health", **opts),
            f"{prefix}/ready": HealthEndpoint(registry, "ready", **opts),
            f"{prefix}/live": HealthEndpoint(registry, "live", **opts),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.endpoints.get(scope["path"].rstrip("/") or "/")
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def health_routes(registry: HealthRegistry, *, prefix: str = "/health",
                  show_details: bool = False, service_id: str | None = None,
                  version: str | None = None) -> list[Any]:
    """Starlette ``Route`` objects for the three endpoints (FastAPI accepts them too)."""
    from starlette.routing import Route

    opts: dict[str, Any] = {"show_details": show_details, "service_id": service_id,
                            "version": version}
    return [
        Route(prefix, HealthEndpoint(registry, "health", **opts), methods=["GET", "HEAD"]),
        Route(f"{prefix}/ready", HealthEndpoint(registry, "ready", **opts),
              methods=["GET", "HEAD"]),
        Route(f"{prefix}/live", HealthEndpoint(registry, "live", **opts), methods=["GET", "HEAD"]),
    ]
