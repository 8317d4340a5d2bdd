"""Traffic profiles, traffic campaigns, generation and live info."""

from __future__ import annotations

import math
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from campaignd.api import reports
from campaignd.api.deps import services
from campaignd.api.schemas.common import ERROR_RESPONSES, IdPath, StatusChange, StatusChanged
from campaignd.api.schemas.traffic import (
    GenerateRequest,
    GenerateStarted,
    Profile,
    ProfileCreate,
    ProfilePatch,
    TrafficCampaign,
    TrafficCampaignCreate,
    TrafficCampaignPatch,
    TrafficInfo,
)
from campaignd.domain.errors import InvalidInput
from campaignd.domain.journeys import check_profile
from campaignd.domain.statuses import CampaignStatus, parse_status
from campaignd.services import Services
from campaignd.store.traffic_repo import SeriesPoint

router = APIRouter(prefix="/api/traffic", tags=["traffic"], responses=ERROR_RESPONSES)


def _profile_row(body: ProfileCreate | ProfilePatch) -> dict[str, Any]:
    # A null means "leave as is" for a PATCH, except headers, where it means "none".
    data = {
        k: v
        for k, v in body.model_dump(exclude_unset=True).items()
        if v is not None or k == "headers"
    }
    # A profile is either plain or a journey: giving one clears the other.
    if body.requests is not None:
        # Each request whole, defaults included: a stored request names its method and weight.
        data["requests"] = [r.model_dump(exclude_none=True) for r in body.requests]
        data["steps"] = data["data"] = None
    elif body.steps is not None:
        # Each step whole too; a null inside a check (`"equals": null`) is kept as given.
        data["steps"] = [
            {k: v for k, v in step.model_dump().items() if v is not None} for step in body.steps
        ]
        data["requests"] = []
    if "headers" in data and data["headers"] is None:
        data["headers"] = {}
    return data


@router.post("/profiles", status_code=201, response_model=Profile, summary="Create a profile")
async def create_profile(body: ProfileCreate, svc: Services = Depends(services)) -> dict[str, Any]:
    row = _profile_row(body)
    check_profile(row)  # a template, JSON path or regex error is a 422 naming step and field
    return await svc.traffic.create_profile(row)


ARCHIVED = Query(default=False, description="List only the archived ones.")


