"""The admission algorithm on a fake clock: spike, recovery, CoDel queue, priorities."""

from __future__ import annotations

import pytest

from fleetkit.errors import ConfigError
from fleetkit.overload import ADMITTED, QUEUE, REFUSED, AdmissionController, Priority
from tests.overload.sim import Clock, Server, run


def test_a_spike_is_contained_within_a_second_and_the_excess_refused() -> None:
    clock = Clock()
    server = Server(capacity=1000.0)
    # Start from a limit far too high (as after a long calm period at a bigger size).
    ctrl = AdmissionController(clock=clock, initial_limit=1024, max_limit=1024)
    run(ctrl, clock, server, rate=500, seconds=2)
    assert server.refused_total() == 0  # half of capacity: nothing is refused
    spike = run(ctrl, clock, server, rate=3000, seconds=5)
    assert spike.refused > 0
    # Within a second of the spike the loop lag is back near its target, and stays there.
    settled = spike.after(1.0)
    assert settled.mean_lag <= 1.5 * ctrl.target_delay, settled.mean_lag
    assert settled.max_in_flight <= 200
    # ...while the instance keeps serving about its capacity (the goodput target is 80%).
    assert settled.served_per_second >= 0.8 * server.capacity
    # Admitted requests meet the latency target.
    assert settled.p95_latency <= ctrl.target_latency


def test_after_a_spike_nothing_is_refused_and_latency_recovers() -> None:
    clock = Clock()
    server = Server(capacity=1000.0)
    ctrl = AdmissionController(clock=clock)
    run(ctrl, clock, server, rate=3000, seconds=5)
    assert ctrl.shedding()
    calm = run(ctrl, clock, server, rate=500, seconds=5)
    # The queue drains at once: from the first half second on every request is admitted.
    assert calm.after(0.5).refused == 0
    assert calm.after(0.5).p95_latency < 0.05
    clock.advance(ctrl.shed_memory + 0.1)
    assert not ctrl.shedding()


def test_the_limit_recovers_once_the_lag_goes_away() -> None:
    clock = Clock()
    server = Server(capacity=1000.0, step=0.002)  # each request in flight adds 2 ms of lag
    ctrl = AdmissionController(clock=clock, initial_limit=200)
    # Far too much concurrency for this loop: the limit comes down to what keeps the lag low.
    run(ctrl, clock, server, rate=3000, seconds=2)
    assert ctrl.limit < 20
    server.step = 0.0002  # the expensive work is gone (e.g. a cache warmed up)
    # 950/s needs about 40 requests in flight in this model (Little's law).
    run(ctrl, clock, server, rate=950, seconds=3)
    # The limit grows again as far as the load needs it, and nothing is refused any more.
    assert ctrl.limit > 30
    assert run(ctrl, clock, server, rate=950, seconds=1).refused == 0


def test_external_lag_does_not_pin_the_limit_at_its_floor() -> None:
    clock = Clock()
    server = Server(capacity=1000.0)
    ctrl = AdmissionController(clock=clock, initial_limit=200)
    # 60 ms of lag whatever the concurrency (CPU steal, CFS throttling): three times the target.
    server.extra_lag = 0.06
    run(ctrl, clock, server, rate=950, seconds=3)
    served = run(ctrl, clock, server, rate=950, seconds=3)
    # Shedding cannot lower that lag, so the instance keeps serving what it can.
    assert served.refused < 0.05 * len(served.requests), served.refused
    assert ctrl.limit > ctrl.min_limit


def test_lag_from_refusing_does_not_cut_goodput_for_more_refusals() -> None:
    clock = Clock()
    # 20 ms of I/O per request: few in flight serve little (8 in flight: ~290/s).
    server = Server(capacity=1000.0, base=0.02)
    ctrl = AdmissionController(clock=clock, initial_limit=100)
    # Refusing costs the loop time too: at 2,000 refusals/s, 30 ms of lag, 1.5x the target,
    # however few requests are admitted. Cutting the limit for it would only refuse more.
    server.refusal_lag = 0.00015
    run(ctrl, clock, server, rate=3000, seconds=2)
    loaded = run(ctrl, clock, server, rate=3000, seconds=5)
    assert loaded.refused > 0
    assert loaded.served_per_second >= 0.7 * server.capacity, loaded.served_per_second
    assert loaded.p95_latency <= ctrl.target_latency
    # The lag it tolerates for that is bounded: never more than 2.5 x the target.
    assert 1.5 * ctrl._lag_floor <= 2.5 * ctrl.target_delay + 1e-9


