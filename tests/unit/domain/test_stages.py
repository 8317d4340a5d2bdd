"""Ramping rates: linear between targets, the last target holds, the count is the integral."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaignd.domain.errors import RuleViolation
from campaignd.domain.stages import Stage, parse_stages, planned_requests, rate_at, total_seconds

RAMP = parse_stages(
    [
        {"duration_minutes": 1, "target_rpm": 600},
        {"duration_minutes": 2, "target_rpm": 600},
        {"duration_minutes": 1, "target_rpm": 0},
    ]
)


def test_rate_moves_linearly_from_the_previous_target() -> None:
    assert rate_at(RAMP, 0.0, 0) == 0
    assert rate_at(RAMP, 0.0, 30) == pytest.approx(300)
    assert rate_at(RAMP, 0.0, 90) == 600
    assert rate_at(RAMP, 0.0, 210) == pytest.approx(300)
    assert rate_at(RAMP, 0.0, 10_000) == 0


def test_the_first_stage_starts_from_the_start_rate() -> None:
    assert rate_at(RAMP, 1200.0, 30) == pytest.approx(900)


def test_planned_requests_is_the_area_under_the_rate() -> None:
    assert total_seconds(RAMP) == 240
    assert planned_requests(RAMP, 0.0, 60) == pytest.approx(300)
    assert planned_requests(RAMP, 0.0, 240) == pytest.approx(300 + 1200 + 300)


@settings(deadline=None, max_examples=100)
@given(
    stages=st.lists(st.tuples(st.floats(0.01, 10), st.floats(0, 100_000)), min_size=1, max_size=6),
    start=st.floats(0, 100_000),
    t=st.floats(0, 1_000),
)
def test_rate_stays_between_its_neighbouring_targets(
    stages: list[tuple[float, float]], start: float, t: float
) -> None:
    parsed = [Stage(m * 60, rpm) for m, rpm in stages]
    targets = [start, *(rpm for _, rpm in stages)]
    rate = rate_at(parsed, start, t)
    assert min(targets) - 1e-6 <= rate <= max(targets) + 1e-6
    # The integral grows with time, never faster than the highest target allows.
    assert 0 <= planned_requests(parsed, start, t) <= max(targets) * t / 60 + 1e-6


@pytest.mark.parametrize(
    "raw",
    [[], [{"duration_minutes": 0, "target_rpm": 1}], [{"duration_minutes": 1}], ["x"]],
)
def test_bad_stages_are_refused_with_a_sentence(raw: list[object]) -> None:
    with pytest.raises(RuleViolation):
        parse_stages(raw)
