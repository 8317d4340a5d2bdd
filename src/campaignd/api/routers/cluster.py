"""The cluster's nodes and what each one holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from campaignd.api.deps import services
from campaignd.api.schemas.common import ERROR_RESPONSES
from campaignd.services import Services

router = APIRouter(prefix="/api", tags=["cluster"], responses=ERROR_RESPONSES)


class Holding(BaseModel):
    kind: Literal["traffic", "message"]
    campaign_id: int
    shard: int


class NodeView(BaseModel):
    name: str
    role: str = Field(description='"serve" (API, with an engine unless --no-engine) or "worker".')
    engine: bool = Field(description="Whether it runs campaigns.")
    pid: int
    host: str
    started_at: datetime
    last_seen: datetime
    alive: bool = Field(description="Seen within the lease time (CAMPAIGND_LEASE_SECONDS).")
    leader: bool = Field(description="Runs the cluster-wide duties (the scheduler).")
    holding: list[Holding]


@router.get("/nodes", response_model=list[NodeView], summary="Nodes and what they hold")
async def list_nodes(svc: Services = Depends(services)) -> list[dict[str, Any]]:
    return await svc.cluster.list_nodes(svc.settings.lease_seconds)
