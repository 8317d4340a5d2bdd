"""Run a campaign's load on one LoadWorker in this loop, or on N worker processes.

Processes start with the `spawn` context: the parent is an asyncio server, and forking a
running event loop (its selector, its sockets, its threads) is never safe. Each child runs
its own loop (uvloop where installed) and one LoadWorker taking 1/N of the rate; commands
go down a pipe and every second the child ships `WindowStats.to_wire()` back up.

Deadlines cross the pipe as `time.monotonic()` instants: every process on a host reads the
same monotonic clock, so an instant is exact where "seconds remaining" would lose the
pipe's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from campaignd.traffic.connections import worker_process_budget
from campaignd.traffic.plan import LoadPlan
from campaignd.traffic.stats import WindowStats
from campaignd.traffic.worker import LoadWorker

# Above this rate (req/s) an automatic choice moves generation out of the server's loop.
IN_PROCESS_MAX_RATE = 200.0
# Shipped four times a second so the parent's one-second windows do not alias.
SHIP_SECONDS = 0.25
START_TIMEOUT_SECONDS = 60.0
# Children are told to start this far ahead, so each is listening when the instant comes.
START_LEAD_SECONDS = 0.005
# After its drain a child aborts what is still in flight, ships its last window and says
# "done" within this; one that does not is read to the end of its pipe, then killed.
STOP_GRACE_SECONDS = 0.5
# A child that said "done" has this long to exit before it is terminated.
EXIT_SECONDS = 0.5


def worker_count(setting: int, peak_rate: float, cores: int | None = None) -> int:
    """How many worker processes to use; 1 means in-process.

    `setting` is `Settings.traffic_workers`: 1 keeps generation in the server's loop, N > 1
    asks for N processes, 0 decides: in-process up to IN_PROCESS_MAX_RATE, else one per core.
    """
    if setting >= 1:
        return setting
    if peak_rate <= IN_PROCESS_MAX_RATE:
        return 1
    return max(1, cores if cores is not None else len(os.sched_getaffinity(0)))


class Workers(Protocol):
    """What a campaign's driver needs from whatever generates its load."""

    async def start(self) -> float:
        """Start generating; return the instant (time.monotonic()) the first arrival is due."""
        ...

    def set_rate(self, rate_per_second: float) -> None: ...
    def set_deadline(self, deadline: float | None) -> None: ...
    def pause(self, at: float) -> None: ...
    def resume(self, at: float) -> None: ...
    def cut_window(self) -> WindowStats: ...
    def failure(self) -> asyncio.Future[None]: ...
    async def stop(self) -> None: ...


def make_workers(
    plan: LoadPlan, count: int, drain_seconds: float, shard: int = 0, shards: int = 1
) -> Workers:
    """`shard` of `shards` takes its 1/shards of the rate and of the users (cluster shards)."""
    if count <= 1:
        return InProcessWorkers(plan, drain_seconds, shard, shards)
    return ProcessWorkers(plan, count, drain_seconds, shard, shards)


class InProcessWorkers:
    """One LoadWorker on the caller's loop (small rates: no process to start)."""

    def __init__(
        self, plan: LoadPlan, drain_seconds: float, shard: int = 0, shards: int = 1
    ) -> None:
        self.worker = LoadWorker(plan, worker_index=shard, workers=shards)
        self._drain = drain_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> float:
        start_at = time.monotonic()
        self._task = asyncio.create_task(self.worker.run(self._drain, start_at))
        return start_at

    def set_rate(self, rate_per_second: float) -> None:
        self.worker.set_rate(rate_per_second)

    def set_deadline(self, deadline: float | None) -> None:
        self.worker.set_deadline(deadline)

    def pause(self, at: float) -> None:
        self.worker.pause(at)

    def resume(self, at: float) -> None:
        self.worker.resume(at)

    def cut_window(self) -> WindowStats:
        return self.worker.cut_window()

    def failure(self) -> asyncio.Future[None]:
        assert self._task is not None
        return self._task

    async def stop(self) -> None:
        self.worker.stop()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