def test_the_limit_does_not_grow_while_it_is_not_used() -> None:
    clock = Clock()
    server = Server(capacity=1000.0)
    ctrl = AdmissionController(clock=clock, initial_limit=32)
    run(ctrl, clock, server, rate=100, seconds=3)
    assert ctrl.limit == 32  # a quiet instance keeps no headroom it never proved it can serve


def test_lower_classes_are_refused_first_and_critical_is_never_starved() -> None:
    clock = Clock()
    server = Server(capacity=1000.0)
    ctrl = AdmissionController(clock=clock)
    mix = {Priority.CRITICAL: 0.05, Priority.NORMAL: 0.65, Priority.SHEDDABLE: 0.30}
    result = run(ctrl, clock, server, rate=4000, seconds=5, mix=mix)
    offered = result.offered_by_class
    refused = result.refused_by_class
    share = {p: refused[p] / offered[p] for p in mix}
    assert share[Priority.CRITICAL] == 0, share  # 200/s of logins all get in
    assert share[Priority.SHEDDABLE] > share[Priority.NORMAL] > 0, share
    assert share[Priority.SHEDDABLE] > 0.95, share


def test_critical_gets_in_even_when_every_slot_is_taken() -> None:
    clock = Clock()
    ctrl = AdmissionController(clock=clock, min_limit=4, max_limit=4)
    for _ in range(4):
        assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    assert ctrl.try_admit(Priority.NORMAL) == QUEUE
    # A reserve above the limit for critical requests (at least one slot).
    assert ctrl.try_admit(Priority.CRITICAL) == ADMITTED
    assert ctrl.try_admit(Priority.CRITICAL) == QUEUE


def test_never_shed_requests_are_not_counted() -> None:
    ctrl = AdmissionController(clock=Clock(), min_limit=1, max_limit=1)
    assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    for _ in range(100):
        assert ctrl.try_admit(Priority.NEVER) == ADMITTED
    assert ctrl.in_flight == 1


def test_codel_queue_is_fifo_until_it_stands_then_lifo_with_a_short_deadline() -> None:
    clock = Clock()
    ctrl = AdmissionController(clock=clock, min_limit=3, max_limit=3, queue_timeout=0.05,
                               target_delay=0.01, target_latency=100)
    outcomes: dict[str, str | None] = {}

    def queue(name: str) -> None:
        def resolve(reason: str | None) -> None:
            assert name not in outcomes, "a waiter is called once"
            outcomes[name] = reason
        assert ctrl.try_admit(Priority.NORMAL) == QUEUE
        ctrl.enqueue(Priority.NORMAL, resolve)

    for _ in range(3):
        assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    queue("a")
    clock.advance(0.001)
    queue("b")
    clock.advance(0.001)
    ctrl.release(clock())
    assert outcomes == {"a": None}  # FIFO while the queue is young
    # The queue has not been empty for longer than queue_timeout: it is a standing queue.
    clock.advance(0.058)
    queue("d")
    clock.advance(0.001)
    queue("e")
    assert ctrl.try_admit(Priority.NORMAL) == REFUSED  # the queue holds at most `limit`
    clock.advance(0.001)
    ctrl.release(clock())
    # "b" waited past the standing queue's short deadline; the newest goes first (LIFO).
    assert outcomes == {"a": None, "b": "queue_timeout", "e": None}
    clock.advance(0.013)
    ctrl.tick(0.0, interval=0.01)
    assert outcomes["d"] == "queue_timeout"
    assert ctrl.queued == 0 and ctrl.in_flight == 3


