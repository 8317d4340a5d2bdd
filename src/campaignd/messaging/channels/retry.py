"""Pure helpers for channels: backoff, Retry-After, signatures."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_SECONDS = 60.0


def backoff_seconds(
    attempt: int, base: float, cap: float = 5.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter before retry number `attempt` (1-based)."""
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def retry_after_seconds(
    value: str | None, now: datetime | None = None, default: float = 1.0
) -> float:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def signature(secret: str, body: bytes) -> str:
    """The X-Campaignd-Signature value for a body: sha256=<hex HMAC>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
