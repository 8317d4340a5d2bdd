"""Unsubscribe links from messages: a signed link adds the recipient's address to suppressions."""

from __future__ import annotations

import contextlib
from html import escape

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from campaignd.api.deps import services
from campaignd.domain.errors import NotFound
from campaignd.logs import log_event
from campaignd.services import Services
from campaignd.store.tables import contacts

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribe</title>
<link rel="stylesheet" href="/static/style.css"></head><body><main><h1>{title}</h1>{body}</main>
</body></html>"""


async def _address(svc: Services, campaign_id: int, contact_id: int, token: str) -> str:
    if not svc.box.verify(f"unsubscribe:{campaign_id}:{contact_id}", token):
        raise NotFound("This unsubscribe link is not valid.")
    async with svc.db.read() as conn:
        address = (
            await conn.execute(select(contacts.c.address).where(contacts.c.id == contact_id))
        ).scalar_one_or_none()
    if address is None:
        raise NotFound("This unsubscribe link is not valid.")
    return str(address)


@router.get("/unsubscribe/{campaign_id}/{contact_id}/{token}", response_class=HTMLResponse)
async def confirm(
    campaign_id: int, contact_id: int, token: str, svc: Services = Depends(services)
) -> HTMLResponse:
    address = await _address(svc, campaign_id, contact_id, token)
    body = (
        f"<p>Stop all messages to <strong>{escape(address)}</strong>?</p>"
        '<form method="post"><button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(PAGE.format(title="Unsubscribe", body=body))


@router.post("/unsubscribe/{campaign_id}/{contact_id}/{token}", response_class=HTMLResponse)
async def unsubscribe(
    campaign_id: int, contact_id: int, token: str, svc: Services = Depends(services)
) -> HTMLResponse:
    """Also the RFC 8058 one-click target (List-Unsubscribe-Post)."""
    address = await _address(svc, campaign_id, contact_id, token)
    await svc.messaging.suppress(address, f"unsubscribed from campaign {campaign_id}")
    svc.message_app.forget_reachable()
    with contextlib.suppress(NotFound):  # the campaign may be deleted since it sent the link
        await svc.messaging.get_campaign(campaign_id)
        await svc.messaging.engage(campaign_id, contact_id, "unsubscribe")
    log_event("messages.unsubscribed", campaign_id=campaign_id, contact_id=contact_id)
    body = f"<p>{escape(address)} will not receive messages from us again.</p>"
    return HTMLResponse(PAGE.format(title="You are unsubscribed", body=body))
