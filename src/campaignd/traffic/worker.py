"""One load worker: an asyncio loop, a keep-alive connection per virtual user, open-model arrivals.

The hot path runs on callbacks, not coroutines: a timer takes the arrivals that are due and
writes each one's pre-encoded request on a free user's connection; the response parser's
completion callback records the outcome and frees the user. Nothing per request needs a Task.
All times are `time.monotonic()` seconds, the clock every process on the machine shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import math
import random
import ssl
import time
from collections import deque
from collections.abc import Callable

from campaignd.domain.arrivals import ArrivalSchedule
from campaignd.domain.journeys import TemplateFailure
from campaignd.domain.weights import WeightedChoice
from campaignd.traffic.connections import ConnectionBudget, process_budget
from campaignd.traffic.http import (
    HttpConnection,
    HttpTarget,
    JourneyConnection,
    encode_request,
    open_connection,
)
from campaignd.traffic.journey import CompiledJourney, JourneyState
from campaignd.traffic.plan import LoadPlan, UserProfile
from campaignd.traffic.stats import WindowRecorder, WindowStats

# How often in-flight requests are checked against the request timeout.
TIMEOUT_SWEEP_SECONDS = 0.25
# In closed-loop mode a user whose request failed waits this long, so a refused port
# does not turn into a busy loop.
CLOSED_LOOP_BACKOFF_SECONDS = 0.01
# An arrival this close to the deadline counts as at it: float noise must not add one more.
DEADLINE_TOLERANCE = 1e-6
# Failure reasons, in `stats.errors`; a request still unanswered when the drain ends was
# sent all the same, so it is counted, not forgotten.
CANCELLED_AT_STOP = "cancelled at stop"
CANCELLED_CONNECTING = "cancelled at stop while connecting"
# Why an arrival was dropped instead of sent (also in `stats.errors`, beside the failures).
NO_FREE_SLOT = "dropped: no free connection slot"
EVERY_USER_BUSY = "dropped: every user busy"
_ERRNO_REASONS = {
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
    errno.EADDRNOTAVAIL: "no free local port",
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
}

_now = time.monotonic

Request = tuple[bytes, bool, int]  # (encoded request, is HEAD, index of its stats name)
TEMPLATE_FAILED = "template failed"


class _VirtualUser:
    __slots__ = (
        "base_think",
        "choice",
        "conn",
        "journey",
        "on_done",
        "scheduled",
        "single",
        "step",
        "think",
    )

    def __init__(
        self,
        profile: UserProfile,
        requests: list[Request],
        rng: random.Random,
        journey: JourneyState | None = None,
    ) -> None:
        self.single: Request | None = requests[0] if len(requests) == 1 else None
        self.choice = (
            WeightedChoice(requests, [r.weight for r in profile.requests], rng)
            if requests
            else None
        )
        self.think = self.base_think = profile.think_time_seconds
        self.conn: HttpConnection | None = None
        self.scheduled = 0.0
        self.step = 0
        self.journey = journey
        self.on_done: functools.partial[None] | None = None

    def pick(self) -> Request:
        if self.single is not None:
            return self.single
        assert self.choice is not None
        return self.choice.pick()


def failure_reason(exc: BaseException) -> str:
    """A short, human-readable reason for a failed connect."""
    if isinstance(exc, OSError) and exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return type(exc).__name__


class LoadWorker:
    """Starts each request at its scheduled time on a free virtual user; records what happened.

    Latency is measured from the scheduled start, so a slow target or a busy generator shows
    up in the figures instead of silently lowering the rate (no coordinated omission). A
    request whose time comes while every user is busy is dropped and counted, never hidden.

    With `workers` > 1 this worker takes `1/workers` of the rate, its first arrival offset by
    `worker_index / rate`, so the merged stream of all workers stays evenly spaced. A rate of
    `math.inf` means closed loop: every user sends again as soon as it is free (benchmarks).

    Sockets come from the process's ConnectionBudget. While it has room each user keeps its
    own keep-alive connection; once it is spent, a user that finishes lends its connection
    to the next user without one, and an arrival that finds neither a connection nor a slot
    is dropped (counted under NO_FREE_SLOT). In closed loop such a user waits for a slot.
    """

    def __init__(
        self,
        plan: LoadPlan,
        *,
        worker_index: int = 0,
        workers: int = 1,
        seed: int | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.plan = plan
        self._budget = budget if budget is not None else process_budget()
        self._timeout_reason = f"timeout after {plan.request_timeout_seconds:g} s"
        self._share = 1.0 / workers
        self._phase = worker_index
        self._target = HttpTarget.parse(plan.target_url, plan.target_addresses)
        self._ssl = ssl.create_default_context() if self._target.tls else None
        rng = random.Random(seed)
        names = plan.step_names
        encoded: dict[int, list[Request]] = {
            id(p): [
                (encode_request(r, self._target), r.method == "HEAD", names.index(r.stats_name))
                for r in p.requests
            ]
            for p in plan.profiles
        }
        # Each journey profile is compiled once per worker, however many users run it.
        journeys = {
            id(p): CompiledJourney.build(p, self._target, names)
            for p in plan.profiles
            if p.is_journey
        }
        self._connection_class = JourneyConnection if journeys else HttpConnection
        self._users = []
        for index, profile in plan.indexed_users_for(worker_index, workers):
            journey = journeys.get(id(profile))
            state = JourneyState(journey, index, rng) if journey is not None else None
            user = _VirtualUser(profile, encoded[id(profile)], rng, state)
            finished = self._finished if state is None else self._finished_step
            user.on_done = functools.partial(finished, user)
            self._users.append(user)
        self._free: deque[_VirtualUser] = deque(self._users)
        # Idle connections lent by users that finished while the budget was spent.
        self._spare: list[HttpConnection] = []
        self._inflight: set[_VirtualUser] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._rate = plan.rate_per_second
        self._recorder = WindowRecorder(names)
        self._schedule = ArrivalSchedule(rate=0.0, anchor=_now())
        self._paused = False
        self._stopping = False
        self._deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    @property
    def closed_loop(self) -> bool:
        return math.isinf(self._rate)

    # commands -------------------------------------------------------------------------
    def set_rate(self, rate_per_second: float) -> None:
        """The campaign's total rate; this worker takes its share from the next arrival on."""
        was_closed = self.closed_loop
        self._rate = rate_per_second
        if self._loop is None:
            return
        own = 0.0 if self.closed_loop else rate_per_second * self._share
        self._schedule.set_rate(own, _now())
        if self.closed_loop and not was_closed:
            self._kick_free_users()
            self._arm_sweeper()
        self._arm()

    def set_deadline(self, deadline: float | None) -> None:
        """Start no arrival scheduled at `deadline` (time.monotonic()) or later; None: no end."""
        self._deadline = deadline
        self._arm()

    def pause(self, at: float | None = None) -> None:
        """Hold the clock from `at` (time.monotonic(), default now): the driver's own instant."""
        self._paused = True
        self._schedule.pause(_now() if at is None else at)
        self._arm()

    def resume(self, at: float | None = None) -> None:
        self._paused = False
        self._schedule.resume(_now() if at is None else at)
        if self.closed_loop:
            self._kick_free_users()
        self._arm()

    def stop(self) -> None:
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def cut_window(self) -> WindowStats:
        return self._recorder.cut(len(self._inflight))

    # lifecycle ------------------------------------------------------------------------
    async def run(
        self,
        drain_seconds: float = 0.5,
        start_at: float | None = None,
        on_counted: Callable[[], None] | None = None,
    ) -> None:
        """Generate until stop(); give in-flight requests `drain_seconds`, then close them.

        `start_at` (time.monotonic()) is the first arrival's time; several processes given the
        same instant share one clock. `on_counted` runs once every request is counted, before
        the connections are closed (closing thousands of them can take a while).
        """
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        start = _now() if start_at is None else start_at
        if self.closed_loop:
            self._schedule = ArrivalSchedule(rate=0.0, anchor=start)
        else:
            own = self._rate * self._share
            offset = self._phase / self._rate if self._rate > 0 else 0.0
            self._schedule = ArrivalSchedule(rate=own, anchor=start + offset)
        if self._paused:
            self._schedule.pause(start)
        self._sweeper = self._loop.call_later(TIMEOUT_SWEEP_SECONDS, self._sweep)
        if self.closed_loop:
            self._kick_free_users()
        self._arm()
        if self._stopping:
            self._stopped.set_result(None)
        try:
            await self._stopped
        finally:
            await self._drain(drain_seconds, on_counted)

    async def _drain(
        self, drain_seconds: float, on_counted: Callable[[], None] | None = None
    ) -> None:
        """Give in-flight requests `drain_seconds`; count the rest as cancelled; close all."""
        assert self._loop is not None
        self.stop()
        if self._inflight and drain_seconds > 0:
            self._drained = self._loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drained), drain_seconds)
        if self._sweeper is not None:
            self._sweeper.cancel()
        now = _now()
        for user in self._inflight:
            reason = CANCELLED_AT_STOP if user.conn is not None else CANCELLED_CONNECTING
            self._recorder.failure(now - user.scheduled, reason, user.step)
        self._inflight.clear()
        if on_counted is not None:
            on_counted()
        for task in list(self._connecting):
            task.cancel()
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        for user in self._users:
            if user.conn is not None:
                user.conn.close()
                user.conn = None
        for conn in self._spare:
            conn.close()
        self._spare.clear()
        # Let the transports run their connection_lost callbacks and free their sockets.
        await asyncio.sleep(0)

    # the hot path ---------------------------------------------------------------------
    def _arm(self) -> None:
        """(Re)set the timer to the next arrival, or none while paused, stopped or past the end."""
        if self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stopping or self._paused or self.closed_loop:
            return
        due = self._schedule.next_time
        if math.isinf(due) or (
            self._deadline is not None and due >= self._deadline - DEADLINE_TOLERANCE
        ):
            return
        loop = self._loop
        self._timer = loop.call_at(loop.time() + (due - _now()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = _now()
        if self._deadline is not None:
            now = min(now, self._deadline - DEADLINE_TOLERANCE)
        schedule, free = self._schedule, self._free
        if free:
            dispatch = self._dispatch
            for scheduled in schedule.take_due(now, len(free)):
                user = free.popleft()
                if not dispatch(user, scheduled):
                    free.append(user)
                    self._recorder.dropped(1, NO_FREE_SLOT)
        dropped = schedule.drop_through(now)
        if dropped:
            self._recorder.dropped(dropped, EVERY_USER_BUSY)
        busy = len(self._inflight)
        if busy > self._recorder.busy_max:
            self._recorder.busy_max = busy
        self._arm()

    def _kick_free_users(self) -> None:
        now = _now()
        free = self._free
        while free and self._may_start(now):
            user = free.popleft()
            if not self._dispatch(user, now):
                free.appendleft(user)  # waits for a slot: the sweep kicks it again
                return

    def _may_start(self, now: float) -> bool:
        return (
            not self._stopping
            and not self._paused
            and (self._deadline is None or now < self._deadline)
        )

    def _dispatch(self, user: _VirtualUser, scheduled: float) -> bool:
        """Send the user's next request; False if it has no connection and no slot for one."""
        conn = user.conn
        if conn is None or conn.closed:
            conn = self._borrow(user)
            if conn is None:
                return self._connect(user, scheduled)
        if user.journey is not None:
            return self._dispatch_step(user, scheduled, conn)
        payload, head, user.step = user.pick()
        user.scheduled = scheduled
        self._inflight.add(user)
        self._arm_sweeper()
        conn.send(payload, head)
        return True

    def _dispatch_step(self, user: _VirtualUser, scheduled: float, conn: HttpConnection) -> bool:
        """Send the user's current journey step (a template that fails counts as the step's
        failure and aborts the iteration)."""
        journey = user.journey
        assert journey is not None
        user.step = journey.stats_index
        user.scheduled = scheduled
        try:
            payload, head = journey.request()
        except TemplateFailure as exc:
            self._template_failed(user, exc)
            return True
        self._inflight.add(user)
        self._arm_sweeper()
        journey.prepare(conn)  # type: ignore[arg-type]
        conn.send(payload, head)
        return True

    def _template_failed(self, user: _VirtualUser, exc: TemplateFailure) -> None:
        assert user.journey is not None
        self._recorder.failure(_now() - user.scheduled, f"{TEMPLATE_FAILED}: {exc}", user.step)
        self._recorder.iteration(aborted=True)
        user.journey.restart(aborted=True)
        self._release(user, failed=True)

    def _borrow(self, user: _VirtualUser) -> HttpConnection | None:
        """Hand the user an idle connection another user lent, if one is still open."""
        spare = self._spare
        while spare:
            conn = spare.pop()
            if not conn.closed:
                assert user.on_done is not None
                conn.lend(user.on_done)
                user.conn = conn
                return conn
        user.conn = None
        return None

    def _connect(self, user: _VirtualUser, scheduled: float) -> bool:
        if not self._budget.try_acquire():
            return False
        user.scheduled = scheduled
        if user.journey is not None:
            user.step = user.journey.stats_index
            try:
                payload, head = user.journey.request()
            except TemplateFailure as exc:
                self._budget.release()
                self._template_failed(user, exc)
                return True
        else:
            payload, head, user.step = user.pick()
        self._inflight.add(user)
        self._arm_sweeper()
        assert self._loop is not None
        task = self._loop.create_task(self._connect_and_send(user, payload, head))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return True

    async def _connect_and_send(self, user: _VirtualUser, payload: bytes, head: bool) -> None:
        assert user.on_done is not None
        try:
            async with asyncio.timeout(self.plan.request_timeout_seconds):
                conn = await open_connection(
                    self._target,
                    user.on_done,
                    self._ssl,
                    self._budget,
                    self._connection_class,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if user in self._inflight:
                self._inflight.discard(user)
                timed_out = isinstance(exc, TimeoutError)
                reason = self._timeout_reason if timed_out else failure_reason(exc)
                self._recorder.failure(_now() - user.scheduled, reason, user.step)
                self._step_outcome(user, 0, None)
                self._release(user, failed=True)
                self._check_drained()
            return
        if user not in self._inflight:  # counted at the stop while connecting
            conn.close()
            return
        user.conn = conn
        if user.journey is not None:
            user.journey.prepare(conn)  # type: ignore[arg-type]
        conn.send(payload, head)

    def _finished(self, user: _VirtualUser, conn: HttpConnection, status: int, _: bool) -> None:
        if conn is not user.conn or user not in self._inflight:
            return  # a late callback from a connection already given up on
        self._inflight.discard(user)
        latency = _now() - user.scheduled
        if status == 0:
            user.conn = None
            self._recorder.failure(latency, "connection lost", user.step)
        elif status < 400:
            self._recorder.success(latency, user.step)
        else:
            self._recorder.failure(latency, f"HTTP {status}", user.step)
        # The same as _settle, inline: this is the hot path of plain profiles.
        if conn.closed:
            user.conn = None
        elif self._budget.open >= self._budget.limit:
            # No socket left to open: the next user without a connection takes this one.
            user.conn = None
            self._spare.append(conn)
        self._release(user, failed=status == 0 or status >= 500)
        if self._drained is not None and not self._inflight and not self._drained.done():
            self._drained.set_result(None)

    def _finished_step(
        self, user: _VirtualUser, conn: HttpConnection, status: int, _: bool
    ) -> None:
        """A journey step answered: count it, run its checks and extractions, move on."""
        if conn is not user.conn or user not in self._inflight:
            return
        self._inflight.discard(user)
        latency = _now() - user.scheduled
        if status == 0:
            user.conn = None
            self._recorder.failure(latency, "connection lost", user.step)
        elif status < 400:
            self._recorder.success(latency, user.step)
        else:
            self._recorder.failure(latency, f"HTTP {status}", user.step)
        self._step_outcome(user, status, conn if status else None)  # type: ignore[arg-type]
        self._settle(user, conn, status)

    def _step_outcome(
        self, user: _VirtualUser, status: int, conn: JourneyConnection | None
    ) -> None:
        """Checks and extractions of the user's current step; the think time that follows."""
        journey = user.journey
        if journey is None:
            return
        step = journey.current
        checks, ended = journey.answered(status, conn)
        recorder = self._recorder
        for name, passed in checks:
            recorder.check(user.step, name, passed)
        if ended is not None:
            recorder.iteration(aborted=ended)
        user.think = journey.think_seconds(step, user.base_think)

    def _settle(self, user: _VirtualUser, conn: HttpConnection, status: int) -> None:
        if conn.closed:
            user.conn = None
        elif self._budget.open >= self._budget.limit:
            user.conn = None
            self._spare.append(conn)
        self._release(user, failed=status == 0 or status >= 500)
        self._check_drained()

    def _check_drained(self) -> None:
        if self._drained is not None and not self._inflight and not self._drained.done():
            self._drained.set_result(None)

    def _release(self, user: _VirtualUser, *, failed: bool = False) -> None:
        if self._stopping:
            self._free.append(user)
            return
        assert self._loop is not None
        wait = user.think
        if failed and self.closed_loop:
            wait = max(wait, CLOSED_LOOP_BACKOFF_SECONDS)
        if wait:
            self._loop.call_later(wait, self._user_free, user)
        else:
            self._user_free(user)

    def _user_free(self, user: _VirtualUser) -> None:
        if self.closed_loop:
            now = _now()
            if self._may_start(now) and self._dispatch(user, now):
                return
        self._free.append(user)

    def _sweep(self) -> None:
        """Fail requests older than the request timeout and close their connections.

        A user still connecting is left to its connect's own timeout, so a connection that
        opens late can never carry a newer request of the same user.
        """
        assert self._loop is not None
        self._sweeper = None  # this one has run; any request sent from here arms the next
        now = _now()
        limit = self.plan.request_timeout_seconds
        expired = [u for u in self._inflight if u.conn is not None and now - u.scheduled > limit]
        for user in expired:
            self._inflight.discard(user)
            self._recorder.failure(now - user.scheduled, self._timeout_reason, user.step)
            self._step_outcome(user, 0, None)
            conn, user.conn = user.conn, None
            if conn is not None:
                conn.close()
            self._release(user, failed=True)
        self._check_drained()
        if not self._stopping:
            if self.closed_loop and self._free:
                self._kick_free_users()  # users that waited for a connection slot
            if self._inflight or self.closed_loop:
                self._arm_sweeper()
            # else asleep until a request is in flight again (at a low rate, most of the time)

    def _arm_sweeper(self) -> None:
        """Sweep TIMEOUT_SWEEP_SECONDS from now, unless a sweep is due already."""
        if self._sweeper is None and not self._stopping and self._loop is not None:
            self._sweeper = self._loop.call_later(TIMEOUT_SWEEP_SECONDS, self._sweep)
