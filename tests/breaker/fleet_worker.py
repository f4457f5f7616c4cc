"""One fleet member for the multi-process tests: JSON commands on stdin, JSON replies on stdout.

    python -m tests.breaker.fleet_worker <redis url> <key prefix> <options json>
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from fleetkit.breaker import CircuitBreaker, CircuitOpenError
from fleetkit.redis import create_client


class TrialFailed(Exception):
    pass


async def main(url: str, prefix: str, options: dict[str, Any]) -> None:
    client = create_client(url)
    breaker = CircuitBreaker("shared", redis=client, key_prefix=prefix, **options)
    await breaker.start()
    loop = asyncio.get_running_loop()
    gate = asyncio.Event()
    fail = [False]
    held: list[asyncio.Task[str]] = []
    counts = {"entered": 0, "rejected": 0}

    async def body() -> None:
        counts["entered"] += 1
        await gate.wait()
        if fail[0]:
            raise TrialFailed

    async def one() -> str:
        try:
            await breaker.call(body)
        except CircuitOpenError:
            counts["rejected"] += 1
            return "rejected"
        except TrialFailed:
            return "failed"
        return "ok"

    async def failing() -> None:
        raise RuntimeError("downstream down")

    def snapshot() -> dict[str, Any]:
        return {"state": breaker.state, "version": breaker.version, "gen": breaker.generation}

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        op = cmd["op"]
        reply: dict[str, Any] = {}
        if op == "fail":
            rejected = 0
            for _ in range(cmd["n"]):
                try:
                    await breaker.call(failing)
                except RuntimeError:
                    pass
                except CircuitOpenError:
                    rejected += 1
            await breaker.flush()
            reply = {"rejected": rejected}
        elif op == "wait":
            deadline = time.monotonic() + cmd.get("timeout", 10)
            while breaker.state != cmd["state"] and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            reply = {"ok": breaker.state == cmd["state"]}
        elif op == "wave":
            counts.update(entered=0, rejected=0)
            gate.clear()
            held[:] = [asyncio.create_task(one()) for _ in range(cmd["n"])]
            deadline = time.monotonic() + 10
            while counts["entered"] + counts["rejected"] < cmd["n"] and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            reply = dict(counts)
        elif op == "finish":
            fail[0] = cmd["outcome"] == "failure"
            gate.set()
            reply = {"results": await asyncio.gather(*held)}
        elif op == "try":
            try:
                async with breaker:
                    pass
                reply = {"admitted": True}
            except CircuitOpenError as exc:
                reply = {"admitted": False, "state": exc.state}
        elif op in ("force_open", "disable", "force_close", "reset"):
            reply = {"result": await getattr(breaker, op)()}
        elif op == "exit":
            break
        reply.update(snapshot())
        print(json.dumps(reply), flush=True)
    await breaker.aclose()
    await client.aclose()
    print(json.dumps({"bye": True}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
