"""Latency and outcome counts per window, in HDR histograms that merge without losing precision."""

from __future__ import annotations

import bisect
import ctypes
import itertools
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3


def _without_cycle(histogram: HdrHistogram) -> HdrHistogram:
    """hdrh's histogram and its encoder refer to each other, so a histogram dropped is only
    freed by the cyclic garbage collector, and its ~190 KB of counts with it: every new one
    then takes fresh memory from the kernel (page faults, ~0.1 ms a histogram, several per
    campaign and second). The encoder lives only inside its histogram, so it may refer to it
    weakly: a dropped histogram is freed at once and its memory reused."""
    histogram.encoder.histogram = weakref.proxy(histogram)
    return histogram


def new_histogram() -> HdrHistogram:
    return _without_cycle(HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS))


def decode_histogram(encoded: str | bytes | None) -> HdrHistogram:
    if not encoded:
        return new_histogram()
    histogram = new_histogram()
    decoded = HdrHistogram.decode(encoded if isinstance(encoded, bytes) else encoded.encode())
    histogram.add(_without_cycle(decoded))
    return histogram


# hdrh keeps its counts in a ctypes array of this native type; read through a memoryview
# (1.5x faster than slicing the array, which boxes each count through ctypes).
_PERCENTILE_BLOCK = 512
_COUNT_SIZE = ctypes.sizeof(new_histogram().counts._type_)
_COUNT_FORMAT: Literal["Q", "I", "H"] = (
    "Q" if _COUNT_SIZE == 8 else "I" if _COUNT_SIZE == 4 else "H"
)


def percentiles(histogram: HdrHistogram, wanted: tuple[float, ...]) -> list[int]:
    """HdrHistogram.get_value_at_percentile for several percentiles in one C-speed pass.

    hdrh walks its counts in Python once per call (about 10 ms each at a few thousand
    buckets); a stall that long in the generator's loop would show up as latency. Here the
    counts are added up in blocks, and only the block that holds a percentile is walked.
    Each value is capped at the histogram's max, so p99 never exceeds max.
    """
    top_index = histogram._counts_index_for(histogram.max_value) + 1
    counts = memoryview(histogram.counts).cast("B").cast(_COUNT_FORMAT)[:top_index]
    block = _PERCENTILE_BLOCK
    ends = list(
        itertools.accumulate(sum(counts[i : i + block]) for i in range(0, top_index, block))
    )
    ceiling = histogram.get_max_value()
    values = []
    for p in wanted:
        target = histogram.get_target_count_at_percentile(p)
        found = bisect.bisect_left(ends, target)
        if found >= len(ends):
            index = top_index - 1
        else:
            start = found * block
            before = ends[found - 1] if found else 0
            running = list(itertools.accumulate(counts[start : start + block], initial=before))
            index = start + bisect.bisect_left(running, target, lo=1) - 1
        value = histogram.get_value_from_index(min(index, top_index - 1))
        values.append(min(histogram.get_highest_equivalent_value(value), ceiling))
    return values


def latency_summary(histogram: HdrHistogram, latency_sum_us: int) -> dict[str, float]:
    """p50/p90/p99/max/mean in ms; percentiles capped at max from one histogram, so p99 <= max.

    The mean comes from the exact sum of latencies: hdrh's own mean walks every bucket in
    Python (about 35 ms a call), which an info route polled every second cannot afford.
    """
    count = histogram.get_total_count()
    if count == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    to_ms = 1000.0
    p50, p90, p99 = percentiles(histogram, (50, 90, 99))
    return {
        "p50": p50 / to_ms,
        "p90": p90 / to_ms,
        "p99": p99 / to_ms,
        "max": histogram.get_max_value() / to_ms,
        "mean": round(latency_sum_us / count / to_ms, 3),
    }


