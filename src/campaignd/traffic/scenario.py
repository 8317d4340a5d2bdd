"""Scenario files for `campaignd traffic run`: YAML in the API's shapes, checked before any load."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from campaignd.api.schemas.traffic import (
    MAX_DURATION_MINUTES,
    ProfileCreate,
    Stage,
    stage_minutes,
    target_url_path,
)
from campaignd.domain.errors import InvalidInput, RuleViolation
from campaignd.domain.journeys import check_profile
from campaignd.domain.stages import Stage as RampStage
from campaignd.domain.thresholds import Threshold, parse_threshold
from campaignd.traffic.plan import LoadPlan, UserProfile


class ScenarioError(RuleViolation):
    """Raised when a scenario file cannot be read or does not describe a valid run."""


class ScenarioOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # 0: automatic (in-process up to 200 req/s, else one process per core), as in the server.
    workers: int = Field(default=0, ge=0, le=512)
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    drain_seconds: float = Field(default=0.5, ge=0, le=60)


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="scenario", min_length=1, max_length=200)
    target: str = Field(min_length=1, max_length=2000)
    profiles: list[ProfileCreate] = Field(min_length=1, max_length=100)
    users: int = Field(ge=1, le=1_000_000)
    # "max": closed loop, every user sends again as soon as it is free.
    rpm: float | Literal["max"] | None = None
    duration_minutes: float | None = Field(default=None, gt=0, le=MAX_DURATION_MINUTES)
    start_rpm: float = Field(default=0.0, ge=0, le=60_000_000)
    stages: list[Stage] | None = Field(default=None, min_length=1, max_length=1000)
    thresholds: list[str] = Field(default_factory=list, max_length=100)
    options: ScenarioOptions = Field(default_factory=ScenarioOptions)

    _target = field_validator("target")(staticmethod(target_url_path))

    @model_validator(mode="after")
    def _rate(self) -> ScenarioFile:
        if self.stages:
            if self.rpm is not None:
                raise ValueError("give either rpm with duration_minutes, or stages, not both")
            self.duration_minutes = stage_minutes(self.stages)
        else:
            if self.rpm is None or self.duration_minutes is None:
                raise ValueError("give rpm and duration_minutes, or stages")
            if self.rpm != "max" and not (0 < self.rpm <= 60_000_000):
                raise ValueError("rpm must be > 0 and <= 60000000, or 'max'")
        return self


class Scenario:
    """A checked scenario: the plan, the ramp and the thresholds."""

    def __init__(self, data: ScenarioFile, source: str) -> None:
        self.source = source
        self.name = data.name
        self.target = data.target
        self.options = data.options
        self.stages = tuple(
            RampStage(s.duration_minutes * 60.0, s.target_rpm) for s in data.stages or ()
        )
        assert data.duration_minutes is not None
        self.duration_seconds = data.duration_minutes * 60.0
        if self.stages:
            start_rpm = data.start_rpm
        else:
            start_rpm = math.inf if data.rpm == "max" else float(data.rpm or 0)
        self.thresholds: list[Threshold] = []
        for text in data.thresholds:
            try:
                self.thresholds.append(parse_threshold(text))
            except RuleViolation as exc:
                raise ScenarioError(f"{source}: {exc.message}") from None
        profiles = []
        for i, p in enumerate(data.profiles):
            row = p.model_dump()
            row["requests"] = [
                {k: v for k, v in r.items() if v is not None} for r in row["requests"] or ()
            ]
            if row.get("steps"):
                row["steps"] = [{k: v for k, v in s.items() if v is not None} for s in row["steps"]]
            try:
                check_profile(row)
            except InvalidInput as exc:
                raise ScenarioError(f"{source}: profiles.{i} ({p.name}): {exc.message}") from None
            profiles.append(UserProfile.from_row({**row, "id": i + 1}))
        self.plan = LoadPlan(
            target_url=data.target.strip().rstrip("/"),
            profiles=tuple(profiles),
            total_users=data.users,
            rate_per_second=start_rpm / 60.0,
            request_timeout_seconds=data.options.request_timeout_seconds,
        )
        names = self.plan.step_names
        has_checks = any(s.get("checks") for p in profiles for s in p.steps)
        for threshold in self.thresholds:
            if threshold.step is not None and threshold.step not in names:
                raise ScenarioError(
                    f"{source}: threshold '{threshold.text}' names step '{threshold.step}', "
                    f"which no profile has (steps: {', '.join(names)})."
                )
            if threshold.metric == "checks" and not has_checks:
                raise ScenarioError(
                    f"{source}: threshold '{threshold.text}' needs checks, and no step has any."
                )

    @property
    def closed_loop(self) -> bool:
        return math.isinf(self.plan.rate_per_second)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "the file"


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; ScenarioError says what is wrong in one sentence."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"Cannot read scenario file {path}: {exc.strerror}.") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"{path} is not valid YAML{where}.") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path} must be a YAML mapping with target, profiles, users, ...")
    try:
        data = ScenarioFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:5]
        )
        raise ScenarioError(f"{path} is not a valid scenario: {problems}.") from None
    return Scenario(data, str(path))
