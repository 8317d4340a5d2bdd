"""Spacing sends at a rate: a virtual-clock pacer (GCRA), with room for a server's Retry-After."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pacer:
    """Hands out send times at most `rate_per_minute` apart; None means unlimited.

    State is one number (the next free slot), so keeping the pacer across a stop and a
    resume keeps the rate: a resumed campaign never bursts to catch up.
    """

    rate_per_minute: float | None
    next_free: float = 0.0

    def reserve(self, now: float) -> float:
        """Claim the next slot; return how long to wait for it (0 when it is now)."""
        if not self.rate_per_minute:
            return max(0.0, self.next_free - now)
        slot = max(self.next_free, now)
        self.next_free = slot + 60.0 / self.rate_per_minute
        return slot - now

    def idle(self, now: float) -> bool:
        """No rate and no hold: reserve(now) would be 0 and change nothing."""
        return not self.rate_per_minute and self.next_free <= now

    def hold(self, now: float, seconds: float) -> None:
        """The far end asked us to wait (429 Retry-After): no slot before now + seconds."""
        self.next_free = max(self.next_free, now + seconds)

    def set_rate(self, rate_per_minute: float | None) -> None:
        self.rate_per_minute = rate_per_minute
