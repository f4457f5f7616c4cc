"""Refusal at the door: uvicorn's httptools protocol asks admission control before the ASGI app.

Under overload the CPU goes to requests that will be refused, and on one event loop every
microsecond spent refusing is a microsecond the admitted requests wait. Through the ASGI stack
a refusal costs a request-response cycle, an asyncio task, two ``send`` calls and uvicorn's
header encoding; here it costs one ``transport.write`` of preallocated bytes, right after the
request's headers are parsed. ``bench/overload_refusal.py`` measured, on the reference service
with wrk on the same 2-core machine, 24,055 refusals/s this way against 15,018/s from stock
uvicorn's protocol (the same app, refusing through the ASGI stack): 1.6x, CPU that an
instance offered 3x its capacity keeps for the requests it serves.

The decision is the middleware's (:meth:`fleetkit.overload.OverloadMiddleware.door`), found in
the lifespan state where the middleware put it: with no :class:`OverloadMiddleware` in the app
(or ``--lifespan off``) this protocol behaves exactly like uvicorn's. The door takes each
request's whole decision as the request's task is started (a burst read in one loop iteration
is decided before any of it runs); admitted and queued requests carry it to the middleware.

Needs the ``server`` extra (uvicorn + httptools).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from fleetkit.overload.asgi import DOOR_STATE_KEY

__all__ = ["AdmissionProtocol"]

# uvicorn's hook this relies on (present since 0.30); checked at import, not at the first request.
if not callable(getattr(HttpToolsProtocol, "_start_asgi_task", None)):  # pragma: no cover
    raise ImportError("fleetkit.overload.server needs uvicorn >= 0.30 (HttpToolsProtocol."
                      "_start_asgi_task)")


class AdmissionProtocol(HttpToolsProtocol):
    """httptools protocol that writes admission control's refusals without starting the app."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        door: Callable[[Any], bytes | None] | None = self.app_state.get(DOOR_STATE_KEY)
        if door is not None:
            raw = door(cycle.scope)
            if raw is not None:
                # Complete before the body arrives: on_body / on_message_complete discard it.
                cycle.response_complete = True
                self.transport.write(raw)
                if not self._keep_alive_after_refusal(cycle):
                    self.transport.close()
                self.on_response_complete()  # keep-alive timer, next pipelined request
                return
        super()._start_asgi_task(cycle, app)

    def _keep_alive_after_refusal(self, cycle: RequestResponseCycle) -> bool:
        return cycle.keep_alive
