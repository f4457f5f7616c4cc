"""Registry semantics: deadline, single-flight, damping, warn vs fail, details."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from fleetkit.health import ComponentStatus, HealthMiddleware, HealthRegistry, component_check


async def not_found(scope: object, receive: object, send: object) -> None:
    raise AssertionError("health paths must not reach the app")


def client_for(registry: HealthRegistry, *, show_details: bool = True) -> httpx.AsyncClient:
    app = HealthMiddleware(not_found, registry=registry, show_details=show_details)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


class Counting:
    """A check that counts its runs; ``hang`` makes the next runs wait forever."""

    def __init__(self, status: str = "pass", delay: float = 0.01) -> None:
        self.status = status
        self.delay = delay
        self.hang = False
        self.starts: list[float] = []

    async def __call__(self) -> ComponentStatus:
        self.starts.append(time.monotonic())
        if self.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay)
        return ComponentStatus(self.status, "datastore", observed_value=1.5, observed_unit="ms",  # type: ignore[arg-type]
                               output=f"raw {self.status}")


@pytest.fixture
async def registry() -> AsyncIterator[HealthRegistry]:
    reg = HealthRegistry(interval=0.3, deadline=0.05, fail_after=1, recover_after=1)
    yield reg
    await reg.aclose()


async def test_hanging_check_does_not_delay_endpoints(registry: HealthRegistry) -> None:
    dep = Counting()
    registry.add("db", dep, critical=True, timeout=30, measurement="responseTime")
    await registry.start()
    async with client_for(registry) as client:
        assert (await client.get("/health/ready")).status_code == 200
        dep.hang = True
        # Let the background loop start the (now hanging) refresh and overrun the deadline.
        for _ in range(100):
            await asyncio.sleep(0.05)
            if dep.starts[-1] > dep.starts[0] and time.monotonic() - dep.starts[-1] > 0.1:
                break
        assert len(dep.starts) == 2
        for path in ("/health/ready", "/health", "/health/live"):
            start = time.monotonic()
            r = await client.get(path)
            elapsed = time.monotonic() - start
            assert elapsed < 1.0, f"{path} took {elapsed:.3f}s with a hanging check"
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/health+json"
        body = (await client.get("/health")).json()
        entry = body["checks"]["db:responseTime"][0]
        assert entry["stale"] is True and entry["status"] == "pass"
        assert entry["output"].startswith("stale")
        assert body["notes"] == ["stale results: db"]
        assert len(dep.starts) == 2  # requests never started a second concurrent run


async def test_check_that_hangs_from_the_start_fails_readiness_within_deadline(
        registry: HealthRegistry) -> None:
    dep = Counting()
    dep.hang = True
    registry.add("db", dep, critical=True, timeout=30)
    async with client_for(registry) as client:
        start = time.monotonic()
        r = await client.get("/health/ready")
        assert time.monotonic() - start < 1.0
    assert r.status_code == 503
    entry = r.json()["checks"]["db:status"][0]
    assert entry["stale"] is True and "no result yet" in entry["output"]


async def test_check_timeout_reports_fail(registry: HealthRegistry) -> None:
    dep = Counting()
    dep.hang = True
    registry.add("slow", dep, critical=True, timeout=0.1)
    await registry.run_all()
    report = await registry.ready()
    assert report.status == "fail"
    assert report.checks[0].result is not None
    assert report.checks[0].result.output == "timed out after 0.1s"


async def test_200_concurrent_readiness_requests_run_each_check_once_per_interval() -> None:
    # A generous deadline: under this burst on a busy machine the first run may take longer
    # than 80 ms, and this test is about how many runs happen, not about the deadline.
    registry = HealthRegistry(interval=0.4, deadline=2.0)
    deps = {name: Counting(delay=0.02) for name in ("redis", "db", "audit")}
    for name, dep in deps.items():
        registry.add(name, dep, critical=True)
    try:
        async with client_for(registry) as client:
            answers = await asyncio.gather(*(client.get("/health/ready") for _ in range(200)))
            assert [r.status_code for r in answers] == [200] * 200
            assert {name: len(d.starts) for name, d in deps.items()} == {
                "redis": 1, "db": 1, "audit": 1}
            # Keep bursting for a few intervals: runs stay one per check per interval.
            began = time.monotonic()
            while time.monotonic() - began < 1.3:
                answers = await asyncio.gather(*(client.get("/health/ready") for _ in range(200)))
                assert all(r.status_code == 200 for r in answers)
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - deps["redis"].starts[0]
        for name, dep in deps.items():
            assert len(dep.starts) >= 2, name  # it did revalidate
            # At most one run per started interval (~16 bursts = 3200 requests went by).
            assert len(dep.starts) <= int(elapsed / 0.4) + 1, (name, dep.starts)
    finally:
        await registry.aclose()


async def test_flapping_is_damped_by_thresholds() -> None:
    registry = HealthRegistry(interval=60, fail_after=3, recover_after=2)
    dep = Counting(delay=0)
    registry.add("redis", dep, critical=True)
    seen = []
    for raw in ["pass", "fail", "fail", "fail", "pass", "fail", "pass", "pass"]:
        dep.status = raw
        await registry.run_all()
        seen.append((await registry.ready()).status)
    await registry.aclose()
    assert seen == ["pass", "pass", "pass", "fail", "fail", "fail", "fail", "pass"]


async def test_warn_is_200_and_noncritical_failure_only_degrades() -> None:
    registry = HealthRegistry(interval=60)
    registry.add("redis", Counting("warn", delay=0), critical=True)
    registry.add("geo", Counting("fail", delay=0), critical=False)
    await registry.run_all()
    async with client_for(registry) as client:
        ready, full = await client.get("/health/ready"), await client.get("/health")
    await registry.aclose()
    assert ready.status_code == 200 and ready.json()["status"] == "warn"
    assert "geo:status" not in ready.json()["checks"]
    assert full.status_code == 200 and full.json()["status"] == "warn"
    geo = full.json()["checks"]["geo:status"][0]
    assert geo["status"] == "fail" and geo["critical"] is False
    redis = full.json()["checks"]["redis:status"][0]
    assert redis["componentId"] == "redis" and redis["componentType"] == "datastore"
    assert redis["observedValue"] == 1.5 and redis["observedUnit"] == "ms"
    assert redis["time"].endswith("+00:00") and redis["output"] == "raw warn"


async def test_details_hidden_unless_configured() -> None:
    registry = HealthRegistry(interval=60)
    registry.add("redis", Counting("fail", delay=0), critical=True)
    await registry.run_all()
    async with client_for(registry, show_details=False) as client:
        r = await client.get("/health")
        head = await client.head("/health/ready")
        post = await client.post("/health/ready")
    await registry.aclose()
    assert r.status_code == 503
    assert orjson.loads(r.content) == {"status": "fail"}
    assert head.status_code == 503 and head.content == b""
    assert post.status_code == 405


async def test_component_adapter_and_raising_checks() -> None:
    class Breaker:
        async def health(self) -> ComponentStatus:
            return ComponentStatus("warn", "breaker", observed_value="half_open",
                                   output="payments half open")

    async def broken() -> ComponentStatus:
        raise RuntimeError("boom")

    registry = HealthRegistry(interval=60)
    registry.add("breaker-payments", component_check(Breaker()), critical=False,
                 measurement="state")
    registry.add("broken", broken, critical=False)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("broken", broken, critical=False)
    await registry.run_all()
    report = await registry.health()
    await registry.aclose()
    by_name = {c.name: c for c in report.checks}
    assert by_name["breaker-payments"].status == "warn"
    assert by_name["breaker-payments"].component_type == "breaker"
    assert by_name["broken"].status == "fail"
    assert by_name["broken"].result is not None
    assert by_name["broken"].result.output == "RuntimeError: boom"
    assert report.status == "warn"


async def test_liveness_reports_loop_lag_and_worker_callbacks(registry: HealthRegistry) -> None:
    alive = [True]
    registry.add_liveness("audit-worker", lambda: alive[0])
    await registry.start()
    await asyncio.sleep(0.25)  # a few ticks of the lag monitor
    async with client_for(registry) as client:
        ok = await client.get("/health/live")
        alive[0] = False
        dead = await client.get("/health/live")
    assert ok.status_code == 200
    lag = ok.json()["checks"]["event-loop:lag"][0]
    assert lag["observedUnit"] == "ms" and isinstance(lag["observedValue"], float)
    assert dead.status_code == 503
    assert dead.json()["checks"]["audit-worker:alive"][0]["status"] == "fail"


async def test_shutdown_flag_fails_readiness_only(registry: HealthRegistry) -> None:
    registry.add("redis", Counting(delay=0), critical=True)
    await registry.run_all()
    registry.begin_shutdown()
    async with client_for(registry, show_details=False) as client:
        ready, live = await client.get("/health/ready"), await client.get("/health/live")
    assert ready.status_code == 503
    assert ready.json() == {"status": "fail", "output": "shutting down"}
    assert live.status_code == 200


def test_from_settings_uses_health_settings() -> None:
    from fleetkit.config import load_settings

    settings = load_settings({"HEALTH_INTERVAL": "2.5", "HEALTH_TIMEOUT": "0.05"})
    registry = HealthRegistry.from_settings(settings, fail_after=4)
    assert (registry.interval, registry.deadline, registry.fail_after) == (2.5, 0.05, 4)
