"""The one small interface every delivery channel implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from campaignd.domain.errors import RuleViolation
from campaignd.domain.text import control_problem

# Raises RuleViolation when a URL may not be used (the target allowlist, resolved).
UrlGuard = Callable[[str], Awaitable[object]]
# The same for a host and port (SMTP).
HostGuard = Callable[[str, int], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One rendered message to one recipient."""

    campaign_id: int
    contact_id: int
    external_id: str
    address: str
    text: str
    subject: str | None = None
    variant: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Set on a test send: marked as a test, and a key of its own so that a receiver's
    # deduplication never swallows the real message that follows.
    test_id: str | None = None

    @property
    def test(self) -> bool:
        return self.test_id is not None

    @property
    def idempotency_key(self) -> str:
        key = f"{self.campaign_id}:{self.external_id}"
        return f"{key}:test:{self.test_id}" if self.test_id else key


def header_refusal(values: dict[str, str | None]) -> str | None:
    """Why one of these values cannot go into a header ("subject contains a line break")."""
    for name, value in values.items():
        problem = control_problem(name, value) if value is not None else None
        if problem is not None:
            return problem
    return None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one message after the channel's own retries."""

    ok: bool
    attempts: int = 1
    error: str | None = None
    # Seconds the far end asked us to wait (429 Retry-After); the sender slows down by it.
    throttled_seconds: float = 0.0
    # The recipient's domain said "try later" (SMTP 421/450/451/452/454): not a failure yet;
    # the sender holds that domain and tries this recipient again.
    domain_busy: bool = False
    # "hard" when the far end refused the recipient for good (SMTP 5xx): a hard bounce.
    bounce: str | None = None


class Channel(Protocol):
    """Sends messages over one account. Implementations retry transient failures themselves."""

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """Static facts about a channel kind: which config fields exist and which are secret."""

    kind: str
    required: frozenset[str]
    optional: frozenset[str]
    secret: frozenset[str]
    defaults: dict[str, Any] = field(default_factory=dict)


class CheckedTarget:
    """A channel's destination checked against the allowlist before its first send, then trusted."""

    def __init__(self, check: Callable[[], Awaitable[object]] | None) -> None:
        self._check = check
        self._passed = False

    @classmethod
    def url(cls, url: str, guard: UrlGuard | None) -> CheckedTarget:
        return cls(None if guard is None else lambda: guard(url))

    @classmethod
    def host(cls, host: str, port: int, guard: HostGuard | None) -> CheckedTarget:
        return cls(None if guard is None else lambda: guard(host, port))

    async def refusal(self) -> str | None:
        """None when the destination may be used; otherwise why not."""
        if self._passed or self._check is None:
            return None
        try:
            await self._check()
        except RuleViolation as exc:
            return exc.message
        self._passed = True
        return None
