"""Sending windows: the hours of the day (in a time zone) when messages may go out."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaignd.domain.errors import InvalidInput


def _clock(value: Any, field: str) -> time:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise InvalidInput(f"Field '{field}' must be a time like 09:00.", field=field) from None


def validate(window: Any, field: str = "send_window") -> dict[str, str] | None:
    """Normalize {"start": "09:00", "end": "18:00", "timezone": "Europe/Paris"} or refuse it."""
    if window is None:
        return None
    if not isinstance(window, dict):
        raise InvalidInput(
            f"Field '{field}' must be an object with start, end, timezone.", field=field
        )
    start = _clock(window.get("start"), f"{field}.start")
    end = _clock(window.get("end"), f"{field}.end")
    zone = str(window.get("timezone", "UTC"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"Field '{field}.timezone' names no known time zone.", field=field
        ) from None
    if start == end:
        raise InvalidInput(f"Field '{field}' must not start and end at the same time.", field=field)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": zone}


def seconds_until_open(window: dict[str, str] | None, now: datetime) -> float:
    """0 inside the window; otherwise how long until it opens (windows may cross midnight)."""
    if not window:
        return 0.0
    zone = ZoneInfo(window["timezone"])
    local = now.astimezone(zone)
    start, end = _clock(window["start"], "start"), _clock(window["end"], "end")
    t = local.time()
    inside = start <= t < end if start < end else (t >= start or t < end)
    if inside:
        return 0.0
    opening = datetime.combine(local.date(), start, tzinfo=zone)
    if opening <= local:
        opening += timedelta(days=1)
    return (opening - local).total_seconds()
