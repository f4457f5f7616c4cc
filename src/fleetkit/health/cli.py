"""``fleetkit healthcheck``: the standalone probe as a CLI subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from fleetkit.health import probe

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]
             ) -> dict[str, Callable[[argparse.Namespace, Any], int]]:
    parser = sub.add_parser(
        "healthcheck", help="Docker HEALTHCHECK probe (memory, uptime, HTTP endpoint), exit 0/1",
        description="Probe this instance. `python -m fleetkit.health.probe` does the same "
                    "without loading settings (faster start).")
    probe.add_arguments(parser, default_url="")
    return {"healthcheck": _healthcheck}


def _healthcheck(args: argparse.Namespace, settings: Any) -> int:
    if not args.url:  # default to the port this instance's settings serve on
        args.url = f"http://127.0.0.1:{settings.port}/health/live"
    return probe.run(args)