class ProcessWorkers:
    """N worker processes; their windows merge here (HDR add: exact, p99 <= max)."""

    def __init__(
        self, plan: LoadPlan, count: int, drain_seconds: float, shard: int = 0, shards: int = 1
    ) -> None:
        self.plan = plan
        self.count = count
        # Worker i of this shard is worker shard + i * shards of all the campaign's workers.
        self._shard = shard
        self._shards = shards
        self._drain = drain_seconds
        self._rate = plan.rate_per_second
        self._deadline: float | None = None
        self._paused = False
        self._conns: list[Connection] = []
        self._procs: list[BaseProcess] = []
        self._ready: set[int] = set()
        self._done: set[int] = set()
        self._pending = WindowStats(started_at=time.time(), seconds=0.0)
        self._pending_since = time.monotonic()
        # Busy users per child: the most since the last cut, and the latest.
        self._busy_max: dict[int, int] = {}
        self._busy_now: dict[int, int] = {}
        self._all_ready: asyncio.Future[None] | None = None
        self._all_done: asyncio.Future[None] | None = None
        self._failure: asyncio.Future[None] | None = None
        self._stopping = False

    async def start(self) -> float:
        loop = asyncio.get_running_loop()
        self._all_ready = loop.create_future()
        self._all_done = loop.create_future()
        self._failure = loop.create_future()
        ctx = multiprocessing.get_context("spawn")
        try:
            for index in range(self.count):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=run_child,
                    args=(
                        child,
                        self.plan,
                        self._shard + index * self._shards,
                        self.count * self._shards,
                        self._drain,
                    ),
                    name=f"campaignd-load-{index}",
                    daemon=True,
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
                loop.add_reader(parent.fileno(), self._receive, index)
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await asyncio.shield(self._all_ready)
        except BaseException:
            await self._release()
            raise
        start_at = time.monotonic() + START_LEAD_SECONDS
        self._broadcast("start", self._rate, self._deadline, self._paused, start_at)
        return start_at

    # commands ---------------------------------------------------------------------------
    def set_rate(self, rate_per_second: float) -> None:
        self._rate = rate_per_second
        self._broadcast("rate", rate_per_second)

    def set_deadline(self, deadline: float | None) -> None:
        self._deadline = deadline
        self._broadcast("deadline", deadline)

    def pause(self, at: float) -> None:
        self._paused = True
        self._broadcast("pause", at)

    def resume(self, at: float) -> None:
        self._paused = False
        self._broadcast("resume", at)

    def cut_window(self) -> WindowStats:
        now = time.monotonic()
        window = self._pending
        window.seconds = now - self._pending_since
        # Children work at the same time: their gauges add up (the sum of their maxima is an
        # upper bound of the true maximum, exact when they peak together, as under one load).
        window.busy_users = sum(self._busy_max.values())
        window.busy_now = sum(self._busy_now.values())
        self._busy_max = dict(self._busy_now)
        self._pending = WindowStats(started_at=time.time(), seconds=0.0)
        self._pending_since = now
        return window

    def failure(self) -> asyncio.Future[None]:
        assert self._failure is not None
        return self._failure

    async def stop(self) -> None:
        """Stop every child, collect its last window, join it; kill what does not end in time."""
        self._stopping = True
        self._broadcast("stop")
        if self._all_done is not None and len(self._done) < len(self._procs):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._drain + STOP_GRACE_SECONDS):
                    await asyncio.shield(self._all_done)
        await self._release()

    # plumbing ---------------------------------------------------------------------------
    def _broadcast(self, *message: Any) -> None:
        if not self._ready or len(self._ready) < len(self._procs):
            return  # not started yet: `start` carries the latest settings
        for index, conn in enumerate(self._conns):
            if index not in self._done:
                with contextlib.suppress(OSError):
                    conn.send(message)

    def _receive(self, index: int) -> None:
        conn = self._conns[index]
        try:
            while conn.poll():
                self._handle(index, conn.recv())
        except (EOFError, OSError):
            self._lost(index)

    def _handle(self, index: int, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "window":
            window = WindowStats.from_wire(message[1])
            self._pending.merge(window)
            self._busy_max[index] = max(self._busy_max.get(index, 0), window.busy_users)
            self._busy_now[index] = window.busy_now
        elif kind == "ready":
            self._ready.add(index)
            if len(self._ready) == len(self._procs) and self._all_ready is not None:
                self._all_ready.set_result(None)
        elif kind == "done":
            self._finished(index)

    def _finished(self, index: int) -> None:
        self._done.add(index)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._conns[index].fileno())
        finished = len(self._done) == len(self._procs)
        if finished and self._all_done is not None and not self._all_done.done():
            self._all_done.set_result(None)

    def _lost(self, index: int) -> None:
        if index in self._done:
            return
        self._finished(index)
        if not self._stopping and self._failure is not None and not self._failure.done():
            code = self._procs[index].exitcode
            self._failure.set_exception(
                RuntimeError(f"load worker process {index} ended unexpectedly (exit code {code})")
            )
        if self._all_ready is not None and not self._all_ready.done():
            self._all_ready.set_exception(RuntimeError(f"load worker process {index} died"))

    async def _release(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + EXIT_SECONDS
        for index, proc in enumerate(self._procs):
            while index in self._done and proc.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if proc.is_alive():
                proc.terminate()
                await asyncio.to_thread(proc.join, 1.0)
            if proc.is_alive():
                proc.kill()
            await asyncio.to_thread(proc.join, 1.0)
            with contextlib.suppress(ValueError):
                proc.close()
        for index, conn in enumerate(self._conns):
            # Windows a child wrote before it ended are still in the pipe: count them.
            if index not in self._done:
                self._receive(index)
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(conn.fileno())
            conn.close()
        if self._failure is not None:
            if self._failure.done() and not self._failure.cancelled():
                self._failure.exception()  # reported by whoever awaited it, not by the GC
            else:
                self._failure.cancel()


# the child side -------------------------------------------------------------------------
def run_child(conn: Connection, plan: LoadPlan, index: int, count: int, drain: float) -> None:
    """Entry point of a worker process."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(_child(conn, plan, index, count, drain))
    else:
        uvloop.run(_child(conn, plan, index, count, drain))
    # Everything worth keeping went up the pipe. Finalizing the interpreter would free tens
    # of thousands of users and connections one by one, and the parent waits for the exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def _child(conn: Connection, plan: LoadPlan, index: int, count: int, drain: float) -> None:
    loop = asyncio.get_running_loop()
    worker = LoadWorker(
        plan, worker_index=index, workers=count, budget=worker_process_budget(count)
    )
    started: asyncio.Future[float | None] = loop.create_future()

    def on_command() -> None:
        try:
            while conn.poll():
                kind, *args = conn.recv()
                if kind == "start":
                    rate, deadline, paused, start_at = args
                    worker.set_rate(rate)
                    worker.set_deadline(deadline)
                    if paused:
                        worker.pause()
                    if not started.done():
                        started.set_result(start_at)
                elif kind == "rate":
                    worker.set_rate(args[0])
                elif kind == "deadline":
                    worker.set_deadline(args[0])
                elif kind == "pause":
                    worker.pause(args[0])
                elif kind == "resume":
                    worker.resume(args[0])
                elif kind == "stop":
                    worker.stop()
                    if not started.done():
                        started.set_result(None)
        except (EOFError, OSError):
            # The parent is gone: stop rather than load a target nobody watches.
            loop.remove_reader(conn.fileno())
            worker.stop()
            if not started.done():
                started.set_result(None)

    loop.add_reader(conn.fileno(), on_command)
    conn.send(("ready",))
    start_at = await started

    def counted() -> None:
        # Every request is counted: ship the last window and say so before the slow part
        # (closing the connections), so a parent that cannot wait longer loses nothing.
        with contextlib.suppress(OSError):
            conn.send(("window", worker.cut_window().to_wire()))
            conn.send(("done",))

    run = asyncio.create_task(worker.run(drain, start_at, counted))
    try:
        while not run.done():
            await asyncio.wait({run}, timeout=SHIP_SECONDS)
            with contextlib.suppress(OSError):
                conn.send(("window", worker.cut_window().to_wire()))
        await run
    finally:
        with contextlib.suppress(OSError, ValueError):
            loop.remove_reader(conn.fileno())
            conn.send(("done",))
        conn.close()
