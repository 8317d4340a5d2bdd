"""Latency and outcome counts per window, in HDR histograms that merge without losing precision."""

from __future__ import annotations

import bisect
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def decode_histogram(encoded: str | bytes | None) -> HdrHistogram:
    if not encoded:
        return new_histogram()
    histogram = new_histogram()
    histogram.add(HdrHistogram.decode(encoded if isinstance(encoded, bytes) else encoded.encode()))
    return histogram


def percentiles(histogram: HdrHistogram, wanted: tuple[float, ...]) -> list[int]:
    """HdrHistogram.get_value_at_percentile for several percentiles in one C-speed pass.

    hdrh walks its counts in Python once per call (about 10 ms each at a few thousand
    buckets); a stall that long in the generator's loop would show up as latency.
    Each value is capped at the histogram's max, so p99 never exceeds max.
    """
    top_index = histogram._counts_index_for(histogram.max_value) + 1
    cumulative = list(itertools.accumulate(histogram.counts[:top_index]))
    ceiling = histogram.get_max_value()
    values = []
    for p in wanted:
        index = bisect.bisect_left(cumulative, histogram.get_target_count_at_percentile(p))
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
class WindowStats:
    """What one worker saw in one window: counts plus the latency histogram."""

    started_at: float
    seconds: float
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    latency_sum_us: int = 0
    histogram: HdrHistogram = field(default_factory=new_histogram)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    def merge(self, other: WindowStats) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.dropped += other.dropped
        self.latency_sum_us += other.latency_sum_us
        self.histogram.add(other.histogram)
        self.errors.update(other.errors)

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
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> WindowStats:
        return cls(
            started_at=data["started_at"],
            seconds=data["seconds"],
            succeeded=data["succeeded"],
            failed=data["failed"],
            dropped=data["dropped"],
            latency_sum_us=data.get("latency_sum_us", 0),
            histogram=decode_histogram(data["histogram"]),
            errors=Counter(data["errors"]),
        )


class WindowRecorder:
    """Collects outcomes as they happen; `cut()` hands over the window and starts a new one."""

    # Latencies wait as whole microseconds in a list and enter the histogram at the cut,
    # grouped by value: appending costs ~0.05 us where hdrh's record_value costs ~1.2 us.

    def __init__(self) -> None:
        self._window = WindowStats(started_at=time.time(), seconds=0.0)
        self._started = time.monotonic()
        self._micros: list[int] = []
        self._record = self._micros.append

    def success(self, latency_seconds: float) -> None:
        self._window.succeeded += 1
        self._record(round(latency_seconds * 1_000_000))

    def failure(self, latency_seconds: float, reason: str) -> None:
        self._window.failed += 1
        self._window.errors[reason] += 1
        self._record(round(latency_seconds * 1_000_000))

    def dropped(self, count: int = 1, reason: str | None = None) -> None:
        """Arrivals never sent; a reason, when given, is counted in `errors` too."""
        self._window.dropped += count
        if reason is not None:
            self._window.errors[reason] += count

    def cut(self) -> WindowStats:
        now = time.monotonic()
        window = self._window
        window.seconds = now - self._started
        record = window.histogram.record_value
        for micros, count in Counter(self._micros).items():
            clamped = min(max(micros, LOWEST_US), HIGHEST_US)
            record(clamped, count)
            window.latency_sum_us += clamped * count
        self._micros.clear()
        self._window = WindowStats(started_at=time.time(), seconds=0.0)
        self._started = now
        return window


def summarize(totals: WindowStats, active_seconds: float, target_rpm: float) -> dict[str, Any]:
    """The `stats` object of the info route, from merged windows and the generation time."""
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
        "latency_ms": latency_summary(totals.histogram, totals.latency_sum_us),
        "errors": dict(totals.errors),
    }
