"""Generate docs/configuration.md from ``fleetkit.config.Settings``.

    .venv/bin/python scripts/gen_config_docs.py           # rewrite docs/configuration.md
    .venv/bin/python scripts/gen_config_docs.py --check   # exit 1 if the file is out of date

Each setting's row comes from the model: environment variable, type, default, the field's
``description`` and its constraints (bounds, pattern, choices). Fields without a description get
the note below; tests/docs/test_configuration.py fails when a field has neither, when a note names
a field that no longer exists, or when the checked-in page differs from what this script renders.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from fleetkit.config import Settings

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "configuration.md"

#: What the model's own ``description`` does not say (or, for fields without one, everything).
NOTES: dict[str, str] = {
    "environment": "Deployment environment name; reported in logs. `production` refuses "
                   "unsafe settings (docs/security.md).",
    "host": "Bind address of `fleetkit serve`.",
    "port": "Listen port of `fleetkit serve`.",
    "web_concurrency": "One event loop per process; the capacity model sizes pods with it.",
    "instance_id": "Names this process in logs, audit events, heartbeats and consumer names.",
    "region": "Home region written into session tokens (multi-datacenter routing).",
    "log_level": "Root log level.",
    "log_json": "One JSON object per log line (with the request id); false for plain text.",
    "redis_url": "Any form: `redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://`.",
    "redis_socket_timeout": "Seconds a Redis command may take before it counts as a failure.",
    "redis_connect_timeout": "Seconds to open a Redis connection.",
    "database_url": "`postgresql://` (asyncpg) or `sqlite+aiosqlite://`.",
    "database_read_urls": "Comma-separated replica URLs; reads fall back to the primary.",
    "database_connection_limit": "This process's budget across the write pool and every read "
                                 "pool; pool sizes shrink proportionally to fit it.",
    "database_read_pool_size": "Connections per replica, per process (before the limit).",
    "database_write_pool_size": "Connections to the primary, per process (before the limit).",
    "database_pool_timeout": "Seconds a checkout waits for a free connection.",
    "database_health_interval": "Seconds between replica health/lag checks.",
    "rate_limit_ip": "Limits per client IP (policy list, e.g. `20/second;1000/hour`).",
    "rate_limit_user": "Limits per authenticated user.",
    "rate_limit_login": "Limits on login attempts per IP (brute-force protection).",
    "rate_limit_login_account_ip": "Login attempts on one account from one address.",
    "rate_limit_login_account": "Login attempts on one account from addresses and devices not "
                                "known to it (docs/security.md, \"Login protection\").",
    "rate_limit_login_device": "Login attempts from one signed device cookie.",
    "rate_limit_algorithm": "Redis Lua algorithm used by every policy.",
    "rate_limit_failure_mode": "What decides while Redis is unreachable: `local` (in-memory, "
                               "limits divided by live instances), `open` (allow), `closed` "
                               "(deny).",
    "rate_limit_shadow": "Count and log denials but let requests through.",
    "trusted_proxies": "Comma-separated; `X-Forwarded-For` is only believed from these.",
    "session_idle_ttl": "Seconds of inactivity after which a session expires (sliding).",
    "session_absolute_ttl": "Hard lifetime in seconds; must be >= `SESSION_IDLE_TTL`.",
    "session_max_per_user": "Live sessions per user.",
    "session_on_limit": "At the cap: evict the user's oldest session or refuse the login.",
    "session_cookie_name": "The `__Host-` prefix is dropped when the cookie is not Secure.",
    "session_regions": "Comma-separated; tokens homed there are routed to that Redis.",
    "session_monitor_interval": "Seconds between cleanup passes of the session monitor.",
    "breaker_failure_rate": "Failure share (over the window) that opens a breaker.",
    "breaker_minimum_calls": "Calls in the window before the rate is judged.",
    "breaker_window_seconds": "Sliding window of the failure rate, fleet-wide.",
    "breaker_wait_open_seconds": "Seconds open before half-open trials.",
    "breaker_half_open_permits": "Fleet-wide trial calls in half-open; all must succeed.",
    "audit_stream_shards": "Stream keys (one hash tag each) the producer round-robins over; "
                           "also the consumer's parallelism.",
    "audit_spool_dir": "Append-only disk spool for events logged while Redis is down.",
    "audit_batch_size": "Events per sink transaction (upper bound).",
    "audit_max_deliveries": "Deliveries before an entry goes to the dead-letter stream.",
    "health_interval": "Seconds between background runs of each health check.",
    "health_show_details": "Include outputs and observed values in health responses.",
    "prometheus_multiproc_dir": "Directory shared by the worker processes' metric files; set "
                                "`PROMETHEUS_MULTIPROC_DIR` to the same path before start.",
}

_SECTION = re.compile(r"^\s*# --- (?P<title>.+?) -+\s*$")
_FIELD = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*)\s*:")


def sections() -> list[tuple[str, list[str]]]:
    """Fields in source order, grouped under the ``# --- title ---`` comments of config.py."""
    lines, _ = inspect.getsourcelines(Settings)
    groups: list[tuple[str, list[str]]] = [("General", [])]
    for line in lines:
        if m := _SECTION.match(line):
            groups.append((m.group("title")[0].upper() + m.group("title")[1:], []))
        elif (m := _FIELD.match(line)) and m.group("name") in Settings.model_fields:
            groups[-1][1].append(m.group("name"))
    listed = {n for _, names in groups for n in names}
    missing = [n for n in Settings.model_fields if n not in listed]
    if missing:
        groups.append(("Other", missing))
    return [(title, names) for title, names in groups if names]


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(inner) + (" (optional)" if type(None) in args else "")
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is list:
        return "list (comma-separated)"
    if annotation is Path or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def default_text(name: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        if name == "instance_id":
            return "`<hostname>-<pid>`"
        if name == "data_dir":
            return "`$XDG_DATA_HOME/fleetkit`"
        value = info.default_factory()  # type: ignore[call-arg]
        return "(empty)" if value in ([], {}, "") else f"`{value}`"
    if info.default is PydanticUndefined or info.default is None:
        return "unset"
    if isinstance(info.default, bool):
        return f"`{str(info.default).lower()}`"
    return f"`{info.default}`"


def constraints(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{sign} {getattr(meta, attr)}")
        if getattr(meta, "pattern", None):
            parts.append(f"matches `{meta.pattern}`")
    return ", ".join(parts)


def row(name: str) -> str:
    info = Settings.model_fields[name]
    text = " ".join(t.strip() for t in (info.description or "", NOTES.get(name, "")) if t)
    limit = constraints(info)
    if limit:
        text = f"{text} ({limit})" if text else f"({limit})"
    cells = [f"`{name.upper()}`", type_name(info.annotation), default_text(name, info),
             text.replace("|", "\\|")]
    return "| " + " | ".join(cells) + " |"


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "<!-- GENERATED by scripts/gen_config_docs.py from fleetkit.config.Settings: do not edit."
        " tests/docs/test_configuration.py fails when this page drifts from the model. -->",
        "",
        "`fleetkit.config.Settings` is the only code that reads the environment (variable names "
        "are case-insensitive; a `.env` file is read too). Components never read it: they take "
        "keyword arguments, and `Settings` is how the reference service and the CLI fill them. "
        "`load_settings()` turns a bad value into a `ConfigError` naming the variable, e.g. "
        "`DATABASE_READ_POOL_SIZE: Input should be greater than or equal to 1 (got '0')`.",
        "",
        "Cross-field rules: `SESSION_ABSOLUTE_TTL >= SESSION_IDLE_TTL`; `REDIS_RATE_LIMIT_URL` "
        "and `REDIS_SESSION_URL` need `REDIS_URL`; the effective pool sizes are capped by "
        "`DATABASE_CONNECTION_LIMIT` (`Settings.pool_sizes`). Rate-limit policy lists are "
        "`;`-separated items such as `100/minute` or `10 per 2 seconds`.",
        "",
    ]
    for title, names in sections():
        out += [f"## {title}", "", "| variable | type | default | description |",
                "|---|---|---|---|", *(row(n) for n in names), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python scripts/gen_config_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
