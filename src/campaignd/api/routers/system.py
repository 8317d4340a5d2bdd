"""Health and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from campaignd.api.deps import services
from campaignd.services import Services

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness probe")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(svc: Services = Depends(services)) -> Response:
    return Response(generate_latest(svc.metrics), media_type=CONTENT_TYPE_LATEST)
