"""Standalone health probe for Docker ``HEALTHCHECK`` (the seed's ``src/health-check.js``).

    fleetkit healthcheck [--url http://127.0.0.1:8000/health/live] [--max-memory-percent 95]
    python -m fleetkit.health.probe ...          # the same without the console script

Standard library only and no other fleetkit import, so it starts in a few tens of milliseconds
even in a slim image. It checks memory use (the container's cgroup limit, else the host), the
container's uptime, and the HTTP endpoint (5 s timeout), then prints one line and exits 0
(healthy) or 1 (unhealthy).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["DEFAULT_URL", "add_arguments", "main", "memory_usage", "probe", "uptime_seconds"]

DEFAULT_URL = "http://127.0.0.1:8000/health/live"
_CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def memory_usage() -> tuple[int, int] | None:
    """(used, limit) bytes: the cgroup's (v2, then v1) when it has a limit, else the host's."""
    used, limit = _read(_CGROUP / "memory.current"), _read(_CGROUP / "memory.max")
    if used is None:
        used = _read(_CGROUP / "memory" / "memory.usage_in_bytes")
        limit = _read(_CGROUP / "memory" / "memory.limit_in_bytes")
    host = _meminfo()
    # cgroup v2 says "max" and v1 a huge number for "no limit": then the host total is the bound.
    if (used is not None and limit is not None and limit.isdigit() and used.isdigit()
            and (host is None or int(limit) < host[1])):
        return int(used), int(limit)
    return host


def _meminfo() -> tuple[int, int] | None:
    text = _read(Path("/proc/meminfo"))
    if text is None:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields[key] = int(rest.split()[0]) * 1024 if rest.split() else 0
    total, available = fields.get("MemTotal"), fields.get("MemAvailable")
    if not total or available is None:
        return None
    return total - available, total


def uptime_seconds(pid: int = 1) -> float | None:
    """Seconds since ``pid`` started (PID 1 is the container's main process)."""
    stat, up = _read(Path(f"/proc/{pid}/stat")), _read(Path("/proc/uptime"))
    if stat is None or up is None:
        return None
    # Field 22 (starttime, clock ticks after boot) counted after the ")" closing the name.
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return max(0.0, float(up.split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK"))


def probe(url: str, *, timeout: float = 5.0, max_memory_percent: float = 95.0
          ) -> tuple[bool, str]:
    """Run every check; return (healthy, one-line message)."""
    facts = []
    memory = memory_usage()
    if memory is not None:
        used, limit = memory
        percent = 100.0 * used / limit if limit else 0.0
        facts.append(f"memory {percent:.1f}% of {limit / 2**20:,.0f} MiB")
        if percent > max_memory_percent:
            return False, f"memory {percent:.1f}% above the {max_memory_percent:g}% limit"
    uptime = uptime_seconds()
    if uptime is not None:
        facts.append(f"uptime {uptime:,.0f}s")
    if not url.startswith(("http://", "https://")):
        return False, f"{url} is not an http(s) URL"
    start = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "fleetkit-healthcheck"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered HTTP {exc.code}"
    except TimeoutError:
        return False, f"{url} did not answer within {timeout:g}s"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return False, f"{url} did not answer within {timeout:g}s"
        return False, f"{url} unreachable: {reason}"
    except (OSError, ValueError) as exc:
        return False, f"{url} failed: {exc}"
    elapsed_ms = (time.monotonic() - start) * 1000
    if not 200 <= status < 300:
        return False, f"{url} answered HTTP {status}"
    return True, f"{url} HTTP {status} in {elapsed_ms:.0f} ms; " + "; ".join(facts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"endpoint to GET (default {DEFAULT_URL})")
    parser.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout in seconds")
    parser.add_argument("--max-memory-percent", type=float, default=95.0,
                        help="unhealthy above this share of the memory limit (default 95)")


def run(args: argparse.Namespace) -> int:
    """Probe with parsed arguments, print the verdict, return the exit code."""
    if not 0 < args.max_memory_percent <= 100 or args.timeout <= 0:
        print("UNHEALTHY: --max-memory-percent must be in (0, 100] and --timeout > 0")
        return 1
    ok, message = probe(args.url, timeout=args.timeout,
                        max_memory_percent=args.max_memory_percent)
    print(f"{'OK' if ok else 'UNHEALTHY'}: {message}", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetkit healthcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
