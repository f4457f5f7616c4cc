"""What a refusal costs: admission control's 503 path, in-process and through a real server.

    python bench/overload_refusal.py [--calls 200000] [--seconds 5] [--connections 64]

Why it matters (issue #15): at 3x capacity an instance refuses two requests for each one it
serves, so the refusal's CPU decides how much goodput is left. GET /v1/me costs ~680 us; a
90 us refusal would already eat ~20%.

1. In-process, no server: ``OverloadMiddleware`` refusing (controller full) against, as
   baselines, a bare ASGI call of a constant 200 and the reference app's ``GET /v1/ping``
   through its whole middleware stack (embedded mode).
2. Through ``fleetkit serve`` (embedded, one uvicorn worker), with wrk: the concurrency limit is
   pinned to 2 and two held requests take both slots, so every ``GET /v1/ping`` is refused;
   the baseline is ``GET /health/live`` on the same server (the cheapest 200 it serves).
   CPU per answer = 1 / answers-per-second, since one worker saturates one core.
3. The same on stock uvicorn (``--http httptools``, same app): its protocol has no door, so
   the refusal goes through the ASGI stack; ``fleetkit serve``'s protocol writes it before
   the app runs (``fleetkit.overload.server``). The ratio is what the door saves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Report


async def _send(message: Any) -> None:
    return None


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _constant(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _scope(path: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"t"), (b"user-agent", b"bench"),
                                         (b"accept", b"*/*")],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {}}


async def _per_call(app: Any, path: str, calls: int) -> float:
    for _ in range(min(calls, 2000)):  # warm caches
        await app(_scope(path), _receive, _send)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            await app(_scope(path), _receive, _send)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


async def in_process(report: Report, calls: int) -> None:
    from fleetkit.app import create_app
    from fleetkit.config import load_settings
    from fleetkit.overload import AdmissionController, OverloadMiddleware

    report.add("bare ASGI call (constant 200)", await _per_call(_constant, "/x", calls) * 1e6,
               "us/request")
    # A queue deadline longer than the run: the one queue place stays taken, all else refused.
    controller = AdmissionController(min_limit=1, max_limit=1, queue_timeout=60,
                                     target_delay=10)
    refusing = OverloadMiddleware(_constant, controller=controller)
    controller.in_flight = 1  # every slot taken...
    controller.enqueue(refusing.classifier(_scope("/x")), lambda reason: None)  # ...queue full
    report.add("refusal (OverloadMiddleware, 503)",
               await _per_call(refusing, "/v1/me", calls) * 1e6, "us/request",
               baseline="bare ASGI call (constant 200)")
    admitting = OverloadMiddleware(_constant, controller=AdmissionController())
    report.add("admission overhead (admitted, constant 200)",
               await _per_call(admitting, "/v1/me", calls) * 1e6, "us/request",
               baseline="bare ASGI call (constant 200)")
    await refusing.sampler.aclose()
    await admitting.sampler.aclose()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/app.db",
                                  "AUDIT_SPOOL_DIR": f"{tmp}/spool", "LOG_LEVEL": "warning",
                                  "RATE_LIMIT_IP": "100000000/second"})
        app = create_app(settings, install_signal_handlers=False)
        async with app.router.lifespan_context(app):
            report.add("reference app GET /v1/ping (whole stack)",
                       await _per_call(app, "/v1/ping", max(1000, calls // 20)) * 1e6,
                       "us/request")
    refusal = report.get("refusal (OverloadMiddleware, 503)").value
    stack = report.get("reference app GET /v1/ping (whole stack)").value
    report.check("refusal costs under 10% of the cheapest full request", refusal < 0.1 * stack,
                 f"{refusal:.1f} us vs {stack:.1f} us")


def _wrk(url: str, seconds: int, connections: int) -> tuple[float, int, int]:
    """(answers/s, answers, non-2xx answers) of one wrk run."""
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, total, int(found.group(1)) if found else 0


def through_server(report: Report, seconds: int, connections: int, *, door: bool = True) -> None:
    from tests.support import free_port, wait_port

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="fleetkit-refusal-"))
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/app.db",
           "AUDIT_SPOOL_DIR": str(tmp / "spool"), "LOG_LEVEL": "warning",
           "RATE_LIMIT_IP": "100000000/second", "OVERLOAD_MIN_LIMIT": "2",
           "OVERLOAD_MAX_LIMIT": "2"}
    for key in ("REDIS_URL", "DATABASE_READ_URLS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(key, None)
    command = [sys.executable, "-m", "fleetkit.cli", "serve", "--port", str(port)] if door else [
        sys.executable, "-m", "uvicorn", "fleetkit.app:app_from_env", "--factory", "--port",
        str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning", "--no-proxy-headers"]
    proc = subprocess.Popen(command, env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    holders = []
    try:
        wait_port(port, timeout=60)
        for _ in range(2):  # two requests whose bodies never come hold both slots
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/auth/register HTTP/1.1\r\nHost: t\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            holders.append(sock)
        time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        if not door:
            refused, total, not_ok = _wrk(f"{base}/v1/ping", seconds, connections)
            report.add("stock uvicorn: GET /v1/ping refused (503, ASGI path)", refused,
                       "answers/s")
            report.add("fleetkit serve refusals vs stock uvicorn's",
                       report.get("server: GET /v1/ping refused (503)").value, "answers/s",
                       baseline="stock uvicorn: GET /v1/ping refused (503, ASGI path)")
            report.check("every GET /v1/ping refused (stock uvicorn)", not_ok == total,
                         f"{not_ok} of {total}")
            return
        live, _, live_bad = _wrk(f"{base}/health/live", seconds, connections)
        refused, total, not_ok = _wrk(f"{base}/v1/ping", seconds, connections)
        report.add("server: GET /health/live answered", live, "answers/s")
        report.add("server: GET /v1/ping refused (503)", refused, "answers/s",
                   baseline="server: GET /health/live answered")
        report.add("server: CPU per refusal", 1e6 / refused, "us/answer")
        report.add("server: CPU per probe", 1e6 / live, "us/answer")
        report.check("every probe 200, every GET /v1/ping refused",
                     live_bad == 0 and not_ok == total,
                     f"probes non-2xx {live_bad}; ping {not_ok} of {total} refused")
        report.check("a refusal is cheaper than the cheapest probe", refused > live,
                     f"{refused:,.0f}/s vs {live:,.0f}/s")
    finally:
        for sock in holders:
            sock.close()
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    report = Report("overload_refusal", "Cost of an admission-control refusal")
    asyncio.run(in_process(report, args.calls))
    if shutil.which("wrk"):
        through_server(report, args.seconds, args.connections)
        through_server(report, args.seconds, args.connections, door=False)
    else:
        report.check("wrk installed", False, "apt-get install wrk for the server half")
    report.save(chart_unit="us/request")
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
