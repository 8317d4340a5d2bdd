"""Routes of the original tool, kept so its scripts and tests keep working."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from campaignd.api.deps import services
from campaignd.api.routers.messaging import act, campaign_view, edit_changes
from campaignd.api.schemas.common import ERROR_RESPONSES, IdPath
from campaignd.api.schemas.messaging import SeedCampaignData, SeedUpdate
from campaignd.services import Services

router = APIRouter(tags=["seed-compatible"], responses=ERROR_RESPONSES)


async def _data(svc: Services, campaign_id: int) -> dict[str, Any]:
    view = await campaign_view(svc, campaign_id)
    return {
        "campaign_id": campaign_id,
        "data": {
            "message": view["message"],
            "limit": view["limit"],
            "account_id": view["account_id"],
            "session": "***",
            "created_at": view["created_at"],
        },
        "status": view["status"],
        "sent_count": view["sent_count"],
        "failed_count": view["failed_count"],
        "total_recipients": view["total_recipients"],
    }


@router.get(
    "/campaign_data/{campaign_id}", response_model=SeedCampaignData, summary="Campaign data"
)
async def campaign_data(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await _data(svc, campaign_id)


@router.get(
    "/campaigns/{campaign_id}/data", response_model=SeedCampaignData, summary="Campaign data"
)
async def campaign_data_alias(
    campaign_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    return await _data(svc, campaign_id)


async def _update(svc: Services, campaign_id: int, body: SeedUpdate) -> dict[str, Any]:
    changes = edit_changes(body)
    if changes:
        await svc.message_app.edit(campaign_id, changes)
    return {
        "success": True,
        "message": "Campaign updated successfully",
        **await _data(svc, campaign_id),
    }


@router.post("/update_campaign/{campaign_id}", summary="Edit message, limit, account or session")
async def update_campaign(
    campaign_id: IdPath, body: SeedUpdate, svc: Services = Depends(services)
) -> dict[str, Any]:
    return await _update(svc, campaign_id, body)


@router.post("/campaigns/{campaign_id}/update", summary="Edit message, limit, account or session")
async def update_campaign_alias(
    campaign_id: IdPath, body: SeedUpdate, svc: Services = Depends(services)
) -> dict[str, Any]:
    return await _update(svc, campaign_id, body)


async def _resume(svc: Services, campaign_id: int) -> dict[str, Any]:
    changed = await act(svc, campaign_id, "resume")
    return {"success": True, "message": "Campaign resumed", **changed}


@router.post("/resume_campaign/{campaign_id}", summary="Resume a campaign")
async def resume_campaign(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await _resume(svc, campaign_id)


@router.post("/campaigns/{campaign_id}/resume", summary="Resume a campaign")
async def resume_campaign_alias(
    campaign_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    return await _resume(svc, campaign_id)
