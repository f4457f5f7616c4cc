"""``fleetkit worker audit``, ``fleetkit audit verify`` and ``fleetkit audit prune``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from fleetkit.config import Settings

__all__ = ["register"]


def _pg_url(settings: Settings) -> str | None:
    scheme = settings.database_url.split("://", 1)[0]
    return settings.database_url if scheme.startswith("postgres") else None


def register(sub: Any) -> dict[str, Any]:
    worker = sub.add_parser("worker", help="run a background worker")
    kinds = worker.add_subparsers(dest="worker", metavar="KIND", required=True)
    audit_worker = kinds.add_parser("audit", help="audit consumer: Redis stream → PostgreSQL")
    audit_worker.add_argument("--consumer", default=None, help="consumer name (INSTANCE_ID)")
    audit_worker.add_argument("--schema", default="public", help="PostgreSQL schema")
    audit_worker.add_argument("--prefix", default="fleetkit:audit", help="stream key prefix")
    audit_worker.add_argument("--claim-idle", type=float, default=30.0,
                              help="seconds before another consumer's entry is taken over")
    audit_worker.add_argument("--batch-entries", type=int, default=64,
                              help="stream entries per transaction (each holds many events)")

    audit = sub.add_parser("audit", help="audit log maintenance")
    cmds = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = cmds.add_parser("verify", help="recompute the hash chain; exit 1 if altered")
    verify.add_argument("--schema", default="public")
    prune = cmds.add_parser("prune", help="drop monthly partitions older than --older-than")
    prune.add_argument("--older-than", default="400d", help="age such as 400d (default)")
    prune.add_argument("--schema", default="public")
    return {"worker": _worker, "audit": _audit}


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.worker != "audit":  # pragma: no cover - argparse restricts the choices
        return 2
    if settings.redis_url is None or _pg_url(settings) is None:
        print("fleetkit worker audit: needs REDIS_URL and a postgresql:// DATABASE_URL "
              "(in embedded mode AuditLog writes to SQLite itself)", file=sys.stderr)
        return 2
    import uvloop

    return uvloop.run(_run_worker(args, settings))


async def _run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from fleetkit.audit.consumer import AuditConsumer
    from fleetkit.redis import ClientOptions, create_client

    assert settings.redis_url is not None
    block_ms = 500
    # XREADGROUP BLOCK must return before the socket timeout fires.
    client = create_client(settings.redis_url, role="main", options=ClientOptions(
        socket_timeout=max(settings.redis_socket_timeout, block_ms / 1000 + 2),
        connect_timeout=settings.redis_connect_timeout, retries=settings.redis_retries))
    consumer = AuditConsumer.from_settings(
        settings, redis=client, consumer=args.consumer, schema=args.schema, prefix=args.prefix,
        batch_entries=args.batch_entries, block_ms=block_ms, claim_min_idle=args.claim_idle)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop)
    print(f"fleetkit worker audit: consumer {args.consumer or settings.instance_id}, "
          f"{settings.audit_stream_shards} shards, schema {args.schema}", file=sys.stderr,
          flush=True)
    try:
        await consumer.run()
    finally:
        await client.aclose()
    print(f"fleetkit worker audit: stopped after {consumer.rows_inserted} rows", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    url = _pg_url(settings)
    if url is None:
        print("fleetkit audit: needs a postgresql:// DATABASE_URL", file=sys.stderr)
        return 2
    return asyncio.run(_run_audit(args, url))


async def _run_audit(args: argparse.Namespace, url: str) -> int:
    import asyncpg

    from fleetkit.audit.schema import parse_age, prune
    from fleetkit.audit.sink import to_asyncpg_url
    from fleetkit.audit.verify import verify_postgres

    conn = await asyncpg.connect(to_asyncpg_url(url))
    try:
        if args.audit_command == "verify":
            result = await verify_postgres(conn, args.schema)
            print(result)
            return 0 if result.ok else 1
        dropped = await prune(conn, parse_age(args.older_than), args.schema)
        print(f"dropped {len(dropped)} partition(s)" + (f": {', '.join(dropped)}"
                                                         if dropped else ""))
        return 0
    finally:
        await conn.close()
