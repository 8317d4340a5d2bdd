"""When a bounce suppresses an address."""

from __future__ import annotations

from datetime import timedelta

HARD, SOFT = "hard", "soft"
SOFT_WINDOW = timedelta(days=30)
SOFT_LIMIT = 3


def suppression_reason(kind: str, soft_in_window: int, reason: str | None) -> str | None:
    """The suppression's reason if this bounce suppresses the address, else None.

    `soft_in_window` counts soft bounces within SOFT_WINDOW including this one.
    """
    detail = f": {reason}" if reason else ""
    if kind == HARD:
        return f"hard bounce{detail}"[:200]
    if soft_in_window >= SOFT_LIMIT:
        return f"{soft_in_window} soft bounces within 30 days{detail}"[:200]
    return None