@dataclass
class StepStats:
    """One step's (or request name's) outcomes in a window."""

    requests: int = 0
    failed: int = 0
    latency_sum_us: int = 0
    histogram: HdrHistogram = field(default_factory=new_histogram)

    def merge(self, other: StepStats) -> None:
        self.requests += other.requests
        self.failed += other.failed
        self.latency_sum_us += other.latency_sum_us
        self.histogram.add(other.histogram)

    def to_wire(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "latency_sum_us": self.latency_sum_us,
            "histogram": self.histogram.encode().decode() if self.requests else "",
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> StepStats:
        return cls(
            requests=int(data["requests"]),
            failed=int(data["failed"]),
            latency_sum_us=int(data.get("latency_sum_us", 0)),
            histogram=decode_histogram(data.get("histogram")),
        )


@dataclass
class WindowStats:
    """What one worker saw in one window: counts plus the latency histogram.

    `steps` holds the same outcomes per step (journeys) or request name (plain profiles);
    `checks` maps (step, check) to [passes, fails]; `busy_users` is the most users with a
    request in flight at once in the window, `busy_now` how many had one when it was cut.
    """

    started_at: float
    seconds: float
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    latency_sum_us: int = 0
    histogram: HdrHistogram = field(default_factory=new_histogram)
    errors: Counter[str] = field(default_factory=Counter)
    steps: dict[str, StepStats] = field(default_factory=dict)
    checks: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    iterations: int = 0
    iterations_aborted: int = 0
    busy_users: int = 0
    busy_now: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    def merge(self, other: WindowStats) -> None:
        """Add a later (or a sibling's) window; the busy gauges keep the larger / latest."""
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.dropped += other.dropped
        self.latency_sum_us += other.latency_sum_us
        self.histogram.add(other.histogram)
        self.errors.update(other.errors)
        self.merge_steps(other)
        self.busy_users = max(self.busy_users, other.busy_users)
        self.busy_now = other.busy_now

    def merge_steps(self, other: WindowStats) -> None:
        for name, step in other.steps.items():
            mine = self.steps.get(name)
            if mine is None:
                self.steps[name] = mine = StepStats()
            mine.merge(step)
        for key, (passes, fails) in other.checks.items():
            counts = self.checks.setdefault(key, [0, 0])
            counts[0] += passes
            counts[1] += fails
        self.iterations += other.iterations
        self.iterations_aborted += other.iterations_aborted

    def steps_to_json(self) -> dict[str, Any] | None:
        """Per-step counts and histograms, checks and iterations, as stored with a window."""
        if not self.steps and not self.checks and not self.iterations_aborted:
            return None
        return {
            "steps": {name: s.to_wire() for name, s in self.steps.items()},
            "checks": [[step, name, p, f] for (step, name), (p, f) in self.checks.items()],
            "iterations": self.iterations,
            "iterations_aborted": self.iterations_aborted,
        }

    def add_steps_json(self, data: dict[str, Any] | None) -> None:
        """Add the steps, checks and iterations stored with a window (steps_to_json), each
        histogram decoded straight into this window's (no step made on the way)."""
        if not data:
            return
        for name, wire in (data.get("steps") or {}).items():
            mine = self.steps.get(name)
            if mine is None:
                self.steps[name] = mine = StepStats()
            mine.requests += int(wire["requests"])
            mine.failed += int(wire["failed"])
            mine.latency_sum_us += int(wire.get("latency_sum_us", 0))
            if wire.get("histogram"):
                mine.histogram.decode_and_add(wire["histogram"].encode())
        for step, name, passes, fails in data.get("checks") or ():
            counts = self.checks.setdefault((step, name), [0, 0])
            counts[0] += int(passes)
            counts[1] += int(fails)
        self.iterations += int(data.get("iterations") or 0)
        self.iterations_aborted += int(data.get("iterations_aborted") or 0)

    def to_wire(self) -> dict[str, Any]:
        """A picklable/JSON form for shipping between processes."""
        return {
            "started_at": self.started_at,
            "seconds": self.seconds,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "dropped": self.dropped,
            "latency_sum_us": self.latency_sum_us,
            "histogram": self.histogram.encode().decode() if self.total else "",
            "errors": dict(self.errors),
            "step_stats": self.steps_to_json(),
            "busy_users": self.busy_users,
            "busy_now": self.busy_now,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> WindowStats:
        window = cls(
            started_at=data["started_at"],
            seconds=data["seconds"],
            succeeded=data["succeeded"],
            failed=data["failed"],
            dropped=data["dropped"],
            latency_sum_us=data.get("latency_sum_us", 0),
            histogram=decode_histogram(data["histogram"]),
            errors=Counter(data["errors"]),
            busy_users=int(data.get("busy_users") or 0),
            busy_now=int(data.get("busy_now") or 0),
        )
        window.add_steps_json(data.get("step_stats"))
        return window


class WindowRecorder:
    """Collects outcomes as they happen; `cut()` hands over the window and starts a new one.

    Outcomes are recorded per step (a journey's step, or a plain profile's request name):
    `step` is the index into `step_names`. The window's overall histogram is the sum of the
    steps', so a request costs one list append either way.
    """

    # Latencies wait as whole microseconds in a list per step and enter the histograms at the
    # cut, grouped by value: appending costs ~0.05 us where hdrh's record_value costs ~1.2 us.

    def __init__(self, step_names: list[str] | tuple[str, ...] = ("",)) -> None:
        self.step_names = list(step_names) or [""]
        self._window = WindowStats(started_at=time.time(), seconds=0.0)
        self._started = time.monotonic()
        self._micros: list[list[int]] = [[] for _ in self.step_names]
        self._record = [m.append for m in self._micros]
        self._step_failed = [0] * len(self.step_names)
        self.busy_max = 0

    def success(self, latency_seconds: float, step: int = 0) -> None:
        self._window.succeeded += 1
        self._record[step](round(latency_seconds * 1_000_000))

    def failure(self, latency_seconds: float, reason: str, step: int = 0) -> None:
        self._window.failed += 1
        self._window.errors[reason] += 1
        self._step_failed[step] += 1
        self._record[step](round(latency_seconds * 1_000_000))

    def dropped(self, count: int = 1, reason: str | None = None) -> None:
        """Arrivals never sent; a reason, when given, is counted in `errors` too."""
        self._window.dropped += count
        if reason is not None:
            self._window.errors[reason] += count

    def check(self, step: int, name: str, passed: bool) -> None:
        key = (self.step_names[step], name)
        counts = self._window.checks.get(key)
        if counts is None:
            self._window.checks[key] = counts = [0, 0]
        counts[0 if passed else 1] += 1

    def iteration(self, aborted: bool = False) -> None:
        if aborted:
            self._window.iterations_aborted += 1
        else:
            self._window.iterations += 1

    def cut(self, busy_now: int = 0) -> WindowStats:
        now = time.monotonic()
        window = self._window
        window.seconds = now - self._started
        for index, micros in enumerate(self._micros):
            if not micros:
                continue
            step = StepStats(requests=len(micros), failed=self._step_failed[index])
            record = step.histogram.record_value
            for value, count in Counter(micros).items():
                clamped = min(max(value, LOWEST_US), HIGHEST_US)
                record(clamped, count)
                step.latency_sum_us += clamped * count
            micros.clear()
            self._step_failed[index] = 0
            window.histogram.add(step.histogram)
            window.latency_sum_us += step.latency_sum_us
            window.steps[self.step_names[index]] = step
        window.busy_users = max(self.busy_max, busy_now)
        window.busy_now = busy_now
        self.busy_max = busy_now
        self._window = WindowStats(started_at=time.time(), seconds=0.0)
        self._started = now
        return window


class LatencyMemo:
    """Latency summaries of histograms that only grow (a campaign's merged totals), each
    worked out again only when its count or sum changed: summarising walks thousands of
    buckets, and an info route is asked more often than a new window arrives."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[int, int, dict[str, float]]] = {}

    def summary(self, key: str, histogram: HdrHistogram, latency_sum_us: int) -> dict[str, float]:
        count = histogram.get_total_count()
        kept = self._kept.get(key)
        if kept is None or kept[0] != count or kept[1] != latency_sum_us:
            kept = (count, latency_sum_us, latency_summary(histogram, latency_sum_us))
            self._kept[key] = kept
        return dict(kept[2])


def step_summary(name: str, step: StepStats, memo: LatencyMemo | None = None) -> dict[str, Any]:
    latency = (
        memo.summary(f"step:{name}", step.histogram, step.latency_sum_us)
        if memo is not None
        else latency_summary(step.histogram, step.latency_sum_us)
    )
    return {
        "name": name,
        "requests": step.requests,
        "failed": step.failed,
        "p50": latency["p50"],
        "p90": latency["p90"],
        "p99": latency["p99"],
        "max": latency["max"],
        "mean": latency["mean"],
    }


def summarize(
    totals: WindowStats,
    active_seconds: float,
    target_rpm: float,
    step_order: list[str] | tuple[str, ...] = (),
    memo: LatencyMemo | None = None,
) -> dict[str, Any]:
    """The `stats` object of the info route, from merged windows and the generation time.

    Steps come in `step_order` (the profiles' order), then any other name seen. `memo` only
    for totals that grow by merging alone (it keys each summary on its count and sum).
    """
    latency = (
        memo.summary("", totals.histogram, totals.latency_sum_us)
        if memo is not None
        else latency_summary(totals.histogram, totals.latency_sum_us)
    )
    total = totals.succeeded + totals.failed
    minutes = active_seconds / 60.0
    return {
        "requests_total": total,
        "requests_succeeded": totals.succeeded,
        "requests_failed": totals.failed,
        "requests_dropped": totals.dropped,
        "success_rate": round(totals.succeeded / total, 6) if total else 0.0,
        "achieved_rpm": round(total / minutes, 3) if minutes > 0 else 0.0,
        "target_rpm": target_rpm,
        "active_seconds": round(active_seconds, 3),
        "latency_ms": latency,
        "errors": dict(totals.errors),
        "steps": [
            step_summary(name, totals.steps[name], memo) for name in _ordered(totals, step_order)
        ],
        "checks": [
            {"step": step, "name": name, "passes": passes, "fails": fails}
            for (step, name), (passes, fails) in totals.checks.items()
        ],
        "iterations": totals.iterations,
        "iterations_aborted": totals.iterations_aborted,
        "busy_users": totals.busy_now,
    }


def _ordered(totals: WindowStats, step_order: list[str] | tuple[str, ...]) -> list[str]:
    known = [name for name in step_order if name in totals.steps]
    return known + [name for name in totals.steps if name not in set(step_order)]


def check_rate(totals: WindowStats) -> float | None:
    """Passed checks / all checks (None without checks), like k6's `checks` rate."""
    passes = sum(p for p, _ in totals.checks.values())
    fails = sum(f for _, f in totals.checks.values())
    return passes / (passes + fails) if passes + fails else None
