"""Checks and previews templates in worker processes, so that no template holds the event loop.

The sandbox's budget bounds a render; the workers bound what the budget cannot see (parsing
and compiling a pathological template, an allocation the rules missed): each has a memory
limit, each task a wall-time limit, and a worker that overruns is killed with its pool,
which is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import resource
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import Any

from campaignd.domain import templates
from campaignd.domain.errors import InvalidInput
from campaignd.logs import log_event

WORKERS = 2
TASK_SECONDS = 5.0
WORKER_MEMORY_BYTES = 1 << 30


PARENT_POLL_SECONDS = 1.0


def _start_worker(limit: int, parent: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker ends when the service does, even after a kill -9 that let nothing stop it.

    The executor's queues are inherited whole (reader and writer), so a worker waiting for a
    task never sees the end of the pipe; it would wait forever as an orphan.
    """
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(0)


def _outcome(call: Any, *args: Any) -> tuple[str, Any, dict[str, Any]]:
    try:
        return "ok", call(*args), {}
    except InvalidInput as exc:
        return "invalid", exc.message, exc.context
    except MemoryError:
        return "invalid", "needs more memory than a template may use", {}
    except Exception as exc:
        return "invalid", f"cannot be checked: {type(exc).__name__}: {exc}", {}


def _check(template: str, field: str, sample: dict[str, Any] | None) -> tuple[str, Any, Any]:
    return _outcome(templates.check, template, field, sample)


def _preview(template: str, contact: dict[str, Any]) -> tuple[str, Any, Any]:
    return _outcome(templates.preview, template, contact)


def _answer(field: str, status: str, value: Any, context: dict[str, Any]) -> Any:
    """A check's or preview's outcome: its value, or the InvalidInput it stands for."""
    if status == "ok":
        return value
    if value.startswith("Field "):
        raise InvalidInput(value, **context)
    raise InvalidInput(f"Field '{field}' {value}.", field=field)


class TemplateChecker:
    """A small process pool for `templates.check` and `templates.preview`, awaited off-loop."""

    def __init__(
        self,
        workers: int = WORKERS,
        task_seconds: float = TASK_SECONDS,
        memory_bytes: int = WORKER_MEMORY_BYTES,
    ) -> None:
        self.workers = workers
        self.task_seconds = task_seconds
        self.memory_bytes = memory_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._retired: list[ProcessPoolExecutor] = []
        # Every worker process any pool started: an executor forgets its processes once shut
        # down, so the checker keeps them to kill and join at the end.
        self._started: dict[int, BaseProcess] = {}
        self._slots: asyncio.Semaphore | None = None

    async def check(
        self, template: str, field: str = "message", sample: dict[str, Any] | None = None
    ) -> None:
        """Raise InvalidInput (422) naming `field` when the template cannot be used.

        A small plain template (text and a few `{{ name }}`) is checked here, in a millisecond
        or a few: a worker process is for what can compute, and waiting for one cost an edit
        about 150 ms on a busy machine."""
        if templates.is_small_plain(template):
            _answer(field, *_check(template, field, sample))
            return
        await self._run(field, _check, template, field, sample)

    async def preview(self, template: str, contact: dict[str, Any]) -> str:
        """The message as `contact` would get it; InvalidInput when it cannot be rendered."""
        if templates.is_small_plain(template):
            return str(_answer("message", *_preview(template, contact)))
        return str(await self._run("message", _preview, template, contact))

    async def _run(self, field: str, call: Any, *args: Any) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        # A task's time starts when a worker is free for it, not while it waits in line.
        async with self._slots:
            for attempt in (1, 2):
                pool = self._current_pool()
                try:
                    # submit() may start the worker processes: a spawn is too slow for the loop.
                    submitted = await asyncio.to_thread(pool.submit, call, *args)
                    future = asyncio.wrap_future(submitted)
                    self._started.update(_processes(pool))
                    status, value, context = await asyncio.wait_for(future, self.task_seconds)
                except TimeoutError:
                    self._discard(pool, "timeout")
                    raise InvalidInput(
                        f"Field '{field}' cannot be rendered: it took longer than"
                        f" {self.task_seconds:g} s to check.",
                        field=field,
                    ) from None
                except BrokenProcessPool:
                    # A worker died (this task's or another's); retry once on a fresh pool.
                    self._discard(pool, "broken")
                    if attempt == 2:
                        raise InvalidInput(
                            f"Field '{field}' cannot be rendered: checking it stopped its worker.",
                            field=field,
                        ) from None
                    continue
                return _answer(field, status, value, context)
        raise AssertionError("unreachable")

    def _current_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.memory_bytes, os.getpid()),
            )
        return self._pool

    def _discard(self, pool: ProcessPoolExecutor, reason: str) -> None:
        if self._pool is pool:
            self._pool = None
        self._retired = [p for p in self._retired if _alive(p)] + [pool]
        log_event("templates.pool_replaced", level=logging.WARNING, reason=reason)
        self._started.update(_processes(pool))
        _kill(pool)

    async def shutdown(self) -> None:
        """Stop every worker; none is left behind."""
        pools = [*self._retired, *([self._pool] if self._pool is not None else [])]
        self._pool, self._retired = None, []
        for pool in pools:
            self._started.update(_processes(pool))
            _kill(pool)
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        started, self._started = list(self._started.values()), {}
        for process in started:
            if process.is_alive():
                process.kill()
        await asyncio.to_thread(_join_all, started)


def _processes(pool: ProcessPoolExecutor) -> dict[int, BaseProcess]:
    return dict(getattr(pool, "_processes", None) or {})


def _join_all(processes: list[BaseProcess]) -> None:
    for process in processes:
        process.join(5)


def _alive(pool: ProcessPoolExecutor) -> bool:
    return any(process.is_alive() for process in _processes(pool).values())


def _kill(pool: ProcessPoolExecutor) -> None:
    # The executor has no public way to stop a running task; its processes are killed and the
    # executor, now broken, reaps them and fails what it still holds.
    for process in _processes(pool).values():
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
