"""Property tests: each Redis script == its in-memory twin == the naive reference model.

Time is controlled: the limiter's test-only ``clock`` is passed to the scripts in place of Redis
``TIME`` (and to the twin), so all three see the same instants.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from fleetkit.ratelimit import Limit, RateLimiter
from fleetkit.ratelimit.limiter import Algorithm
from tests.ratelimit.reference import Reference

ALGORITHMS: list[Algorithm] = ["sliding_window", "sliding_log", "gcra"]
Case = tuple[list[Limit], list[tuple[int, int, int, str]], int]

limit_st = st.builds(Limit, st.integers(1, 6), st.sampled_from([0.5, 1.0, 2.0, 5.0]))
step_st = st.tuples(
    st.one_of(st.integers(0, 50), st.integers(0, 3000)),  # ms to advance
    st.integers(0, 999),  # extra microseconds (GCRA works in us, the windows in ms)
    st.sampled_from([0, 1, 1, 1, 2, 3, 7]),  # cost (7 exceeds every amount)
    st.sampled_from(["hit", "hit", "hit", "peek"]),
)
case_st = st.tuples(
    st.lists(limit_st, min_size=1, max_size=3, unique_by=lambda lim: lim.suffix),
    st.lists(step_st, min_size=1, max_size=40),
    st.integers(0, 10**9),  # start offset (ms) so window boundaries fall anywhere
)


def _reply(decision: object) -> list[object]:
    out: list[object] = [decision.allowed]  # type: ignore[attr-defined]
    for s in decision.details:  # type: ignore[attr-defined]
        out += [s.remaining, s.reset_after, s.retry_after]
    return out


def _expected(reply: list[int]) -> list[object]:
    out: list[object] = [reply[0] == 1]
    for i in range(1, len(reply), 3):
        out += [reply[i], reply[i + 1] / 1000, None if reply[i + 2] < 0 else reply[i + 2] / 1000]
    return out


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=case_st)
async def test_redis_equals_memory_equals_reference(redis: Redis, algorithm: Algorithm,
                                                    case: Case) -> None:
    limits, steps, offset = case
    now = [1_700_000_000_000_000 + offset * 1000]
    clock = lambda: now[0] / 1_000_000  # noqa: E731
    key = f"prop:{uuid.uuid4().hex}"
    ref = Reference(algorithm, [(lim.window_ms, lim.amount) for lim in limits])
    async with RateLimiter(redis=redis, algorithm=algorithm, clock=clock, deny_cache=False,
                           prefix="t:prop:") as remote:
        local = RateLimiter(redis=None, algorithm=algorithm, clock=clock)
        for advance_ms, extra_us, cost, op in steps:
            now[0] += advance_ms * 1000 + extra_us
            if op == "hit":
                got_redis = await remote.hit_many(key, limits, cost=cost)
                got_memory = await local.hit_many(key, limits, cost=cost)
            else:
                got_redis = await remote.peek(key, limits, cost=cost)
                got_memory = await local.peek(key, limits, cost=cost)
            want = _expected(ref.decide(now[0], cost, op == "peek"))
            assert _reply(got_redis) == want, (op, cost, now[0])
            assert _reply(got_memory) == want, (op, cost, now[0])
            assert got_redis.backend == "redis"
            assert got_memory.backend == "memory"
