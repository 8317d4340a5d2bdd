"""Sending windows in a time zone, including ones that cross midnight."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaignd.domain.errors import InvalidInput
from campaignd.domain.windows import seconds_until_open, validate

PARIS = validate({"start": "09:00", "end": "18:00", "timezone": "Europe/Paris"})
NIGHT = validate({"start": "22:00", "end": "06:00", "timezone": "UTC"})


def test_inside_the_window_is_open_now() -> None:
    assert seconds_until_open(PARIS, datetime(2026, 6, 1, 10, 0, tzinfo=UTC)) == 0  # 12:00 Paris


def test_before_the_window_waits_until_it_opens() -> None:
    # 05:00 UTC is 07:00 in Paris (summer time): two hours to 09:00.
    assert seconds_until_open(PARIS, datetime(2026, 6, 1, 5, 0, tzinfo=UTC)) == 2 * 3600


def test_after_the_window_waits_until_tomorrow() -> None:
    assert seconds_until_open(PARIS, datetime(2026, 6, 1, 17, 0, tzinfo=UTC)) == 14 * 3600


def test_windows_across_midnight() -> None:
    assert seconds_until_open(NIGHT, datetime(2026, 6, 1, 23, 0, tzinfo=UTC)) == 0
    assert seconds_until_open(NIGHT, datetime(2026, 6, 1, 3, 0, tzinfo=UTC)) == 0
    assert seconds_until_open(NIGHT, datetime(2026, 6, 1, 12, 0, tzinfo=UTC)) == 10 * 3600


@pytest.mark.parametrize(
    "window",
    [
        {"start": "9", "end": "18:00"},
        {"start": "09:00", "end": "09:00"},
        {"start": "09:00", "end": "10:00", "timezone": "Mars/Base"},
        "9-5",
    ],
)
def test_bad_windows_are_refused(window: object) -> None:
    with pytest.raises(InvalidInput):
        validate(window)
