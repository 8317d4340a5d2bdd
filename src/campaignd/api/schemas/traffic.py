"""Request and response bodies of the traffic routes."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from campaignd.api.schemas.common import IdField, NameText, RequestBody
from campaignd.domain.http_rules import HttpRuleError, check_headers, normalize_path

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HeaderMap = dict[str, str]
URL_PATTERN = r"^https?://[^\s/]+"


MAX_DURATION_MINUTES = 525_600  # one year


def _sendable_headers(headers: HeaderMap | None) -> HeaderMap | None:
    return check_headers(headers)


def target_url_path(value: str | None) -> str | None:
    """Refuse a target whose path could not start a request line as written."""
    if value is None:
        return value
    try:
        path = urlsplit(value.strip()).path
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if normalize_path(path, base=True) != path:
        raise HttpRuleError("the path of target_url must percent-encode non-ASCII characters")
    return value


class ProfileRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="What its stats are listed under (info.stats.steps); default 'METHOD path'.",
    )
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
        return normalize_path(value)

    _headers = field_validator("headers")(staticmethod(_sendable_headers))


MAX_THINK_MS = 3_600_000
MAX_DATA_ROWS = 100_000
ThinkTime = int | tuple[int, int]


def _think_range(value: ThinkTime | None) -> ThinkTime | None:
    if value is None:
        return None
    low, high = (value, value) if isinstance(value, int) else value
    if not 0 <= low <= high <= MAX_THINK_MS:
        raise ValueError(f"give milliseconds, or [min, max] with 0 <= min <= max <= {MAX_THINK_MS}")
    return value


class JourneyStep(RequestBody):
    """One step of a journey. `path`, header values and body strings may hold templates."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["log in"])
    method: Method = "GET"
    path: str = Field(min_length=1, max_length=2000, examples=["/items/{{ item_id }}"])
    headers: HeaderMap | None = Field(
        default=None, examples=[{"Authorization": "Bearer {{ token }}"}]
    )
    body: Any = Field(default=None, examples=[{"email": "{{ data.email }}"}])
    extract: dict[str, dict[str, str]] | None = Field(
        default=None,
        max_length=50,
        description='Variables from the response: {"var": {"json": "$.a.b"}}, '
        '{"var": {"regex": "id=(\\d+)"}} (first group) or {"var": {"header": "Location"}}. '
        "A failed extraction ends the user's iteration (iterations_aborted).",
        examples=[{"token": {"json": "$.token"}}],
    )
    checks: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=50,
        description='Counted per check, like k6: {"status": 200}, {"json": "$.ok", '
        '"equals": true}, {"body_contains": "x"}; each may have a "name".',
        examples=[[{"status": 200}, {"json": "$.ok", "equals": True}]],
    )
    think_time_ms: ThinkTime | None = Field(
        default=None, description="Pause after this step: milliseconds or [min, max]."
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    _headers = field_validator("headers")(staticmethod(_sendable_headers))
    _think = field_validator("think_time_ms")(staticmethod(_think_range))


STEPS = Field(
    default=None,
    min_length=1,
    max_length=100,
    description="A journey instead of requests: each user runs the steps in order, then "
    "starts over (one pass = one iteration).",
)
DATA = Field(
    default=None,
    max_length=MAX_DATA_ROWS,
    description="Rows for {{ data.<column> }}: user i takes row i mod len(data).",
)


class ProfileCreate(RequestBody):
    name: NameText
    requests: list[ProfileRequest] | None = Field(default=None, min_length=1, max_length=100)
    steps: list[JourneyStep] | None = STEPS
    data: list[dict[str, Any]] | None = DATA
    headers: HeaderMap | None = None
    think_time_ms: int = Field(default=0, ge=0, le=MAX_THINK_MS)

    _headers = field_validator("headers")(staticmethod(_sendable_headers))

    @model_validator(mode="after")
    def _requests_or_steps(self) -> ProfileCreate:
        if (self.requests is None) == (self.steps is None):
            raise ValueError("give either requests or steps")
        if self.data is not None and self.steps is None:
            raise ValueError("data rows are for steps")
        return self


class ProfilePatch(RequestBody):
    name: NameText | None = None
    requests: list[ProfileRequest] | None = Field(default=None, min_length=1, max_length=100)
    steps: list[JourneyStep] | None = STEPS
    data: list[dict[str, Any]] | None = DATA
    headers: HeaderMap | None = None
    think_time_ms: int | None = Field(default=None, ge=0, le=MAX_THINK_MS)

    _headers = field_validator("headers")(staticmethod(_sendable_headers))

    @model_validator(mode="after")
    def _requests_or_steps(self) -> ProfilePatch:
        if self.requests is not None and self.steps is not None:
            raise ValueError("give either requests or steps")
        return self


class Profile(BaseModel):
    id: int
    name: str
    requests: list[dict[str, Any]]
    steps: list[dict[str, Any]] | None = None
    data: list[dict[str, Any]] | None = None
    headers: HeaderMap
    think_time_ms: int
    archived_at: str | None = None
    created_at: str
    updated_at: str


RPM = Field(gt=0, le=60_000_000, description="Requests per minute (open-model arrival rate).")
DURATION = Field(
    gt=0, le=MAX_DURATION_MINUTES, description="Minutes of generation; fractions allowed."
)
USERS = Field(ge=1, le=1_000_000, description="Virtual users (concurrency ceiling).")


class Stage(BaseModel):
    """Ramp the rate linearly from the previous target to `target_rpm` over the stage."""

    model_config = ConfigDict(extra="forbid")
    duration_minutes: float = Field(gt=0, le=MAX_DURATION_MINUTES)
    target_rpm: float = Field(ge=0, le=60_000_000)


STAGES = Field(
    default=None,
    min_length=1,
    max_length=1000,
    description="Ramping arrival rate (like k6's ramping-arrival-rate): each stage moves the "
    "rate linearly from the previous target (the first from requests_per_minute) to its "
    "target_rpm; duration_minutes becomes the sum of the stages.",
)


def stage_minutes(stages: list[Stage]) -> float:
    """The stages' total duration, refused past the same one-year cap as duration_minutes."""
    total = sum(s.duration_minutes for s in stages)
    if total > MAX_DURATION_MINUTES:
        raise ValueError(
            f"the stages add up to {total:g} minutes; together they may last at most "
            f"{MAX_DURATION_MINUTES} minutes (one year)"
        )
    return total


SHARDS = Field(
    default=1,
    ge=1,
    le=256,
    description="Split the rate over this many shards, each run by one node of the cluster.",
)


class TrafficCampaignCreate(RequestBody):
    name: NameText
    target_url: str = Field(
        min_length=1, max_length=2000, pattern=URL_PATTERN, examples=["http://127.0.0.1:9000"]
    )
    user_profile_ids: list[IdField] = Field(min_length=1, max_length=100)
    requests_per_minute: float = RPM
    duration_minutes: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DURATION_MINUTES,
        description="Minutes of generation; fractions allowed.",
    )
    total_users: int = USERS
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    stages: list[Stage] | None = STAGES
    shards: int = SHARDS

    _target = field_validator("target_url")(staticmethod(target_url_path))

    @model_validator(mode="after")
    def _duration(self) -> TrafficCampaignCreate:
        if self.stages:
            self.duration_minutes = stage_minutes(self.stages)
        elif self.duration_minutes is None:
            raise ValueError("duration_minutes is required unless stages are given")
        return self


