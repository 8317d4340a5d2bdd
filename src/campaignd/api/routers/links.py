"""Tracked links: /l/<token> answers 302 to the link that was in the message, and counts it."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse

from campaignd.api.deps import services
from campaignd.domain import links
from campaignd.domain.errors import NotFound
from campaignd.logs import log_event
from campaignd.services import Services

router = APIRouter(include_in_schema=False)


@router.get("/l/{token}")
async def follow(token: str, svc: Services = Depends(services)) -> RedirectResponse:
    decoded = links.decode_token(token, svc.box.verify)
    if decoded is None:
        raise NotFound("This link is not valid.")
    operations = svc.message_app.operations
    url = await operations.link_url(decoded.campaign_id, decoded.link_id)
    if url is None:  # signed by us, but its campaign was deleted since
        raise NotFound("This link is not valid.")
    if decoded.contact_id != links.TEST_CONTACT:
        try:
            await operations.record_click(decoded)
        except Exception:  # the recipient still gets where the link leads
            log_event("messages.click_not_recorded", level=logging.ERROR, exc_info=True)
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
