"""Per-domain pacing for one account: configured limits, and back-off when a domain says "later".

Shared by every campaign of the account, like the account's own pacer. A domain's limit is
a slot clock (next free slot); a 4xx "try later" answer holds just that domain, doubling the
hold each time it is refused again (1 s, 2 s, ... 60 s) and resetting after a success.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
# A recipient waits for its domain's slot with the slot reserved only this far ahead, so a
# stop never leaves minutes of slots taken; farther ones wait and ask again.
RESERVE_AHEAD_SECONDS = 10.0


@dataclass
class _DomainState:
    next_free: float = 0.0
    held_until: float = 0.0
    backoff: float = 0.0


@dataclass
class DomainThrottle:
    limits: dict[str, float] = field(default_factory=dict)  # domain -> messages per minute
    _domains: dict[str, _DomainState] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        """No limits and no domain ever held: every domain may send now."""
        return not self.limits and not self._domains

    def set_limits(self, limits: dict[str, float] | None) -> None:
        self.limits = {k.lower(): float(v) for k, v in (limits or {}).items()}

    def _state(self, domain: str) -> _DomainState:
        state = self._domains.get(domain)
        if state is None:
            state = self._domains[domain] = _DomainState()
        return state

    def reserve(self, domain: str, now: float) -> tuple[float, bool]:
        """Seconds until a message to `domain` may go, and whether a slot is reserved for it.

        (0, True): send now. (w, True): send in w seconds, the slot is yours. (w, False): come
        back in w seconds and ask again (the domain is held, or its queue is long).
        """
        if not domain:
            return 0.0, True
        state = self._domains.get(domain)
        if state is not None and state.held_until > now:
            return state.held_until - now, False
        rate = self.limits.get(domain)
        if not rate:
            return 0.0, True
        state = self._state(domain)
        slot = max(state.next_free, now)
        if slot - now > RESERVE_AHEAD_SECONDS:
            return slot - now - RESERVE_AHEAD_SECONDS, False
        state.next_free = slot + 60.0 / rate
        return slot - now, True

    def held_for(self, domain: str, now: float) -> float:
        state = self._domains.get(domain)
        return max(0.0, state.held_until - now) if state is not None else 0.0

    def back_off(self, domain: str, now: float) -> float:
        """The domain answered "try later": hold it (longer each time); return the hold left."""
        state = self._state(domain)
        if state.held_until <= now:  # concurrent refusals of one hold escalate it once
            state.backoff = min(
                BACKOFF_MAX_SECONDS, state.backoff * 2 if state.backoff else BACKOFF_FIRST_SECONDS
            )
            state.held_until = now + state.backoff
        return state.held_until - now

    def succeeded(self, domain: str) -> None:
        state = self._domains.get(domain)
        if state is not None:
            state.backoff = 0.0
