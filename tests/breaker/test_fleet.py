"""Three real processes share one breaker through Redis (the issue's "must show")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from tests.breaker.conftest import all_of
from tests.support import REDIS_URL

# poll_interval is long on purpose: an idle closed instance only learns changes by push.
OPTIONS = {"failure_rate_threshold": 0.5, "minimum_calls": 20, "window_seconds": 30,
           "wait_open_seconds": 1.0, "half_open_permits": 3, "flush_interval": 0.05,
           "poll_interval": 30}


async def test_fleet_trips_half_opens_and_closes_together(
    fleet_factory: Callable[..., Any], prefix: str, redis: Redis
) -> None:
    fleet = await fleet_factory(REDIS_URL, prefix, **OPTIONS)
    a, b, c = fleet
    # 8 failures each: no instance alone reaches minimum_calls=20, the fleet does (24).
    for w in fleet:
        assert (await w("fail", n=8))["rejected"] == 0
    assert all(r["ok"] for r in await all_of(fleet, "wait", state="open"))

    # After the wait every instance sees half_open; the fleet admits exactly 3 trial calls.
    assert all(r["ok"] for r in await all_of(fleet, "wait", state="half_open"))
    waves = await all_of(fleet, "wave", n=4)
    assert sum(r["entered"] for r in waves) == 3
    assert sum(r["rejected"] for r in waves) == 12 - 3
    # The trials succeed: closed everywhere.
    finished = await all_of(fleet, "finish", outcome="success")
    assert sorted(x for r in finished for x in r["results"]).count("ok") == 3
    assert all(r["ok"] for r in await all_of(fleet, "wait", state="closed"))
    assert all(r["admitted"] for r in await all_of(fleet, "try"))

    # forced_open on one instance rejects on the others (pushed: their poll is 30 s away).
    assert (await a("force_open"))["result"] == "forced_open"
    assert all(r["ok"] for r in await all_of([b, c], "wait", state="forced_open", timeout=10))
    assert [r["state"] for r in await all_of([b, c], "try")] == ["forced_open", "forced_open"]
    # An operator close applies fleet-wide too.
    await c("force_close")
    assert all(r["ok"] for r in await all_of(fleet, "wait", state="closed"))
    state = await redis.hgetall(f"{{{prefix}:shared}}:state")
    assert state[b"state"] == b"closed"


async def test_stale_generation_result_is_ignored(
    fleet_factory: Callable[..., Any], prefix: str, redis: Redis
) -> None:
    fleet = await fleet_factory(REDIS_URL, prefix, **OPTIONS)
    a, b, _ = fleet
    for w in fleet:
        await w("fail", n=8)
    assert all(r["ok"] for r in await all_of(fleet, "wait", state="half_open"))
    # a holds a trial lease of the current generation...
    held = await a("wave", n=1)
    assert held["entered"] == 1
    old_gen = held["gen"]
    # ...then an operator closes the breaker: a new generation.
    await b("force_close")
    assert all(r["ok"] for r in await all_of(fleet, "wait", state="closed"))
    key = f"{{{prefix}:shared}}:state"
    before = await redis.hgetall(key)
    assert int(before[b"gen"]) > old_gen
    # The old trial fails: in its own generation that would re-open the breaker; now it is stale.
    finished = await a("finish", outcome="failure")
    assert finished["results"] == ["failed"]
    after = await redis.hgetall(key)
    assert after[b"state"] == b"closed"
    assert after[b"version"] == before[b"version"]
    assert all(r["admitted"] for r in await all_of(fleet, "try"))
