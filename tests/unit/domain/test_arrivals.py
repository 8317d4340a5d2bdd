"""The open-model clock: exact counts, no bursts, no drift, live rate changes, pause."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaignd.domain.arrivals import ArrivalSchedule


def test_constant_rate_gives_exact_count_and_even_spacing() -> None:
    schedule = ArrivalSchedule(rate=100.0, anchor=0.0)
    due = schedule.take_due(9.999999)
    assert len(due) == 1000
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(due)}
    assert gaps == {0.01}


@settings(deadline=None, max_examples=60)
@given(
    rate=st.floats(min_value=1 / 60, max_value=20_000),
    seconds=st.floats(min_value=0.1, max_value=30),
)
def test_no_drift_over_long_runs(rate: float, seconds: float) -> None:
    schedule = ArrivalSchedule(rate=rate, anchor=0.0)
    taken = 0
    t = 0.0
    while t < seconds:
        t = min(seconds, t + 0.05)
        taken += len(schedule.take_due(t))
    expected = int(seconds * rate) + 1
    assert abs(taken - expected) <= 1


def test_rate_increase_applies_at_once_without_a_burst() -> None:
    schedule = ArrivalSchedule(rate=1 / 60, anchor=0.0)
    assert schedule.take_due(10.0) == [0.0]
    schedule.set_rate(10.0, now=10.0)
    due = schedule.take_due(11.0)
    assert due[0] == pytest.approx(10.0)
    assert len(due) == 11


def test_rate_decrease_keeps_the_new_spacing_from_the_last_arrival() -> None:
    schedule = ArrivalSchedule(rate=100.0, anchor=0.0)
    schedule.take_due(1.0)
    schedule.set_rate(1.0, now=1.001)
    assert schedule.next_time == pytest.approx(2.0)


def test_pause_holds_the_clock_and_resume_brings_no_backlog() -> None:
    schedule = ArrivalSchedule(rate=10.0, anchor=0.0)
    assert len(schedule.take_due(0.95)) == 10
    schedule.pause(0.95)
    assert schedule.take_due(100.0) == []
    schedule.resume(100.0)
    due = schedule.take_due(101.0)
    assert len(due) == 10
    assert due[0] == pytest.approx(100.05)


def test_zero_rate_schedules_nothing_until_raised() -> None:
    schedule = ArrivalSchedule(rate=0.0, anchor=0.0)
    assert schedule.take_due(100.0) == []
    schedule.set_rate(2.0, now=100.0)
    assert len(schedule.take_due(101.0)) == 3


@settings(deadline=None, max_examples=200)
@given(
    rate=st.floats(min_value=1 / 60, max_value=20_000),
    taken=st.integers(min_value=0, max_value=50),
    now=st.floats(min_value=0, max_value=5),
)
def test_drop_through_matches_taking_one_by_one(rate: float, taken: int, now: float) -> None:
    fast = ArrivalSchedule(rate=rate, anchor=0.0)
    slow = ArrivalSchedule(rate=rate, anchor=0.0)
    fast.take_due(float("inf"), taken)
    slow.take_due(float("inf"), taken)
    dropped = fast.drop_through(now)
    expected = len(slow.take_due(now, limit=10**9))
    assert dropped == expected
    assert fast.next_time == slow.next_time > now or dropped == 0
