"""How ``fleetkit serve`` runs uvicorn: a drain that never resets a request a balancer has sent.

A balancer (Nginx, an ingress) retries a request on another instance only while it was not
sent; once sent, a POST that meets a closed connection fails for the client. Stock uvicorn's
shutdown has two such resets: closing the listener resets the connections the kernel already
accepted but the event loop had not picked up yet, and ``shutdown()`` closes every connection
whose request it has not parsed yet, although its bytes may be on the way. Here:

* before the listener closes, the connections already waiting in its accept queue are accepted
  and served (synchronously up to the close, so nothing can slip in between; fully so with one
  worker per process, ``WEB_CONCURRENCY=1``, as the local stack runs: with ``--workers`` the
  supervisor keeps its own descriptor of the listener until the last worker has exited);
* a connection that has not carried a request yet is not closed: a balancer opens one only to
  send a request, which is answered with ``Connection: close``; idle kept-alive connections are
  closed as before (the balancer's idle timeout being shorter than the drain delay and than
  :data:`KEEP_ALIVE_TIMEOUT`, there are none left by then: see docs/deployment.md "Draining an
  instance");
* connections refused after the close are retried by the balancer elsewhere (nothing was sent).

Connections are accepted in batches, not one per event-loop iteration: see :class:`DrainingServer`.

Needs the ``server`` extra (uvicorn); ``fleetkit serve`` imports this module only when it runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.supervisors import Multiprocess, multiprocess

from fleetkit.app.headlimit import HeadLimitProtocol
from fleetkit.overload.server import AdmissionProtocol

__all__ = ["ACCEPT_BATCH", "KEEP_ALIVE_TIMEOUT", "DrainingProtocol", "DrainingServer", "serve"]

#: Seconds an idle kept-alive connection stays open (uvicorn's default, stated: the balancer's
#: idle timeout must stay below it, so that the balancer, never the server, closes an idle
#: connection; deployment/nginx/nginx.conf upstream ``keepalive_timeout`` is 2 s).
KEEP_ALIVE_TIMEOUT = 5

#: Connections accepted per readiness of a listener: a burst of 1024 new clients is taken in four
#: loop iterations, each costing at most about one busy iteration (256 accepts and their attach
#: tasks measured 3.5-4.5 ms under uvloop, ~15 us a connection).
ACCEPT_BATCH = 256
#: Seconds before accepting again after the process ran out of descriptors (asyncio's delay).
ACCEPT_RETRY_DELAY = 1.0

logger = logging.getLogger(__name__)


class DrainingProtocol(HeadLimitProtocol, AdmissionProtocol):
    """httptools protocol whose ``shutdown()`` answers a connection's first request first.

    It also refuses admission control's outright refusals before the app runs
    (:class:`fleetkit.overload.server.AdmissionProtocol`), and a request head over
    ``MAX_HEADER_BYTES`` as it arrives (:class:`fleetkit.app.headlimit.HeadLimitProtocol`).
    """

    _requests = 0  # requests begun on this connection
    _close_after = False

    def on_message_begin(self) -> None:
        self._requests += 1
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._close_after and self.cycle is not None:
            self.cycle.keep_alive = False

    def _keep_alive_after_refusal(self, cycle: RequestResponseCycle) -> bool:
        return cycle.keep_alive and not self._close_after

    def shutdown(self) -> None:
        if self.cycle is None and self._requests == 0:
            # Accepted, request not parsed yet: answer it, then close (the server waits for
            # this connection up to its graceful timeout).
            self._close_after = True
            return
        super().shutdown()


class DrainingServer(uvicorn.Server):
    """uvicorn's server accepting connections in batches, and emptying its accept queues before
    closing them.

    libuv (under uvloop) accepts one connection per event-loop iteration (libuv PR #3696): on a
    busy loop, whose iteration runs the callbacks of hundreds of requests, that is 100-200
    accepts a second, so a burst of new clients waits seconds in the kernel's accept queue,
    where admission control cannot even refuse it and a kubelet's probe (a new connection each
    time) times out. Measured by bench/overload.py's burst of 1024 clients on one instance: 700
    connections waited in the accept queue for up to 4 s, one accept per ~7 ms iteration. This
    server takes the listeners from uvicorn and accepts up to :data:`ACCEPT_BATCH` connections
    per readiness, as asyncio's own loop does.
    """

    _listeners: list[socket.socket]
    _attaching: set[asyncio.Task[Any]]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._listeners = list(sockets or [])
        self._attaching = set()
        await super().startup(sockets=[])  # the lifespan and the server state, no listener
        if self.should_exit:
            return
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            listener.listen(self.config.backlog)  # as loop.create_server would
            listener.setblocking(False)
            loop.add_reader(listener.fileno(), self._accept_ready, listener)

    def _protocol(self) -> asyncio.Protocol:
        made: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state,
            _loop=asyncio.get_running_loop())
        return made

    def _attach(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(self._protocol, conn))
        self._attaching.add(task)
        task.add_done_callback(self._attached)

    def _attached(self, task: asyncio.Task[Any]) -> None:
        self._attaching.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.warning("could not attach an accepted connection: %r", exc)

    def _accept_ready(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                # Out of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM): the listener stays
                # readable, so stop watching it for a while instead of spinning (asyncio does the
                # same); the kernel keeps the queue.
                logger.error("accept() failed (%s): retrying in %.0f s", exc, ACCEPT_RETRY_DELAY)
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting, listener)
                return
            self._attach(conn)

    def _resume_accepting(self, listener: socket.socket) -> None:
        if listener.fileno() != -1 and not self.should_exit:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_ready,
                                                  listener)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for listener in getattr(self, "_listeners", []):
            loop.remove_reader(listener.fileno())
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:  # BlockingIOError: the queue is empty
                    break
                self._attach(conn)
            listener.close()
        # No await since the last accept: the listener closes with an empty queue. Every
        # accepted connection gets its protocol before uvicorn's shutdown looks for them.
        if self._attaching:
            await asyncio.gather(*self._attaching, return_exceptions=True)
        await super().shutdown(sockets=sockets)


class DrainingProcess(multiprocess.Process):
    """A ``--workers`` worker process running :class:`DrainingServer` (uvicorn's runs its own)."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


def serve(app: str, *, host: str, port: int, workers: int, graceful_timeout: float,
          log_level: str, **options: Any) -> None:
    """Run ``app`` (an import string of an app factory) until SIGTERM, then drain.

    ``options`` are more ``uvicorn.Config`` arguments (proxy headers, server header).
    """
    config = uvicorn.Config(
        app, factory=True, host=host, port=port, workers=workers, loop="uvloop",
        http=DrainingProtocol, lifespan="on", access_log=False,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        timeout_graceful_shutdown=int(graceful_timeout), log_level=log_level,
        **options,
    )
    server = DrainingServer(config=config)
    sock = config.bind_socket()
    try:
        if workers > 1:
            # uvicorn's supervisor builds its workers from the module's Process class: this
            # process runs nothing else, so its workers are made draining, batch-accepting ones.
            multiprocess.Process = DrainingProcess  # type: ignore[misc]
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    finally:
        sock.close()
