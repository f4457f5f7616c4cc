"""Shared benchmark runner: throughput/latency loops, a printed table, JSON and a PNG chart.

Machines here are shared and noisy, so a benchmark never reports an absolute number alone: each
one measures its baseline in the same run and reports ``ratio = value / baseline``. Results go to
``bench/results/<name>.json`` and ``<name>.png``; the capacity model reads the JSON files.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Measurement:
    label: str
    value: float
    unit: str
    baseline: str | None = None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Throughput:
    ops: int
    seconds: float
    errors: int
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]


async def run_concurrent(op: Callable[[int], Awaitable[Any]], *, concurrency: int,
                         seconds: float = 2.0, warmup: float = 0.3,
                         record_latency: bool = False, stop_on_error: bool = False) -> Throughput:
    """Run ``op(worker_index)`` in ``concurrency`` tasks for ``seconds`` after a warm-up."""
    deadline_box = [time.perf_counter() + warmup]
    counting = [False]
    ops = [0]
    errors = [0]
    latencies: list[float] = []

    async def worker(i: int) -> None:
        while True:
            now = time.perf_counter()
            if now >= deadline_box[0]:
                if counting[0]:
                    return
                await asyncio.sleep(0)
                continue
            start = now
            try:
                await op(i)
            except Exception:
                errors[0] += 1
                if stop_on_error:
                    raise
            if counting[0]:
                ops[0] += 1
                if record_latency:
                    latencies.append(time.perf_counter() - start)

    async def clock() -> None:
        await asyncio.sleep(warmup)
        counting[0] = True
        ops[0] = 0
        errors[0] = 0
        latencies.clear()
        deadline_box[0] = time.perf_counter() + seconds

    start_box: list[float] = []

    async def timed() -> None:
        await clock()
        start_box.append(time.perf_counter())

    await asyncio.gather(timed(), *(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start_box[0]
    return Throughput(ops[0], elapsed, errors[0], latencies)


class Report:
    """Collects measurements of one benchmark; ``save()`` prints, writes JSON and a chart."""

    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.title = title
        self.measurements: list[Measurement] = []
        self.checks: list[Check] = []
        self.info: dict[str, Any] = {}

    def add(self, label: str, value: float, unit: str, *, baseline: str | None = None,
            **extra: Any) -> Measurement:
        ratio = None
        if baseline is not None:
            base = self.get(baseline)
            ratio = value / base.value if base.value else None
        m = Measurement(label, value, unit, baseline, ratio, extra)
        self.measurements.append(m)
        return m

    def get(self, label: str) -> Measurement:
        for m in self.measurements:
            if m.label == label:
                return m
        raise KeyError(label)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def table(self) -> str:
        rows = [("measurement", "value", "unit", "ratio vs baseline")]
        for m in self.measurements:
            ratio = f"{m.ratio:.2f}x {m.baseline}" if m.ratio is not None else ""
            rows.append((m.label, f"{m.value:,.2f}", m.unit, ratio))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for c in self.checks:
            lines.append(f"[{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        return "\n".join(lines)

    def save(self, *, chart_unit: str | None = None) -> Path:
        """Print the table; write ``<name>.json`` and ``<name>.png``; return the JSON path."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        print(f"\n== {self.title} ==")
        print(self.table())
        data = {
            "name": self.name, "title": self.title,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "platform": platform.platform()},
            "info": self.info,
            "measurements": [asdict(m) for m in self.measurements],
            "checks": [asdict(c) for c in self.checks],
        }
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        self._chart(chart_unit)
        print(f"wrote {path.relative_to(RESULTS.parent.parent)} and {self.name}.png")
        return path

    def _chart(self, unit: str | None) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        chosen = [m for m in self.measurements if unit is None or m.unit == unit]
        if not chosen:
            return
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(chosen) + 1.5))
        labels = [m.label for m in chosen]
        values = [m.value for m in chosen]
        bars = ax.barh(labels, values, color=["#4c72b0" if m.baseline is None else "#dd8452"
                                              for m in chosen])
        for bar, m in zip(bars, chosen, strict=True):
            text = f" {m.value:,.0f}" if m.value >= 100 else f" {m.value:,.3g}"
            if m.ratio is not None:
                text += f"  ({m.ratio:.2f}x)"
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, text, va="center",
                    fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(chosen[0].unit)
        ax.set_title(self.title, fontsize=10)
        ax.margins(x=0.25)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{self.name}.png", dpi=100)
        plt.close(fig)

    def exit_code(self) -> int:
        """0 when every check passed (benchmarks print FAIL lines but CI does not run them)."""
        return 0 if all(c.ok for c in self.checks) else 1


def machine_cpu_seconds() -> float:
    """CPU time used by the whole machine so far (every process: user + system), in seconds."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system, all threads) so far of the running processes of a process
    group (a server started with ``start_new_session=True`` and the workers it forked)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
