"""Command coalescing (auto-pipelining, as ioredis does it).

Many tasks each awaiting one Redis command pay one round trip, one connection checkout and one
syscall pair each. The coalescer queues commands issued in the same event-loop iteration and sends
them as one pipeline; while ``max_inflight`` pipelines are on the wire, new commands keep
queueing, so batches grow with load and latency stays one round trip when idle. Every caller gets
its own result or its own error; a connection failure fails only the batch it hit.

Scripts written to decide many independent calls at once (the rate limiter's) go further with
:meth:`Coalescer.run_merged`: on standalone Redis, consecutive queued calls of one such script
become a single EVALSHA, which saves Redis the per-command dispatch and this process the
per-command encoding and reply parsing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from fleetkit.errors import ConfigError, RedisCommandError
from fleetkit.redis.scripts import EncodedArg, Script, wrap_redis_error
from fleetkit.redis.stats import role_stats

__all__ = ["Coalescer", "CoalescerConfig"]

BATCH_SIZE = Histogram(
    "fleetkit_redis_pipeline_commands", "Commands per coalesced pipeline.", ["role"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)

@dataclass(frozen=True, slots=True)
class CoalescerConfig:
    """How a coalescer batches: at most ``max_batch`` commands a pipeline, ``max_inflight``
    pipelines on the wire at once, and whether mergeable script calls are merged.

    A component whose throughput depends on it names its config as a constant next to its
    benchmark's subject (``RateLimiter.COALESCER``); its ``from_settings`` and its benchmark both
    ask :meth:`RedisClients.coalescer <fleetkit.redis.RedisClients.coalescer>` for a coalescer of
    that config, so the service runs what the benchmark measured.
    """

    max_batch: int = 512
    max_inflight: int = 4
    merge: bool = True

    def build(self, client: Any) -> Coalescer:
        return Coalescer(client, max_batch=self.max_batch, max_inflight=self.max_inflight,
                         merge=self.merge)


# (command, future, script, reply_size): reply_size >= 0 marks a mergeable call, whose
# command is (keys, arg) until _send builds the EVALSHA.
_Entry = tuple[tuple[Any, ...], "asyncio.Future[Any]", Script | None, int]


class Coalescer:
    """Send concurrent commands of many tasks to one client in shared pipelines.

    ``max_batch`` bounds a pipeline's size; ``max_inflight`` bounds how many pipelines are on the
    wire at once (each holds one pooled connection, so keep it below the pool size).
    ``merge=False`` sends every :meth:`run_merged` call as its own EVALSHA (as on a Cluster).
    """

    def __init__(self, client: Any, *, max_batch: int = 512, max_inflight: int = 4,
                 merge: bool = True) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ConfigError("max_batch and max_inflight must be >= 1")
        self.client = client
        self.role: str = getattr(client, "fleetkit_role", "main")
        self._cluster = isinstance(client, RedisCluster)
        self._merge = merge and not self._cluster
        #: The batching it was made with.
        self.config = CoalescerConfig(max_batch, max_inflight, merge)
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._queue: list[_Entry] = []
        self._inflight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Round trips made and commands sent (benchmarks report commands per round trip).
        self.pipelines = 0
        self.commands = 0
        self._batch_size = BATCH_SIZE.labels(self.role)

    async def execute(self, *args: EncodedArg) -> Any:
        """Queue one command (``"SET", "k", "v"``) and await its reply."""
        return await self._submit(args, None, -1)

    async def run(self, script: Script, keys: Sequence[EncodedArg] = (),
                  args: Sequence[EncodedArg] = ()) -> Any:
        """Queue one EVALSHA of ``script``; NOSCRIPT is recovered transparently."""
        return await self._submit(script.evalsha_args(keys, args), script, -1)

    async def run_merged(self, script: Script, keys: Sequence[EncodedArg], arg: bytes,
                         reply_size: int) -> bytes:
        """Queue one call of a *mergeable* script and await its ``reply_size``-byte reply.

        A mergeable script takes one ARGV per call, each call's keys in order in KEYS, and
        returns the calls' replies concatenated. On standalone Redis consecutive queued calls
        are merged into one EVALSHA; on a Cluster each call is sent alone, since the keys of
        different calls may live on different nodes.
        """
        reply: bytes = await self.submit_merged(script, keys, arg, reply_size)
        return reply

    def submit_merged(self, script: Script, keys: Sequence[EncodedArg], arg: bytes,
                      reply_size: int) -> asyncio.Future[Any]:
        """:meth:`run_merged` without the coroutine: queue the call now, await the future later
        (several calls queued before the first await share a pipeline, with no task each)."""
        if self._merge:
            return self._submit((tuple(keys), arg), script, reply_size)
        return self._submit(script.evalsha_args(keys, (arg,)), script, -1)

    def _submit(self, args: tuple[Any, ...], script: Script | None,
                reply_size: int) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future, script, reply_size))
        if not self._scheduled and self._inflight < self._max_inflight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue and self._inflight < self._max_inflight:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _raw_pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Standalone fast path: one connection, one write, raw replies read in order.

        redis-py's Pipeline object costs ~30% of the throughput in per-command bookkeeping
        (bench/redis_coalescing.py); replies here skip response callbacks (raw bytes/ints).
        """
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            results: list[Any] = []
            for _ in commands:
                try:
                    results.append(await conn.read_response())
                except ResponseError as exc:
                    results.append(exc)
            return results
        except BaseException:
            # A half-read connection is unusable: drop it rather than return it to the pool.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def _pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.pipelines += 1
        self.commands += len(commands)
        start = time.perf_counter()
        try:
            if self._cluster:
                pipe = self.client.pipeline(transaction=False)
                for args in commands:
                    pipe.execute_command(*args)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            else:
                results = await self._raw_pipeline(commands)
        except Exception as exc:
            role_stats(self.role).failed(self.role, exc)
            raise
        # One histogram sample per round trip (command="PIPELINE"), recorded by the role stats.
        role_stats(self.role).ok(self.role, "PIPELINE", time.perf_counter() - start)
        return results

    @staticmethod
    def _commands(batch: list[_Entry]) -> tuple[list[tuple[Any, ...]], list[Script | None],
                                                list[list[int]]]:
        """The batch's commands, each one's script, and the entries each one answers."""
        commands: list[tuple[Any, ...]] = []
        scripts: list[Script | None] = []
        owners: list[list[int]] = []
        i = 0
        while i < len(batch):
            args, _, script, size = batch[i]
            if size < 0:
                commands.append(args)
                scripts.append(script)
                owners.append([i])
                i += 1
                continue
            assert script is not None
            # A run of consecutive calls of one mergeable script: one EVALSHA, order kept.
            keys: list[Any] = []
            argv: list[Any] = []
            run: list[int] = []
            while i < len(batch) and batch[i][3] >= 0 and batch[i][2] is script:
                keys += batch[i][0][0]
                argv.append(batch[i][0][1])
                run.append(i)
                i += 1
            commands.append(("EVALSHA", script.sha, len(keys), *keys, *argv))
            scripts.append(script)
            owners.append(run)
        return commands, scripts, owners

    async def _send(self, batch: list[_Entry]) -> None:
        try:
            self._batch_size.observe(len(batch))
            commands, scripts, owners = self._commands(batch)
            results = await self._pipeline(commands)
            retry = [i for i, script in enumerate(scripts)
                     if script is not None and isinstance(results[i], NoScriptError)]
            if retry:
                # EVAL runs the source and caches it on the node that owns each key's slot.
                again = []
                for i in retry:
                    script = scripts[i]
                    assert script is not None
                    again.append(("EVAL", script.source, *commands[i][2:]))
                for i, result in zip(retry, await self._pipeline(again), strict=True):
                    results[i] = result
            for run, script, result in zip(owners, scripts, results, strict=True):
                if len(run) == 1 and batch[run[0]][3] < 0:
                    self._resolve(batch[run[0]][1], result)
                    continue
                if not isinstance(result, Exception) and (
                        not isinstance(result, bytes)
                        or len(result) != sum(batch[i][3] for i in run)):
                    name = script.name if script else "?"
                    result = RedisCommandError(
                        f"merged calls of {name}: bad reply {result!r:.80}")
                offset = 0
                for i in run:
                    size = batch[i][3]
                    self._resolve(batch[i][1], result if isinstance(result, Exception)
                                  else result[offset:offset + size])
                    offset += size
        except Exception as exc:
            for _, future, _, _ in batch:
                if not future.done():
                    future.set_exception(wrap_redis_error(exc))
        finally:
            self._inflight -= 1
            if self._queue and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    @staticmethod
    def _resolve(future: asyncio.Future[Any], result: Any) -> None:
        if future.done():  # the caller was cancelled
            return
        if isinstance(result, Exception):
            future.set_exception(wrap_redis_error(result))
        else:
            future.set_result(result)

    async def aclose(self) -> None:
        """Wait for pipelines on the wire (queued commands are sent first)."""
        while self._tasks or self._queue:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                await asyncio.sleep(0)
