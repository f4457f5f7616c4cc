"""A fake clock and a simulated single-event-loop server for the admission algorithm's tests.

The server model: a request admitted while ``n`` requests are in flight takes
``base + n / capacity`` seconds (the loop shares one CPU), and the event loop lags
``n * step`` seconds (each in-flight request runs a step per loop iteration), plus
``extra_lag``, plus ``refusal_lag`` for each request refused in the last 100 ms (the loop's
time spent refusing, which no limit can lower). Deterministic: arrivals are evenly spaced,
classes drawn from a seeded PRNG.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field

from fleetkit.overload import ADMITTED, REFUSED, AdmissionController, Priority


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Request:
    arrived: float
    priority: Priority
    outcome: str = "pending"  # "served" | "refused"
    finished: float | None = None


@dataclass
class Result:
    start: float
    end: float
    requests: list[Request]
    lags: list[tuple[float, float]]
    in_flight: list[tuple[float, int]]

    def after(self, seconds: float) -> Result:
        t0 = self.start + seconds
        return Result(t0, self.end, [r for r in self.requests if r.arrived >= t0],
                      [x for x in self.lags if x[0] >= t0],
                      [x for x in self.in_flight if x[0] >= t0])

    @property
    def refused(self) -> int:
        return sum(r.outcome == "refused" for r in self.requests)

    @property
    def served_per_second(self) -> float:
        return sum(r.outcome == "served" for r in self.requests) / (self.end - self.start)

    @property
    def p95_latency(self) -> float:
        lat = sorted(r.finished - r.arrived for r in self.requests
                     if r.outcome == "served" and r.finished is not None)
        return lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)] if lat else 0.0

    @property
    def mean_lag(self) -> float:
        return sum(lag for _, lag in self.lags) / len(self.lags)

    @property
    def max_in_flight(self) -> int:
        return max(n for _, n in self.in_flight)

    @property
    def offered_by_class(self) -> Counter[Priority]:
        return Counter(r.priority for r in self.requests)

    @property
    def refused_by_class(self) -> Counter[Priority]:
        return Counter(r.priority for r in self.requests if r.outcome == "refused")


@dataclass
class Server:
    capacity: float  # requests/s at full CPU
    base: float = 0.002
    step: float = 0.0002
    extra_lag: float = 0.0
    refusal_lag: float = 0.0
    refusals: deque[float] = field(default_factory=deque)
    running: list[tuple[float, int, float, Request]] = field(default_factory=list)
    history: list[Request] = field(default_factory=list)
    _seq: int = 0

    def lag(self, now: float) -> float:
        while self.refusals and self.refusals[0] < now - 0.1:
            self.refusals.popleft()
        return (len(self.running) * self.step + self.extra_lag
                + len(self.refusals) * self.refusal_lag)

    def refuse(self, request: Request, now: float) -> None:
        request.outcome = "refused"
        if self.refusal_lag:
            self.refusals.append(now)

    def start(self, ctrl: AdmissionController, request: Request) -> None:
        now = ctrl.clock()
        service = self.base + len(self.running) / self.capacity
        self._seq += 1
        heapq.heappush(self.running, (now + service, self._seq, now, request))

    def refused_total(self) -> int:
        return sum(r.outcome == "refused" for r in self.history)


def run(ctrl: AdmissionController, clock: Clock, server: Server, *, rate: float,
        seconds: float, mix: dict[Priority, float] | None = None, dt: float = 0.001,
        seed: int = 7) -> Result:
    """Offer ``rate`` requests/s for ``seconds`` (classes by ``mix``) and record what happens."""
    rng = random.Random(seed)
    classes = list(mix) if mix else [Priority.NORMAL]
    weights = list(mix.values()) if mix else [1.0]
    start = clock()
    requests: list[Request] = []
    lags: list[tuple[float, float]] = []
    in_flight: list[tuple[float, int]] = []
    due = 0.0
    steps = round(seconds / dt)
    for i in range(steps):
        clock.advance(dt)
        now = clock()
        while server.running and server.running[0][0] <= now:
            _, _, began, request = heapq.heappop(server.running)
            request.outcome, request.finished = "served", now
            ctrl.release(began)
        if i % 10 == 0:
            lag = server.lag(now)
            lags.append((now, lag))
            in_flight.append((now, ctrl.in_flight))
            ctrl.tick(lag, interval=0.01)
        due += rate * dt
        while due >= 1.0:
            due -= 1.0
            request = Request(now, rng.choices(classes, weights)[0])
            requests.append(request)
            verdict = ctrl.try_admit(request.priority)
            if verdict == ADMITTED:
                server.start(ctrl, request)
            elif verdict == REFUSED:
                server.refuse(request, now)
            else:
                def resolve(reason: str | None, request: Request = request) -> None:
                    if reason is None:
                        server.start(ctrl, request)
                    else:
                        server.refuse(request, clock())
                ctrl.enqueue(request.priority, resolve)
    server.history.extend(requests)
    return Result(start, clock(), requests, lags, in_flight)