@router.get("/profiles", response_model=list[Profile], summary="List profiles")
async def list_profiles(
    archived: bool = ARCHIVED, svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    return await svc.traffic.list_profiles(archived)


@router.get("/profiles/{profile_id}", response_model=Profile, summary="Get a profile")
async def get_profile(profile_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await svc.traffic.get_profile(profile_id)


@router.patch("/profiles/{profile_id}", response_model=Profile, summary="Edit a profile")
async def patch_profile(
    profile_id: IdPath, body: ProfilePatch, svc: Services = Depends(services)
) -> dict[str, Any]:
    data = _profile_row(body)
    if not data:
        return await svc.traffic.get_profile(profile_id)
    current = await svc.traffic.get_profile(profile_id)
    if "data" in data and not (data.get("steps") or current.get("steps")):
        raise InvalidInput("data rows are for steps; this profile has requests.", field="data")
    check_profile({**current, **data})
    return await svc.traffic.update_profile(profile_id, data)


@router.delete(
    "/profiles/{profile_id}",
    status_code=204,
    summary="Delete a profile (409 while a campaign uses it; archive it instead)",
)
async def delete_profile(profile_id: IdPath, svc: Services = Depends(services)) -> Response:
    await svc.traffic.delete_profile(profile_id)
    return Response(status_code=204)


@router.post(
    "/profiles/{profile_id}/archive",
    response_model=Profile,
    summary="Hide a profile from lists and choices (409 while an active campaign uses it)",
)
async def archive_profile(profile_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await svc.traffic.archive_profile(profile_id, True)


@router.post("/profiles/{profile_id}/unarchive", response_model=Profile, summary="Show it again")
async def unarchive_profile(
    profile_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    return await svc.traffic.archive_profile(profile_id, False)


def _campaign_view(svc: Services, row: dict[str, Any]) -> dict[str, Any]:
    return svc.traffic_app.view(row)


@router.post(
    "/campaigns", status_code=201, response_model=TrafficCampaign, summary="Create a campaign"
)
async def create_campaign(
    body: TrafficCampaignCreate, svc: Services = Depends(services)
) -> dict[str, Any]:
    return _campaign_view(svc, await svc.traffic_app.create(body.model_dump()))


@router.get("/campaigns", response_model=list[TrafficCampaign], summary="List campaigns")
async def list_campaigns(
    status: CampaignStatus | None = Query(
        default=None, description="Only campaigns in this status."
    ),
    archived: bool = ARCHIVED,
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    rows = await svc.traffic.list_campaigns(status.value if status else None, archived)
    return [_campaign_view(svc, r) for r in rows]


@router.get("/campaigns/{campaign_id}", response_model=TrafficCampaign, summary="Get a campaign")
async def get_campaign(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return _campaign_view(svc, await svc.traffic.get_campaign(campaign_id))


@router.patch("/campaigns/{campaign_id}", response_model=TrafficCampaign, summary="Edit a campaign")
async def patch_campaign(
    campaign_id: IdPath, body: TrafficCampaignPatch, svc: Services = Depends(services)
) -> dict[str, Any]:
    data = body.model_dump(exclude_unset=True, exclude_none=True)
    if body.stages:  # the validator derived the duration from them
        data["duration_minutes"] = body.duration_minutes
    return _campaign_view(svc, await svc.traffic_app.edit(campaign_id, data))


@router.delete("/campaigns/{campaign_id}", status_code=204, summary="Delete a campaign")
async def delete_campaign(campaign_id: IdPath, svc: Services = Depends(services)) -> Response:
    await svc.traffic_app.delete(campaign_id)
    return Response(status_code=204)


@router.post(
    "/campaigns/{campaign_id}/clone",
    status_code=201,
    response_model=TrafficCampaign,
    summary="Copy a campaign into a new draft (no results)",
)
async def clone_campaign(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return _campaign_view(svc, await svc.traffic.clone_campaign(campaign_id))


@router.post(
    "/campaigns/{campaign_id}/archive",
    response_model=TrafficCampaign,
    summary="Hide a campaign from the list (refused while it is running or paused)",
)
async def archive_campaign(
    campaign_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    return _campaign_view(svc, await svc.traffic.archive_campaign(campaign_id, True))


@router.post(
    "/campaigns/{campaign_id}/unarchive", response_model=TrafficCampaign, summary="Show it again"
)
async def unarchive_campaign(
    campaign_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    return _campaign_view(svc, await svc.traffic.archive_campaign(campaign_id, False))


@router.put(
    "/campaigns/{campaign_id}/status", response_model=StatusChanged, summary="Change status"
)
async def put_status(
    campaign_id: IdPath, body: StatusChange, svc: Services = Depends(services)
) -> dict[str, Any]:
    requested = parse_status(body.status)
    previous = await svc.traffic_app.change_status(campaign_id, requested)
    return {
        "campaign_id": campaign_id,
        "status": requested.value,
        "previous_status": previous.value,
    }


def _config(campaign: dict[str, Any], profiles: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests_per_minute": campaign["requests_per_minute"],
        "duration_minutes": campaign["duration_minutes"],
        "total_users": campaign["total_users"],
        "profiles": len(profiles),
        "profile_list": [{"id": p["id"], "name": p["name"]} for p in profiles],
        "stages": campaign.get("stages"),
    }


@router.post("/generate", response_model=GenerateStarted, summary="Start traffic generation")
async def generate(body: GenerateRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    campaign = await svc.traffic_app.generate(body.campaign_id)
    profiles = await svc.traffic.get_profiles(campaign["user_profile_ids"])
    return {
        "success": True,
        "message": "Traffic generation started successfully",
        "campaign_id": body.campaign_id,
        "status": "running",
        # The runner's id once a node has taken the campaign (within about 2 s), else a
        # placeholder: generation starts as soon as a node is free.
        "thread_id": campaign.get("runner_id") or f"pending-{body.campaign_id}",
        "config": _config(campaign, profiles),
    }


@router.get("/campaigns/{campaign_id}/info", response_model=TrafficInfo, summary="Live info")
async def info(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    campaign, chosen, stats, nodes = await svc.traffic_app.live(campaign_id)
    view = svc.traffic_app.view(campaign)
    return {
        "campaign_id": campaign_id,
        "name": campaign["name"],
        "status": campaign["status"],
        "target_url": campaign["target_url"],
        "config": _config(campaign, chosen),
        "traffic_generation_active": view["traffic_generation_active"],
        "thread_id": view["thread_id"],
        "start_time": campaign["start_time"],
        "stats": stats,
        "shards": campaign.get("shards") or 1,
        "nodes": nodes,
    }


# A report longer than this many windows is added up into buckets of at most this many.
REPORT_POINTS = 1440
REPORT_COLUMNS = [
    "at",
    "requests",
    "failed",
    "dropped",
    "rpm",
    "target_rpm",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "busy_users",
]
STEP_COLUMNS = ["name", "requests", "failed", "p50", "p90", "p99", "max", "mean"]
CHECK_COLUMNS = ["step", "name", "passes", "fails"]


def _point_json(point: SeriesPoint) -> dict[str, Any]:
    seconds = point.seconds or 1.0
    return {
        "at": point.at,
        "requests": point.requests,
        "failed": point.failed,
        "dropped": point.dropped,
        "rpm": round(point.requests * 60.0 / seconds, 3),
        "target_rpm": point.target_rpm,
        "p50_ms": point.p50_ms,
        "p90_ms": point.p90_ms,
        "p99_ms": point.p99_ms,
        "max_ms": point.max_ms,
        "busy_users": point.busy_users,
    }


async def _report_bucket(svc: Services, campaign_id: int) -> int | None:
    """None (every window) while they are few; else buckets giving <= REPORT_POINTS points."""
    count, span = await svc.traffic.window_count(campaign_id)
    if count <= REPORT_POINTS:
        return None
    return max(1, math.ceil((span + 1) / REPORT_POINTS))


@router.get(
    "/campaigns/{campaign_id}/report",
    summary="Report (JSON, or CSV of the windows)",
    responses=reports.REPORT_RESPONSES,
)
async def report(
    campaign_id: IdPath,
    format: Literal["json", "csv"] = Query(default="json"),
    table: Literal["windows", "steps", "checks"] = Query(
        default="windows",
        description="With format=csv: the windows over time, the table per step (or request "
        "name), or the checks' passes and fails.",
    ),
    bucket_seconds: int | None = Query(
        default=None,
        ge=1,
        le=86_400,
        description="Add windows up into buckets this long; by default every window while "
        f"there are at most {REPORT_POINTS}, else buckets giving at most {REPORT_POINTS} points.",
    ),
    svc: Services = Depends(services),
) -> Response:
    campaign = await svc.traffic.get_campaign(campaign_id)
    if bucket_seconds is None:
        bucket_seconds = await _report_bucket(svc, campaign_id)
    points = await svc.traffic.stats_series(campaign_id, 1_000_000, bucket_seconds)
    stats = await svc.traffic_app.stats(campaign)
    body = {
        "campaign": _campaign_view(svc, campaign),
        "stats": stats,
        "bucket_seconds": bucket_seconds,
        "windows": [_point_json(p) for p in points],
        "steps": stats.get("steps", []),
        "checks": stats.get("checks", []),
    }
    columns = {"windows": REPORT_COLUMNS, "steps": STEP_COLUMNS, "checks": CHECK_COLUMNS}[table]
    suffix = "" if table == "windows" else f"-{table}"
    return reports.respond(body, table, columns, format, f"traffic-campaign-{campaign_id}{suffix}")


@router.get("/campaigns/{campaign_id}/series", summary="Per-second stats windows")
async def series(
    campaign_id: IdPath,
    limit: int = Query(default=600, ge=1, le=86_400),
    bucket_seconds: int | None = Query(
        default=None, ge=1, le=86_400, description="Add windows up into buckets this long."
    ),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    await svc.traffic.get_campaign(campaign_id)
    points = await svc.traffic.stats_series(campaign_id, limit, bucket_seconds)
    return {
        "campaign_id": campaign_id,
        "bucket_seconds": bucket_seconds,
        "points": [_point_json(p) for p in points],
    }
