"""Request and response bodies of the traffic routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from campaignd.api.schemas.common import IdField, RequestBody

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
Name = Field(min_length=1, max_length=200)
HeaderMap = dict[str, str]
URL_PATTERN = r"^https?://[^\s/]+"


def _no_line_breaks(headers: HeaderMap | None) -> HeaderMap | None:
    for name, value in (headers or {}).items():
        if any(c in name + value for c in "\r\n\0") or not name.strip():
            raise ValueError(f"header {name!r} must be non-empty and free of line breaks")
    return headers


class ProfileRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    method: Method = "GET"
    path: str = Field(min_length=1, max_length=2000, examples=["/api/items"])
    weight: float = Field(default=1.0, gt=0, le=1_000_000)
    headers: HeaderMap | None = None
    body: Any = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        if any(c in value for c in "\r\n "):
            raise ValueError("must not contain spaces or line breaks")
        return value

    _headers = field_validator("headers")(staticmethod(_no_line_breaks))


class ProfileCreate(RequestBody):
    name: str = Name
    requests: list[ProfileRequest] = Field(min_length=1, max_length=100)
    headers: HeaderMap | None = None
    think_time_ms: int = Field(default=0, ge=0, le=3_600_000)

    _headers = field_validator("headers")(staticmethod(_no_line_breaks))


class ProfilePatch(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    requests: list[ProfileRequest] | None = Field(default=None, min_length=1, max_length=100)
    headers: HeaderMap | None = None
    think_time_ms: int | None = Field(default=None, ge=0, le=3_600_000)

    _headers = field_validator("headers")(staticmethod(_no_line_breaks))


class Profile(BaseModel):
    id: int
    name: str
    requests: list[dict[str, Any]]
    headers: HeaderMap
    think_time_ms: int
    created_at: str
    updated_at: str


RPM = Field(gt=0, le=60_000_000, description="Requests per minute (open-model arrival rate).")
DURATION = Field(gt=0, le=525_600, description="Minutes of generation; fractions allowed.")
USERS = Field(ge=1, le=1_000_000, description="Virtual users (concurrency ceiling).")


class Stage(BaseModel):
    """Ramp the rate linearly from the previous target to `target_rpm` over the stage."""

    model_config = ConfigDict(extra="forbid")
    duration_minutes: float = Field(gt=0, le=525_600)
    target_rpm: float = Field(ge=0, le=60_000_000)


STAGES = Field(
    default=None,
    min_length=1,
    max_length=1000,
    description="Ramping arrival rate (like k6's ramping-arrival-rate): each stage moves the "
    "rate linearly from the previous target (the first from requests_per_minute) to its "
    "target_rpm; duration_minutes becomes the sum of the stages.",
)


def _stage_minutes(stages: list[Stage]) -> float:
    return sum(s.duration_minutes for s in stages)


class TrafficCampaignCreate(RequestBody):
    name: str = Name
    target_url: str = Field(
        min_length=1, max_length=2000, pattern=URL_PATTERN, examples=["http://127.0.0.1:9000"]
    )
    user_profile_ids: list[IdField] = Field(min_length=1, max_length=100)
    requests_per_minute: float = RPM
    duration_minutes: float | None = Field(
        default=None, gt=0, le=525_600, description="Minutes of generation; fractions allowed."
    )
    total_users: int = USERS
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    stages: list[Stage] | None = STAGES

    @model_validator(mode="after")
    def _duration(self) -> TrafficCampaignCreate:
        if self.stages:
            self.duration_minutes = _stage_minutes(self.stages)
        elif self.duration_minutes is None:
            raise ValueError("duration_minutes is required unless stages are given")
        return self


class TrafficCampaignPatch(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    target_url: str | None = Field(default=None, min_length=1, max_length=2000, pattern=URL_PATTERN)
    user_profile_ids: list[IdField] | None = Field(default=None, min_length=1, max_length=100)
    requests_per_minute: float | None = Field(default=None, gt=0, le=60_000_000)
    duration_minutes: float | None = Field(default=None, gt=0, le=525_600)
    total_users: int | None = Field(default=None, ge=1, le=1_000_000)
    request_timeout_seconds: float | None = Field(default=None, gt=0, le=600)
    stages: list[Stage] | None = STAGES

    @model_validator(mode="after")
    def _duration(self) -> TrafficCampaignPatch:
        if self.stages:
            self.duration_minutes = _stage_minutes(self.stages)
        return self


class TrafficCampaign(BaseModel):
    id: int
    name: str
    target_url: str
    user_profile_ids: list[int]
    requests_per_minute: float
    duration_minutes: float
    total_users: int
    request_timeout_seconds: float
    stages: list[Stage] | None = None
    status: str
    traffic_generation_active: bool
    thread_id: str | None
    start_time: str | None
    created_at: str
    updated_at: str


class GenerateRequest(BaseModel):
    campaign_id: IdField


class GenerateConfig(BaseModel):
    requests_per_minute: float
    duration_minutes: float
    total_users: int
    profiles: list[dict[str, Any]]
    stages: list[Stage] | None = None


class GenerateStarted(BaseModel):
    success: bool
    message: str
    campaign_id: int
    status: str
    thread_id: str
    config: GenerateConfig


class LatencyMs(BaseModel):
    p50: float
    p90: float
    p99: float
    max: float
    mean: float


class TrafficStats(BaseModel):
    requests_total: int
    requests_succeeded: int
    requests_failed: int
    requests_dropped: int
    success_rate: float
    achieved_rpm: float
    target_rpm: float
    active_seconds: float
    latency_ms: LatencyMs
    errors: dict[str, int]


class TrafficInfo(BaseModel):
    campaign_id: int
    name: str
    status: str
    target_url: str
    config: GenerateConfig
    traffic_generation_active: bool
    thread_id: str | None
    start_time: str | None
    stats: TrafficStats
