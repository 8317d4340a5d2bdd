"""Recipient domains: which domain an address is at, and per-domain limits."""

from __future__ import annotations

import math
import re
from typing import Any

from campaignd.domain.errors import InvalidInput

# SMTP answers that mean "not now, try later" (RFC 5321 4xx): a busy or throttling domain.
THROTTLE_CODES = frozenset({421, 450, 451, 452, 454})
MAX_RATE_PER_MINUTE = 6_000_000
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9-]{1,63})(\.[a-z0-9-]{1,63})*$")


def domain_of(address: str) -> str:
    """The lower-cased domain of an address ('' when it has none, e.g. a chat id)."""
    _, at, domain = address.rpartition("@")
    return domain.strip().lower().rstrip(".") if at else ""


def validate_limits(limits: Any, field: str = "domain_limits") -> dict[str, float] | None:
    """{"gmail.com": 600} normalized (lower-case domains), or InvalidInput naming the entry."""
    if limits is None:
        return None
    if not isinstance(limits, dict):
        raise InvalidInput(f"Field '{field}' must be an object of domain: rate.", field=field)
    result: dict[str, float] = {}
    for name, rate in limits.items():
        where = f"{field}.{name}"
        domain = str(name).strip().lower().rstrip(".")
        if not _DOMAIN.match(domain):
            raise InvalidInput(f"Field '{where}' is not a domain name.", field=where)
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or not 0 < rate <= MAX_RATE_PER_MINUTE
        ):
            raise InvalidInput(
                f"Field '{where}' must be messages per minute, above 0 and at most "
                f"{MAX_RATE_PER_MINUTE:,}.",
                field=where,
            )
        result[domain] = float(rate)
    return result
