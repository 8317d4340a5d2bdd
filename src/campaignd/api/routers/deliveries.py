"""Message operations: the delivery log, retry-failed, test sends and bounces."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from campaignd.api.deps import services
from campaignd.api.schemas.common import ERROR_RESPONSES, IdPath
from campaignd.api.schemas.messaging import (
    BounceCreate,
    BounceResult,
    DeliveryPage,
    RetryResult,
    TestSendRequest,
    TestSendResult,
)
from campaignd.domain.errors import InvalidInput
from campaignd.domain.text import require_storable
from campaignd.services import Services
from campaignd.store.operations_repo import DeliveryRow

router = APIRouter(prefix="/api", tags=["message operations"], responses=ERROR_RESPONSES)

CSV_COLUMNS = ("external_id", "address", "status", "variant", "attempts", "error", "updated_at")
DeliveryStatus = Literal["sent", "failed", "in_doubt", "retrying"]


def _item(row: DeliveryRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in CSV_COLUMNS}


def _cursor(value: str | None) -> int:
    if not value:
        return 0
    if not value.isdigit() or len(value) > 16:
        raise InvalidInput("Field 'cursor' is not a cursor this service gave out.", field="cursor")
    return int(value)


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


@router.get(
    "/campaigns/{campaign_id}/deliveries",
    response_model=DeliveryPage,
    summary="The delivery log: who got what (keyset pages, or all of it as streamed CSV)",
    description=(
        "Pages in contact order: pass `next_cursor` back as `cursor` until it is null. "
        "`q` finds a part of an address or external id (case-insensitive). With "
        "`format=csv` every matching row is streamed (memory stays flat however many)."
    ),
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def deliveries(
    campaign_id: IdPath,
    status: DeliveryStatus | None = Query(default=None),
    q: str | None = Query(default=None, max_length=200),
    cursor: str | None = Query(default=None, max_length=32),
    limit: int = Query(default=100, ge=1, le=1000),
    format: Literal["json", "csv"] = Query(default="json"),
    svc: Services = Depends(services),
) -> Response:
    await svc.messaging.get_campaign(campaign_id)
    if q is not None:
        q = require_storable(q, "q").strip() or None
    operations = svc.message_app.operations
    if format == "csv":
        name = f"campaign-{campaign_id}-deliveries.csv"

        async def rows() -> AsyncIterator[str]:
            yield _csv_line(list(CSV_COLUMNS))
            async for page in operations.delivery_log(campaign_id, status, q):
                yield "".join(_csv_line([getattr(r, c) for c in CSV_COLUMNS]) for r in page)

        return StreamingResponse(
            rows(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    page = await operations.delivery_page(campaign_id, status, q, _cursor(cursor), limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return JSONResponse(
        {
            "items": [_item(r) for r in page],
            "next_cursor": str(page[-1].contact_id) if more else None,
        }
    )


@router.post(
    "/campaigns/{campaign_id}/retry-failed",
    response_model=RetryResult,
    summary="Give failed recipients one more try",
    description=(
        "Failed recipients get one more try at the campaign's rate; nobody who got the "
        "message gets it again. A sending campaign picks them up at once, a completed one "
        "runs again, a stopped or paused one sends them when resumed. SMTP sends settled "
        "'in doubt' after a crash are not retried (they may have arrived)."
    ),
)
async def retry_failed(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await svc.message_app.retry_failed(campaign_id)


@router.post(
    "/campaigns/{campaign_id}/test",
    response_model=TestSendResult,
    summary="Send a test of the message now (counted nowhere, never in the ledger)",
    description=(
        "To `addresses` or `external_ids` (at most 50 each). A contact of the audience gets "
        "the message rendered with their data; another address gets it with the first "
        'contact\'s attributes as sample data. Webhook bodies carry `"test": true` (SMTP: '
        "header X-Campaignd-Test) and an Idempotency-Key of their own; tracked links in a "
        "test redirect but count no click. Suppressed addresses are skipped."
    ),
)
async def test_send(
    campaign_id: IdPath, body: TestSendRequest, svc: Services = Depends(services)
) -> dict[str, Any]:
    if not body.addresses and not body.external_ids:
        raise InvalidInput(
            "Give 'addresses' or 'external_ids' to send the test to.", field="addresses"
        )
    for index, address in enumerate(body.addresses):
        if not address.strip() or len(address) > 500:
            raise InvalidInput(
                f"Field 'addresses.{index}' must be an address.", field=f"addresses.{index}"
            )
    return await svc.message_app.send_test(
        campaign_id,
        addresses=body.addresses,
        external_ids=body.external_ids,
        message=body.message,
    )


@router.post(
    "/bounces",
    response_model=BounceResult,
    summary="Report a bounce (a hard one suppresses; so does the third soft one in 30 days)",
)
async def bounce(body: BounceCreate, svc: Services = Depends(services)) -> dict[str, Any]:
    if not body.address.strip():
        raise InvalidInput("Field 'address' must be an address.", field="address")
    if body.campaign_id is not None:
        await svc.messaging.get_campaign(body.campaign_id)
    recorded = await svc.message_app.bounces.record(
        body.address, body.type, body.reason, body.campaign_id
    )
    return {
        "address": recorded.address,
        "type": recorded.type,
        "campaign_id": recorded.campaign_id,
        "soft_bounces_30d": recorded.soft_bounces_30d,
        "suppressed": recorded.suppressed,
        "suppression_reason": recorded.suppression_reason,
    }
