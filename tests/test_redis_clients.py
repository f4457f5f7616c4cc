"""Role clients against real servers: every URL form, reconnection, NOSCRIPT, coalescing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, ConnectionError

from fleetkit.errors import BackendUnavailable, ConfigError, RedisCommandError
from fleetkit.redis import ClientOptions, Coalescer, RedisClients, Script, create_client, role_stats
from tests.support import (
    REDIS_ACL_URL,
    REDIS_CLUSTER_URL,
    REDIS_SENTINEL_URL,
    REDIS_TLS_URL,
    REDIS_URL,
    RedisServer,
)

ECHO = Script("return {KEYS[1], ARGV[1]}", name="echo")
# A mergeable script (Coalescer.run_merged): one ARGV and one key per call, 8-byte replies.
ADD = Script("""
local out = {}
for i = 1, #ARGV do
  out[i] = struct.pack('<i8', redis.call('INCRBY', KEYS[i], tonumber(ARGV[i])))
end
if ARGV[1] == '999' then return 'short' end
return table.concat(out)
""", name="add")


@pytest.mark.parametrize(
    "url", [REDIS_URL, REDIS_ACL_URL, REDIS_TLS_URL, REDIS_SENTINEL_URL, REDIS_CLUSTER_URL],
    ids=["standalone", "acl", "tls", "sentinel", "cluster"],
)
async def test_each_url_form_reaches_a_real_server(url: str) -> None:
    clients = RedisClients.from_urls(url)
    try:
        assert clients.ratelimit is clients.main and clients.sessions is clients.main
        client = clients.main
        assert client is not None
        await client.set("fk:url-form", "ok", ex=10)
        assert await client.get("fk:url-form") == b"ok"
        pings = await clients.ping_all()
        assert all(p.ok for p in pings.values()), pings
        assert await ECHO(client, keys=["fk:k"], args=["v"]) == [b"fk:k", b"v"]
    finally:
        await clients.aclose()


async def test_url_form_selects_client_class() -> None:
    assert isinstance(create_client(REDIS_CLUSTER_URL), RedisCluster)
    assert isinstance(create_client(REDIS_URL), Redis)
    sentinel = create_client(REDIS_SENTINEL_URL)
    assert isinstance(sentinel, Redis)
    # Sentinel resolves the primary: writes must succeed (a replica would refuse them).
    await sentinel.set("fk:sentinel-write", "1", ex=5)
    info = await sentinel.info("replication")
    assert info["role"] == "master"
    await sentinel.aclose()


async def test_acl_user_with_wrong_password_is_refused() -> None:
    client = create_client(REDIS_ACL_URL.replace("fleetkit-secret", "wrong"))
    with pytest.raises((AuthenticationError, ConnectionError)):
        await client.ping()
    await client.aclose()


def test_bad_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as err:
        create_client("redis+sentinel://u:hunter2@127.0.0.1:26390", role="sessions")
    assert "sessions" in str(err.value)
    assert "hunter2" not in str(err.value)
    with pytest.raises(ConfigError):
        create_client("http://127.0.0.1:6379")
    with pytest.raises(ConfigError):
        RedisClients.from_urls(None, sessions=REDIS_URL)


async def test_roles_with_their_own_url_get_their_own_client() -> None:
    clients = RedisClients.from_urls(REDIS_URL, ratelimit=REDIS_ACL_URL, sessions=REDIS_URL)
    try:
        assert clients.ratelimit is not clients.main
        assert clients.sessions is clients.main
        assert clients.ratelimit.fleetkit_role == "ratelimit"
        assert (await clients.ping("ratelimit")).ok
        assert clients.stats()["ratelimit"]["commands"] >= 1
    finally:
        await clients.aclose()


def test_embedded_mode_has_no_clients() -> None:
    clients = RedisClients.from_urls(None)
    assert clients.embedded
    assert clients.main is None and clients.coalescer("main") is None


async def test_reconnects_after_kill_9_and_restart(redis_server: RedisServer) -> None:
    client = create_client(redis_server.url, role="fault-reconnect",
                           options=ClientOptions(retries=1, socket_timeout=0.5))
    await client.set("k", "before")
    redis_server.kill9()
    with pytest.raises((ConnectionError, OSError)):
        await client.get("k")
    assert role_stats("fault-reconnect").down
    redis_server.start()
    # appendfsync always: the value written before the kill survives; the same client works again.
    assert await client.get("k") == b"before"
    stats = role_stats("fault-reconnect")
    assert not stats.down and stats.reconnects == 1
    await client.aclose()


async def test_ping_reports_a_dead_server_without_raising(redis_server: RedisServer) -> None:
    clients = RedisClients.from_urls(redis_server.url, options=ClientOptions(retries=0))
    redis_server.kill9()
    result = await clients.ping("main", timeout=0.5)
    assert not result.ok and result.error and "BackendUnavailable" in result.error
    await clients.aclose()


@pytest.mark.parametrize("url", [REDIS_URL, REDIS_CLUSTER_URL], ids=["standalone", "cluster"])
async def test_noscript_recovery_after_script_flush(url: str) -> None:
    client = create_client(url)
    script = Script("return ARGV[1] .. '-' .. KEYS[1]", name="flushed")
    assert await script(client, keys=["{a}x"], args=["1"]) == b"1-{a}x"
    await client.script_flush()
    assert await script(client, keys=["{a}x"], args=["2"]) == b"2-{a}x"
    coalescer = Coalescer(client)
    await client.script_flush()
    keys = [f"{{slot{i}}}k" for i in range(20)]  # spread over the cluster's masters
    results = await asyncio.gather(*(coalescer.run(script, [k], [str(i)])
                                     for i, k in enumerate(keys)))
    assert results == [f"{i}-{k}".encode() for i, k in enumerate(keys)]
    await coalescer.aclose()
    await client.aclose()


@pytest.mark.parametrize("url", [REDIS_URL, REDIS_CLUSTER_URL], ids=["standalone", "cluster"])
async def test_coalescer_gives_each_caller_its_own_result_and_error(url: str) -> None:
    client = create_client(url)
    run = uuid.uuid4().hex
    await client.set("{c}not-a-number", "x")
    coalescer = Coalescer(client, max_inflight=1)

    async def incr(i: int) -> int:
        result: int = await coalescer.execute("INCRBY", f"{{c{i}}}n{run}", i)
        return result

    tasks = [asyncio.create_task(incr(i)) for i in range(300)]
    bad = asyncio.create_task(coalescer.execute("INCR", "{c}not-a-number"))
    results = await asyncio.gather(*tasks)
    assert results == list(range(300))
    with pytest.raises(RedisCommandError, match="not an integer"):
        await bad
    # 301 commands from 301 tasks went out in far fewer round trips.
    assert coalescer.commands == 301
    assert coalescer.pipelines < 30
    await coalescer.aclose()
    await client.aclose()


async def test_coalescer_fails_a_batch_on_a_dead_server_then_recovers(
    redis_server: RedisServer,
) -> None:
    client = create_client(redis_server.url, options=ClientOptions(retries=0))
    coalescer = Coalescer(client)
    assert await coalescer.execute("SET", "k", "1")
    redis_server.kill9()
    results = await asyncio.gather(*(coalescer.execute("GET", "k") for _ in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(r, BackendUnavailable) for r in results), results
    redis_server.start()
    assert await coalescer.execute("GET", "k") == b"1"
    await coalescer.aclose()
    await client.aclose()


async def test_cancelled_caller_does_not_break_the_batch() -> None:
    client = create_client(REDIS_URL)
    coalescer = Coalescer(client)
    doomed = asyncio.create_task(coalescer.execute("PING"))
    other = asyncio.create_task(coalescer.execute("ECHO", "still here"))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await other == b"still here"
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await coalescer.aclose()
    await client.aclose()


@pytest.mark.parametrize("url", [REDIS_URL, REDIS_CLUSTER_URL], ids=["standalone", "cluster"])
async def test_merged_calls_each_get_their_own_reply_in_order(url: str) -> None:
    client = create_client(url)
    coalescer = Coalescer(client, max_inflight=1)
    run = uuid.uuid4().hex
    key = f"{{m{run}}}"
    await ADD.load(client)  # a NOSCRIPT retry would run after the SET below

    async def add(k: str, n: int) -> int:
        reply = await coalescer.run_merged(ADD, [k], b"%d" % n, 8)
        return int.from_bytes(reply, "little", signed=True)

    # Queued in one loop iteration: the plain SET between the two runs keeps its place.
    first = [asyncio.create_task(add(f"{key}{i}", i)) for i in range(50)]
    same = asyncio.create_task(add(key, 1))
    reset = asyncio.create_task(coalescer.execute("SET", key, 100))
    after = asyncio.create_task(add(key, 1))
    assert await asyncio.gather(*first) == list(range(50))
    assert (await same, await after) == (1, 101)
    assert await reset in (b"OK", True)  # raw reply on standalone, parsed on a Cluster
    if isinstance(client, RedisCluster):
        assert coalescer.commands == 53  # keys of other slots: never merged on a Cluster
    else:
        assert coalescer.commands == 3  # run, SET, run
    await coalescer.aclose()
    await client.aclose()


async def test_merged_call_with_a_bad_reply_fails_only_its_run() -> None:
    client = create_client(REDIS_URL)
    coalescer = Coalescer(client)
    run = uuid.uuid4().hex
    bad = [asyncio.create_task(coalescer.run_merged(ADD, [f"b{run}{i}"], b"999", 8))
           for i in range(3)]
    plain = asyncio.create_task(coalescer.execute("ECHO", "fine"))
    for task in bad:
        with pytest.raises(RedisCommandError, match="merged calls of add: bad reply"):
            await task
    assert await plain == b"fine"
    unmerged = Coalescer(client, merge=False)
    replies = await asyncio.gather(*(unmerged.run_merged(ADD, [f"u{run}{i}"], b"2", 8)
                                     for i in range(5)))
    assert replies == [(2).to_bytes(8, "little")] * 5 and unmerged.commands == 5
    await unmerged.aclose()
    await coalescer.aclose()
    await client.aclose()