def test_a_full_queue_evicts_its_least_important_waiter() -> None:
    clock = Clock()
    ctrl = AdmissionController(clock=clock, min_limit=2, max_limit=2)
    outcomes: list[tuple[str, str | None]] = []
    for _ in range(2):
        assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    assert ctrl.try_admit(Priority.CRITICAL) == ADMITTED  # the reserve
    for name in ("n1", "n2"):
        assert ctrl.try_admit(Priority.NORMAL) == QUEUE
        ctrl.enqueue(Priority.NORMAL, lambda r, n=name: outcomes.append((n, r)))
    assert ctrl.try_admit(Priority.NORMAL) == REFUSED  # full, nothing less important to evict
    assert ctrl.try_admit(Priority.CRITICAL) == QUEUE  # evicts the oldest normal waiter
    assert outcomes == [("n1", "evicted")]
    ctrl.enqueue(Priority.CRITICAL, lambda r: outcomes.append(("c", r)))
    ctrl.release(clock())
    assert outcomes[-1] == ("c", None)  # the critical waiter goes first
    assert ctrl.refused[Priority.NORMAL] == 2


def test_sheddable_is_refused_at_once_while_overloaded() -> None:
    clock = Clock()
    ctrl = AdmissionController(clock=clock, min_limit=1, max_limit=2, initial_limit=2)
    assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    assert ctrl.try_admit(Priority.SHEDDABLE) == QUEUE  # a burst, not yet overload
    ctrl.enqueue(Priority.SHEDDABLE, lambda reason: None)
    ctrl.tick(0.5, interval=0.01)  # the loop lags far over target
    clock.advance(ctrl.window)
    ctrl.tick(0.5, interval=0.01)
    assert ctrl.overloaded
    assert ctrl.try_admit(Priority.SHEDDABLE) == REFUSED
    assert ctrl.try_admit(Priority.NORMAL) == QUEUE  # evicting the queued sheddable one
    assert ctrl.refused[Priority.SHEDDABLE] == 2


def test_a_discarded_waiter_leaves_the_queue() -> None:
    clock = Clock()
    ctrl = AdmissionController(clock=clock, min_limit=1, max_limit=1)
    assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    called: list[str | None] = []
    assert ctrl.try_admit(Priority.NORMAL) == QUEUE
    waiter = called.append
    ctrl.enqueue(Priority.NORMAL, waiter)
    assert ctrl.discard(waiter) and ctrl.queued == 0
    assert not ctrl.discard(waiter)
    ctrl.release(clock())
    assert called == [] and ctrl.in_flight == 0


async def test_health_warns_while_shedding() -> None:
    clock = Clock()
    ctrl = AdmissionController(clock=clock, min_limit=1, max_limit=1)
    assert (await ctrl.health()).status == "pass"
    ctrl.try_admit(Priority.NORMAL)
    ctrl.try_admit(Priority.NORMAL)
    ctrl.enqueue(Priority.NORMAL, lambda r: None)
    assert ctrl.try_admit(Priority.NORMAL) == REFUSED
    status = await ctrl.health()
    assert status.status == "warn" and status.details["refused"] == {"normal": 1}
    clock.advance(ctrl.shed_memory + 1)
    assert (await ctrl.health()).status == "pass"


@pytest.mark.parametrize("kwargs", [{"min_limit": 0}, {"min_limit": 10, "max_limit": 5},
                                    {"target_delay": 0}, {"window": -1}, {"queue_timeout": -1}])
def test_bad_options_raise_a_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        AdmissionController(**kwargs)  # type: ignore[arg-type]


def test_a_standing_queue_holds_only_what_completions_drain_within_target_delay() -> None:
    clock = Clock()
    ctrl = AdmissionController(clock=clock, min_limit=10, max_limit=10, target_delay=0.01,
                               queue_timeout=0.05, target_latency=100)
    for _ in range(10):
        assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    for _ in range(20):  # 200 completions/s: 2 of them in target_delay
        ctrl.release(clock())
        assert ctrl.try_admit(Priority.NORMAL) == ADMITTED
    clock.advance(ctrl.window)
    for _ in range(3):  # a young queue holds up to the limit
        assert ctrl.try_admit(Priority.NORMAL) == QUEUE
        ctrl.enqueue(Priority.NORMAL, lambda reason: None)
    clock.advance(0.06)  # not empty for longer than queue_timeout: standing
    # A fourth waiter would only time out after target_delay: refused now, cheaply.
    assert ctrl.try_admit(Priority.NORMAL) == REFUSED
    assert ctrl.queued == 3
