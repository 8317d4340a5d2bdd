"""The open-model clock: request start times at a constant (changeable) arrival rate."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ArrivalSchedule:
    """Start times at `rate` per second, computed from an anchor so they never drift.

    The k-th arrival after the anchor is at `anchor + k / rate`; a rate change re-anchors
    at the next arrival, so the new rate applies at once without a burst or a gap.
    """

    rate: float
    anchor: float
    count: int = 0
    paused_at: float | None = None

    @property
    def next_time(self) -> float:
        if self.rate <= 0:
            return float("inf")
        return self.anchor + self.count / self.rate

    def take_due(self, now: float, limit: int = 10_000) -> list[float]:
        """Scheduled times up to `now` not yet taken, oldest first (at most `limit`)."""
        due: list[float] = []
        if self.paused_at is not None:
            return due
        while len(due) < limit:
            t = self.next_time
            if t > now:
                break
            due.append(t)
            self.count += 1
        return due

    def drop_through(self, now: float) -> int:
        """Drop every arrival due at or before `now` in O(1); return how many were dropped."""
        if self.paused_at is not None or self.rate <= 0 or self.next_time > now:
            return 0
        # Arithmetic first, then a float-safe nudge, so a backlog of any size costs the same.
        last = max(self.count, math.floor((now - self.anchor) * self.rate))
        while last > self.count and self.anchor + last / self.rate > now:
            last -= 1
        while self.anchor + (last + 1) / self.rate <= now:
            last += 1
        dropped = last + 1 - self.count
        self.count = last + 1
        return dropped

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate from `now` on: the next arrival moves to where the new rate puts it."""
        ref = self.paused_at if self.paused_at is not None else now
        if rate <= 0 or self.rate <= 0:
            nxt = ref
        elif self.count:
            last = self.anchor + (self.count - 1) / self.rate
            nxt = max(ref, last + 1.0 / rate)
        else:
            nxt = max(ref, min(self.anchor, ref + 1.0 / rate))
        self.rate, self.anchor, self.count = rate, nxt, 0

    def pause(self, now: float) -> None:
        if self.paused_at is None:
            self.paused_at = now

    def resume(self, now: float) -> None:
        """Continue with the same gap to the next arrival as when paused: no burst of backlog."""
        if self.paused_at is None:
            return
        held = now - self.paused_at
        self.paused_at = None
        self.anchor += held
