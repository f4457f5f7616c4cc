"""Settings: defaults, parsing, and startup errors that name the bad setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleetkit.config import load_settings, parse_policy_list, redact_url
from fleetkit.errors import ConfigError


def test_defaults_are_embedded_mode() -> None:
    s = load_settings({})
    assert s.embedded and s.redis_url is None
    assert s.database_url.startswith("sqlite")
    assert (s.database_read_pool_size, s.database_write_pool_size) == (60, 40)


def test_seed_variables_are_read() -> None:
    s = load_settings({
        "REDIS_URL": "redis://r:6379/0", "REDIS_RATE_LIMIT_URL": "redis://rl:6379",
        "REDIS_SESSION_URL": "redis+cluster://a:7000,b:7001",
        "DATABASE_URL": "postgresql://u:p@db/app",
        "DATABASE_READ_URLS": "postgresql://u:p@r1/app, postgresql://u:p@r2/app",
        "DATABASE_CONNECTION_LIMIT": "50", "DATABASE_READ_POOL_SIZE": "20",
        "DATABASE_WRITE_POOL_SIZE": "10", "WEB_CONCURRENCY": "4",
    })
    assert not s.embedded
    assert s.database_read_urls == ["postgresql://u:p@r1/app", "postgresql://u:p@r2/app"]
    assert s.web_concurrency == 4
    assert s.pool_sizes == (10, 20)


def test_pool_sizes_are_capped_by_the_connection_limit() -> None:
    s = load_settings({"DATABASE_CONNECTION_LIMIT": "50", "DATABASE_READ_URLS":
                       "postgresql://a/b,postgresql://c/d"})
    write, read = s.pool_sizes
    assert write + 2 * read <= 50 and write >= 1 and read >= 1


@pytest.mark.parametrize(("env", "named"), [
    ({"DATABASE_READ_POOL_SIZE": "0"}, "DATABASE_READ_POOL_SIZE"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY"),
    ({"TRUSTED_PROXIES": "10.0.0.0/8,not-a-cidr"}, "TRUSTED_PROXIES"),
    ({"RATE_LIMIT_LOGIN": "5 per fortnight"}, "RATE_LIMIT_LOGIN"),
    ({"SESSION_IDLE_TTL": "100", "SESSION_ABSOLUTE_TTL": "10"}, "SESSION_ABSOLUTE_TTL"),
])
def test_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_errors_never_show_passwords() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"DATABASE_URL": "mysql://admin:s3cret@db/x"})
    assert "s3cret" not in str(err.value)
    assert redact_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"


def test_policy_lists() -> None:
    assert parse_policy_list("20/second; 1000/hour") == ["20/second", "1000/hour"]


def test_cli_exits_2_naming_the_setting() -> None:
    out = subprocess.run([sys.executable, "-m", "fleetkit.cli", "serve"], capture_output=True,
                         text=True, env={"DATABASE_WRITE_POOL_SIZE": "-3", "PATH": ""}, check=False)
    assert out.returncode == 2
    assert "DATABASE_WRITE_POOL_SIZE" in out.stderr
