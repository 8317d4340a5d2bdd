"""Ramping arrival rates: stages of target rate over time, like k6's ramping-arrival-rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from campaignd.domain.errors import RuleViolation


@dataclass(frozen=True, slots=True)
class Stage:
    """Move the rate linearly from the previous stage's target to `target_rpm` over the stage."""

    duration_seconds: float
    target_rpm: float

    @classmethod
    def from_json(cls, data: Any, index: int = 0) -> Stage:
        where = f"stages[{index}]"
        if not isinstance(data, dict):
            raise RuleViolation(f"{where} must be an object with duration_minutes and target_rpm.")
        try:
            minutes = float(data["duration_minutes"])
            rpm = float(data["target_rpm"])
        except (KeyError, TypeError, ValueError):
            raise RuleViolation(
                f"{where} needs numbers duration_minutes and target_rpm.", field="stages"
            ) from None
        if not math.isfinite(minutes) or minutes <= 0:
            raise RuleViolation(f"{where}.duration_minutes must be > 0.", field="stages")
        if not math.isfinite(rpm) or rpm < 0:
            raise RuleViolation(f"{where}.target_rpm must be >= 0.", field="stages")
        return cls(duration_seconds=minutes * 60.0, target_rpm=rpm)


def parse_stages(raw: Sequence[Any]) -> tuple[Stage, ...]:
    if not raw:
        raise RuleViolation("stages must list at least one stage.", field="stages")
    return tuple(Stage.from_json(item, i) for i, item in enumerate(raw))


def total_seconds(stages: Sequence[Stage]) -> float:
    return sum(s.duration_seconds for s in stages)


def rate_at(stages: Sequence[Stage], start_rpm: float, t: float) -> float:
    """Requests per minute `t` seconds into the stages (the last target holds after the end)."""
    previous = start_rpm
    elapsed = 0.0
    if t <= 0:
        return start_rpm
    for stage in stages:
        if t < elapsed + stage.duration_seconds:
            fraction = (t - elapsed) / stage.duration_seconds
            return previous + (stage.target_rpm - previous) * fraction
        elapsed += stage.duration_seconds
        previous = stage.target_rpm
    return previous


def planned_requests(stages: Sequence[Stage], start_rpm: float, t: float) -> float:
    """How many requests the stages ask for in the first `t` seconds (the rate's integral)."""
    previous = start_rpm
    elapsed = 0.0
    total = 0.0
    for stage in stages:
        if t <= elapsed:
            return total
        span = min(t, elapsed + stage.duration_seconds) - elapsed
        end_rpm = rate_at(stages, start_rpm, elapsed + span)
        total += (previous + end_rpm) / 2.0 * span / 60.0
        elapsed += stage.duration_seconds
        previous = stage.target_rpm
    if t > elapsed:
        total += previous * (t - elapsed) / 60.0
    return total