class TrafficCampaignPatch(RequestBody):
    name: NameText | None = None
    target_url: str | None = Field(default=None, min_length=1, max_length=2000, pattern=URL_PATTERN)
    user_profile_ids: list[IdField] | None = Field(default=None, min_length=1, max_length=100)
    requests_per_minute: float | None = Field(default=None, gt=0, le=60_000_000)
    duration_minutes: float | None = Field(default=None, gt=0, le=MAX_DURATION_MINUTES)
    total_users: int | None = Field(default=None, ge=1, le=1_000_000)
    request_timeout_seconds: float | None = Field(default=None, gt=0, le=600)
    stages: list[Stage] | None = STAGES
    shards: int | None = Field(default=None, ge=1, le=256)

    _target = field_validator("target_url")(staticmethod(target_url_path))

    @model_validator(mode="after")
    def _duration(self) -> TrafficCampaignPatch:
        if self.stages:
            self.duration_minutes = stage_minutes(self.stages)
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
    shards: int = 1
    status: str
    last_error: str | None = None
    traffic_generation_active: bool
    thread_id: str | None
    start_time: str | None
    archived_at: str | None = None
    created_at: str
    updated_at: str


class GenerateRequest(BaseModel):
    campaign_id: IdField


class ProfileRef(BaseModel):
    id: int
    name: str


class GenerateConfig(BaseModel):
    requests_per_minute: float
    duration_minutes: float
    total_users: int
    profiles: int = Field(description="How many profiles the campaign uses (as in the seed).")
    profile_list: list[ProfileRef]
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


class StepStats(BaseModel):
    name: str = Field(description="The step's name, or a plain request's name ('METHOD path').")
    requests: int
    failed: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float


class CheckStats(BaseModel):
    step: str
    name: str
    passes: int
    fails: int


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
    steps: list[StepStats] = Field(default_factory=list)
    checks: list[CheckStats] = Field(default_factory=list)
    iterations: int = 0
    iterations_aborted: int = 0
    busy_users: int = Field(default=0, description="Users with a request in flight now.")


class ShardHolder(BaseModel):
    shard: int
    node: str | None


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
    shards: int = 1
    nodes: list[ShardHolder] = Field(
        default_factory=list, description="Which node generates each shard now."
    )
