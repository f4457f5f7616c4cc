"""/health/ready latency under concurrent load through a real HTTP server (uvicorn).

    python bench/health.py [--seconds 3] [--concurrency 32]

One uvicorn process serves three endpoints: ``/bare`` (a constant health+json answer, the
baseline), ``/ok/health/ready`` (three healthy 1 ms checks) and ``/hang/health/ready`` (the same
plus a critical dependency that answered once and hangs on every refresh since). The load
generator is this process: one keep-alive HTTP/1.1 connection per client on raw asyncio
streams (a lean client, so the numbers describe the server rather than the client library).

Target (issue #8): /health/ready answers well under 100 ms even when a dependency hangs: p99
with the hanging dependency < 100 ms, every answer 200 and flagged stale, and its p50 within
1.5x of the healthy registry's p50.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Report, run_concurrent


def build_app() -> object:
    """The server side (runs in the uvicorn subprocess)."""
    from fleetkit.health import ComponentStatus, HealthMiddleware, HealthRegistry

    async def bare(scope: dict[str, object], receive: object, send: object) -> None:
        body = b'{"status":"pass"}'
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-type", b"application/health+json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    async def fast() -> ComponentStatus:
        await asyncio.sleep(0.001)
        return ComponentStatus("pass", "datastore", observed_value=1.0, observed_unit="ms")

    calls = [0]

    async def hangs_after_first_call() -> ComponentStatus:
        calls[0] += 1
        if calls[0] > 1:
            await asyncio.Event().wait()
        return await fast()

    ok = HealthRegistry(interval=1.0, deadline=0.08)
    hang = HealthRegistry(interval=1.0, deadline=0.08)
    for registry in (ok, hang):
        for name in ("redis-main", "postgres", "audit"):
            registry.add(name, fast, critical=True)
    hang.add("payments-api", hangs_after_first_call, critical=True, timeout=3600)
    app = HealthMiddleware(bare, registry=ok, prefix="/ok/health", show_details=True)
    app = HealthMiddleware(app, registry=hang, prefix="/hang/health", show_details=True)

    async def lifespan_app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()  # type: ignore[operator]
                if message["type"] == "lifespan.startup":
                    await ok.start()
                    await hang.start()
                    await send({"type": "lifespan.startup.complete"})  # type: ignore[operator]
                else:
                    await ok.aclose()
                    await hang.aclose()
                    await send({"type": "lifespan.shutdown.complete"})  # type: ignore[operator]
                    return
        await app(scope, receive, send)

    return lifespan_app


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
              ) -> tuple[int, bytes]:
    """One GET on a kept-alive connection: (status, body)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), await reader.readexactly(length)


async def main(seconds: float, concurrency: int) -> int:
    from tests.support import free_port, wait_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    report = Report("health", f"/health/ready latency, {concurrency} concurrent clients (uvicorn)")
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        wait_port(port, timeout=20)
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
        # Let the hanging dependency answer once, then start hanging past the deadline.
        status, body = await get(*conns[0], "/hang/health/ready")
        assert status == 200 and b'"stale"' not in body, body
        await asyncio.sleep(1.3)
        statuses: dict[str, dict[int, int]] = {}
        stale = [0]
        for label, path in (("bare endpoint (baseline)", "/bare"),
                            ("ready, healthy deps", "/ok/health/ready"),
                            ("ready, one dep hanging", "/hang/health/ready")):
            seen: dict[int, int] = statuses.setdefault(label, {})

            async def op(i: int, path: str = path, seen: dict[int, int] = seen) -> None:
                code, content = await get(*conns[i], path)
                seen[code] = seen.get(code, 0) + 1
                if path.startswith("/hang") and b'"stale":true' in content:
                    stale[0] += 1

            result = await run_concurrent(op, concurrency=concurrency, seconds=seconds,
                                          record_latency=True)
            base = None if path == "/bare" else "bare endpoint (baseline)"
            report.add(f"{label} p50", result.percentile(50) * 1000, "ms",
                       baseline=base and f"{base} p50")
            report.add(f"{label} p99", result.percentile(99) * 1000, "ms",
                       baseline=base and f"{base} p99")
            report.add(f"{label} throughput", result.rate, "req/s", errors=result.errors)
        hang_label = "ready, one dep hanging"
        hang_total = sum(statuses[hang_label].values())
        p99 = report.get(f"{hang_label} p99").value
        ratio = report.get(f"{hang_label} p50").value / report.get("ready, healthy deps p50").value
        report.check("p99 with a hanging dependency < 100 ms", p99 < 100, f"{p99:.1f} ms")
        report.check("every answer 200 while the dependency hangs",
                     set(statuses[hang_label]) == {200}, str(statuses[hang_label]))
        report.check("answers flag the stale result", stale[0] >= hang_total > 0,
                     f"{stale[0]} of {hang_total} (counted incl. warm-up)")
        report.check("hanging p50 within 1.5x of healthy p50", ratio <= 1.5, f"{ratio:.2f}x")
        report.info.update({"concurrency": concurrency, "seconds": seconds,
                            "statuses": {k: dict(v) for k, v in statuses.items()},
                            "server": "uvicorn 1 worker, uvloop, httptools",
                            "client": "raw asyncio HTTP/1.1 keep-alive, same machine"})
        report.save(chart_unit="ms")
    finally:
        for _, writer in conns:
            writer.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return report.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve is not None:
        serve(ns.serve)
        sys.exit(0)
    started = time.monotonic()
    code = asyncio.run(main(ns.seconds, ns.concurrency))
    print(f"done in {time.monotonic() - started:.1f}s")
    sys.exit(code)
