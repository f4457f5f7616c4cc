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
        description="Probe this instance (standard library only, no settings).")
    probe.add_arguments(parser)
    return {"healthcheck": _healthcheck}


def _healthcheck(args: argparse.Namespace, settings: Any) -> int:
    # fleetkit.cli.main() short-cuts "healthcheck" to probe.main() before loading settings;
    # this handler serves callers that go through build_parser().
    return probe.run(args)
