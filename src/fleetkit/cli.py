"""The ``fleetkit`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fleetkit.config import Settings, load_settings
from fleetkit.errors import ConfigError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Settings], int]

#: What the commands other than ``healthcheck`` import: the ``server`` extra.
SERVER_EXTRA = ("uvicorn", "fastapi", "sqlalchemy", "alembic", "argon2")

# Each component with commands has a ``cli.py`` exposing
# ``register(sub: argparse._SubParsersAction) -> dict[str, Handler]``; the key is the subcommand
# name as stored in ``args.command``. One line per component here.
COMMAND_MODULES: list[str] = [
    # fleetkit.app.cli also registers fleetkit.db.cli's ``migrate``, with the app's revisions.
    "fleetkit.health.cli", "fleetkit.audit.cli", "fleetkit.app.cli",
]


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy-header handling from ``TRUSTED_PROXIES``, the one setting that decides.

    uvicorn rewrites the client address from ``X-Forwarded-For`` by default, trusting
    127.0.0.1: any local process (or a proxy we never configured) could pick its own address
    and walk past the per-IP rate limit. Off unless proxies are configured, then trusting
    exactly those networks (the same ones fleetkit's ``client_ip`` trusts).
    """
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from fleetkit.app.server import serve

    workers = args.workers or settings.web_concurrency
    mode = "embedded" if settings.embedded else "distributed"
    if workers > 1:
        # Several processes: prometheus_client must write per-process files that /metrics
        # aggregates. It reads PROMETHEUS_MULTIPROC_DIR itself, at import, in each worker.
        import os
        import tempfile
        from pathlib import Path

        from fleetkit.observability.metrics import prepare_multiproc_dir

        path = settings.prometheus_multiproc_dir or Path(tempfile.mkdtemp(prefix="fleetkit-prom-"))
        prepare_multiproc_dir(path)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    print(f"fleetkit serve: {mode} mode on http://{args.host or settings.host}:"
          f"{args.port or settings.port} with {workers} worker(s)", file=sys.stderr)
    # uvicorn (httptools + uvloop) with a drain that resets no request a balancer has sent.
    serve(
        "fleetkit.app:app_from_env", host=args.host or settings.host,
        port=args.port or settings.port, workers=workers,
        graceful_timeout=settings.graceful_timeout, log_level=settings.log_level,
        server_header=False, **proxy_options(settings),
    )
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(
        prog="fleetkit", description="Run a Python ASGI API as a fleet sharing Redis/PostgreSQL."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}

    serve = sub.add_parser("serve", help="run the reference service (uvicorn)")
    serve.add_argument("--host", default=None, help="bind address (default HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default PORT or 8000)")
    serve.add_argument("--workers", type=int, default=None, help="processes (WEB_CONCURRENCY)")
    handlers["serve"] = _serve
    for name in COMMAND_MODULES:
        handlers.update(importlib.import_module(name).register(sub))
    return parser, handlers


def missing_server_packages() -> list[str]:
    """The packages of the ``server`` extra that are not installed (a core-only install)."""
    import importlib.util

    return [name for name in SERVER_EXTRA if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["healthcheck"]:
        # Docker runs this every few seconds: skip the other commands' imports and settings.
        from fleetkit.health.probe import main as healthcheck

        return healthcheck(argv[1:])
    missing = missing_server_packages()
    if missing:
        print(f"fleetkit: this command needs the 'server' extra (missing: {', '.join(missing)}); "
              "install it with: pip install 'fleetkit[server]'", file=sys.stderr)
        return 2
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"fleetkit: {exc}", file=sys.stderr)
        return 2
    return handlers[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
