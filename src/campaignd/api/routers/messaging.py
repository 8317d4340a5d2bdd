"""Accounts, audiences and contacts, suppressions, and message campaigns."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from campaignd.api import reports
from campaignd.api.deps import services
from campaignd.api.schemas.common import ERROR_RESPONSES, IdPath, StatusChanged
from campaignd.api.schemas.messaging import (
    Account,
    AccountCreate,
    AccountPatch,
    Audience,
    AudienceCreate,
    Campaign,
    CampaignCreate,
    CampaignPatch,
    Contact,
    EngagementCreate,
    EngagementRecorded,
    ImportResult,
    Preview,
    PreviewRequest,
    SegmentPreview,
    Suppression,
    SuppressionCreate,
)
from campaignd.domain import ab_test, contacts, domains, lifecycle, segments, windows
from campaignd.domain.errors import InvalidInput
from campaignd.domain.statuses import CampaignStatus
from campaignd.domain.text import require_storable
from campaignd.messaging.channels import redact, secret_fields, validate_account_config
from campaignd.messaging.channels.log import confine as confine_log_path
from campaignd.services import Services

router = APIRouter(prefix="/api", tags=["messages"], responses=ERROR_RESPONSES)


# accounts -----------------------------------------------------------------------------
def _account_view(svc: Services, row: dict[str, Any]) -> dict[str, Any]:
    secrets = svc.box.open(row["secrets"]) if row["secrets"] else {}
    shown = {**row["config"], **dict.fromkeys(secrets, "***")}
    view = {k: v for k, v in row.items() if k != "secrets"}
    return {**view, "config": redact(row["channel"], shown)}


async def _split_config(svc: Services, channel: str, config: dict[str, Any]) -> dict[str, Any]:
    for name in ("url", "api_base_url"):  # every destination meets the target allowlist
        if name in config:
            config[name] = await svc.guard.check(str(config[name]), field=f"config.{name}")
    if channel == "smtp":
        await svc.guard.check_host(str(config["host"]), int(config["port"]), field="config.host")
    if channel == "log":
        confine_log_path(str(config["path"]), svc.settings.channel_log_dir())
    hidden = secret_fields(channel)
    secrets = {k: v for k, v in config.items() if k in hidden and v not in (None, "")}
    return {
        "config": {k: v for k, v in config.items() if k not in hidden},
        "secrets": svc.box.seal(secrets),
    }


@router.post("/accounts", status_code=201, response_model=Account, summary="Create an account")
async def create_account(body: AccountCreate, svc: Services = Depends(services)) -> dict[str, Any]:
    config = validate_account_config(body.channel, body.config)
    stored = await _split_config(svc, body.channel, config)
    row = await svc.messaging.create_account(
        {
            "name": body.name,
            "channel": body.channel,
            "rate_per_minute": body.rate_per_minute,
            "domain_limits": domains.validate_limits(body.domain_limits),
            **stored,
        }
    )
    return _account_view(svc, row)


ARCHIVED = Query(default=False, description="List only the archived ones.")


@router.get("/accounts", response_model=list[Account], summary="List accounts")
async def list_accounts(
    archived: bool = ARCHIVED, svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    return [_account_view(svc, r) for r in await svc.messaging.list_accounts(archived)]


@router.get("/accounts/{account_id}", response_model=Account, summary="Get an account")
async def get_account(account_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return _account_view(svc, await svc.messaging.get_account(account_id))


@router.patch("/accounts/{account_id}", response_model=Account, summary="Edit an account")
async def patch_account(
    account_id: IdPath, body: AccountPatch, svc: Services = Depends(services)
) -> dict[str, Any]:
    row = await svc.messaging.get_account(account_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"config"})
    if changes.get("name") is None:
        changes.pop("name", None)
    if "domain_limits" in changes:
        changes["domain_limits"] = domains.validate_limits(changes["domain_limits"])
    if body.config is not None:
        # "***" sent back from a form means "keep the stored secret".
        given = {k: v for k, v in body.config.items() if v != "***"}
        validate_account_config(row["channel"], given, partial=True)
        merged = {**row["config"], **svc.box.open(row["secrets"]), **given}
        changes.update(
            await _split_config(
                svc, row["channel"], validate_account_config(row["channel"], merged)
            )
        )
    if not changes:
        return _account_view(svc, row)
    updated = await svc.messaging.update_account(account_id, changes)
    await svc.message_app.account_edited(updated)
    return _account_view(svc, updated)


@router.delete(
    "/accounts/{account_id}",
    status_code=204,
    summary="Delete an account (409 while a campaign uses it; archive it instead)",
)
async def delete_account(account_id: IdPath, svc: Services = Depends(services)) -> Response:
    await svc.messaging.delete_account(account_id)
    return Response(status_code=204)


@router.post(
    "/accounts/{account_id}/archive",
    response_model=Account,
    summary="Hide an account from lists and choices (409 while an active campaign uses it)",
)
async def archive_account(account_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return _account_view(svc, await svc.messaging.archive_account(account_id, True))


@router.post("/accounts/{account_id}/unarchive", response_model=Account, summary="Show it again")
async def unarchive_account(
    account_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    return _account_view(svc, await svc.messaging.archive_account(account_id, False))


# audiences and contacts ---------------------------------------------------------------
@router.post("/audiences", status_code=201, response_model=Audience, summary="Create an audience")
async def create_audience(
    body: AudienceCreate, svc: Services = Depends(services)
) -> dict[str, Any]:
    return await svc.messaging.create_audience(body.name)


@router.get("/audiences", response_model=list[Audience], summary="List audiences")
async def list_audiences(
    archived: bool = ARCHIVED, svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    return await svc.messaging.list_audiences(archived)


@router.delete(
    "/audiences/{audience_id}",
    status_code=204,
    summary="Delete an audience and its contacts (409 while a campaign uses it)",
)
async def delete_audience(audience_id: IdPath, svc: Services = Depends(services)) -> Response:
    await svc.messaging.delete_audience(audience_id)
    svc.message_app.forget_reachable()
    return Response(status_code=204)


@router.post(
    "/audiences/{audience_id}/archive",
    response_model=Audience,
    summary="Hide an audience from lists and choices (409 while an active campaign uses it)",
)
async def archive_audience(
    audience_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    return await svc.messaging.archive_audience(audience_id, True)


@router.post("/audiences/{audience_id}/unarchive", response_model=Audience, summary="Show it again")
async def unarchive_audience(
    audience_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    return await svc.messaging.archive_audience(audience_id, False)


@router.get("/audiences/{audience_id}", response_model=Audience, summary="Get an audience")
async def get_audience(audience_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await svc.messaging.get_audience(audience_id)


async def _import(
    svc: Services, audience_id: int, rows: Iterable[tuple[int, Any, str | None]]
) -> dict[str, Any]:
    """Screen every row first, then store the good ones in one transaction (all or nothing)."""
    kept, report = contacts.screen(rows)
    inserted = await svc.messaging.add_contacts(audience_id, kept)
    svc.message_app.forget_reachable()
    return {
        "imported": inserted,
        "duplicates": report.duplicates + len(kept) - inserted,
        "rejected": report.rejected,
    }


@router.post(
    "/audiences/{audience_id}/contacts",
    response_model=ImportResult,
    summary="Import contacts (JSON or text/csv)",
    description=(
        f"At most {contacts.MAX_CONTACTS:,} contacts per request, as JSON or as CSV data "
        "rows (422 beyond). Rows that cannot be stored (missing or over-long external_id or "
        "address, control characters in them, a NUL character anywhere) are listed in "
        "`rejected` and skipped; the others are stored in one transaction, so a request "
        "stores all of its good rows or none."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ContactsImport"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_contacts(
    audience_id: IdPath, request: Request, svc: Services = Depends(services)
) -> dict[str, Any]:
    await svc.messaging.get_audience(audience_id)
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("The body is not UTF-8 text.", field="body") from None
    if content_type in ("text/csv", "application/csv", "text/plain"):
        return await _import(svc, audience_id, contacts.csv_rows(text))
    body = _parse_json(text)
    rows = body.get("contacts") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise InvalidInput(
            'Send {"contacts": [...]} as JSON, or a CSV body with Content-Type text/csv.',
            field="contacts",
        )
    if len(rows) > contacts.MAX_CONTACTS:
        raise contacts.too_many()
    return await _import(svc, audience_id, ((i, row, None) for i, row in enumerate(rows)))


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno}.", field="body"
        ) from None
    except RecursionError:
        raise InvalidInput("The body's JSON nests too deeply to be read.", field="body") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InvalidInput(f"The body's JSON cannot be read: {exc}.", field="body") from None


@router.get(
    "/audiences/{audience_id}/contacts",
    response_model=list[Contact],
    summary="Page through contacts",
)
async def list_contacts(
    audience_id: IdPath,
    after_id: int = Query(default=0, ge=0, le=2**53),
    limit: int = Query(default=100, ge=1, le=1000),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    await svc.messaging.get_audience(audience_id)
    return await svc.messaging.list_contacts(audience_id, after_id, limit)


# suppressions -------------------------------------------------------------------------
@router.post(
    "/suppressions", status_code=201, response_model=Suppression, summary="Suppress an address"
)
async def suppress(body: SuppressionCreate, svc: Services = Depends(services)) -> dict[str, Any]:
    row = await svc.messaging.suppress(body.address, body.reason)
    svc.message_app.forget_reachable()
    return row


@router.get("/suppressions", response_model=list[Suppression], summary="List suppressions")
async def list_suppressions(
    after: str = Query(default="", max_length=500),
    limit: int = Query(default=100, ge=1, le=1000),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    return await svc.messaging.list_suppressions(require_storable(after, "after"), limit)


@router.delete("/suppressions/{address}", status_code=204, summary="Lift a suppression")
async def unsuppress(address: str, svc: Services = Depends(services)) -> Response:
    await svc.messaging.unsuppress(require_storable(address, "address"))
    svc.message_app.forget_reachable()
    return Response(status_code=204)


# campaigns ----------------------------------------------------------------------------
async def campaign_view(svc: Services, campaign_id: int) -> dict[str, Any]:
    return await svc.message_app.view(campaign_id)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _check_design(
    svc: Services,
    audience_id: int,
    texts: dict[str, str | None],
    variants: list[dict[str, Any]] | None,
    ab_test: Any,
    segment: Any,
) -> None:
    """Templates render for a sample contact; variants, A/B test and segment make sense."""
    checks = [(field, text) for field, text in texts.items() if text]
    checks += [
        (f"variants[{index}].message", variant["message"])
        for index, variant in enumerate(variants or [])
        if variant.get("message")
    ]
    sample = await svc.message_app.sample_contact(audience_id) if checks else None
    for field, text in checks:
        await svc.message_app.templates.check(text, field, sample)
    if variants and len({v["name"] for v in variants}) != len(variants):
        raise InvalidInput("Variant names must be unique.", field="variants")
    if ab_test is not None and len(variants or []) < 2:
        raise InvalidInput("An A/B test needs at least two variants.", field="ab_test")
    await svc.message_app.check_follow_up(audience_id, segments.validate(segment))


@router.post("/campaigns", status_code=201, response_model=Campaign, summary="Create a campaign")
async def create_campaign(
    body: CampaignCreate, svc: Services = Depends(services)
) -> dict[str, Any]:
    await svc.messaging.get_account(body.account_id)
    await svc.messaging.get_audience(body.audience_id)
    variants = [v.model_dump() for v in body.variants] if body.variants else None
    await _check_design(
        svc,
        body.audience_id,
        {"message": body.message, "subject": body.subject},
        variants,
        body.ab_test,
        body.segment,
    )
    start_at = _utc(body.start_at)
    row = await svc.message_app.create(
        {
            "name": body.name,
            "account_id": body.account_id,
            "audience_id": body.audience_id,
            "message": body.message,
            "subject": body.subject,
            "recipient_limit": body.limit,
            "rate_per_minute": body.rate_per_minute,
            "segment": body.segment,
            "variants": variants,
            "ab_test": body.ab_test.model_dump() if body.ab_test else None,
            "start_at": start_at,
            "send_window": windows.validate(body.send_window),
            "shards": body.shards,
            "max_consecutive_failures": body.max_consecutive_failures,
            "track_links": bool(body.track_links),
        }
    )
    return await campaign_view(svc, row["id"])


@router.post(
    "/campaigns/{campaign_id}/clone",
    status_code=201,
    response_model=Campaign,
    summary="Copy a campaign into a new draft (no recipients, no schedule)",
)
async def clone_campaign(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    row = await svc.messaging.clone_campaign(campaign_id)
    return await campaign_view(svc, row["id"])


@router.post(
    "/campaigns/{campaign_id}/archive",
    response_model=Campaign,
    summary="Hide a campaign from the list (refused while it is scheduled, running or paused)",
)
async def archive_campaign(
    campaign_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    await svc.messaging.archive_campaign(campaign_id, True)
    return await campaign_view(svc, campaign_id)


@router.post("/campaigns/{campaign_id}/unarchive", response_model=Campaign, summary="Show it again")
async def unarchive_campaign(
    campaign_id: IdPath, svc: Services = Depends(services)
) -> dict[str, Any]:
    await svc.messaging.archive_campaign(campaign_id, False)
    return await campaign_view(svc, campaign_id)


@router.get("/campaigns", response_model=list[Campaign], summary="List campaigns")
async def list_campaigns(
    status: CampaignStatus | None = Query(default=None),
    archived: bool = Query(default=False, description="List only the archived campaigns."),
    svc: Services = Depends(services),
) -> list[dict[str, Any]]:
    rows = await svc.messaging.list_campaigns(status.value if status else None, archived)
    return await svc.message_app.describe(rows)


@router.get("/campaigns/{campaign_id}", response_model=Campaign, summary="Get a campaign")
async def get_campaign(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await campaign_view(svc, campaign_id)


NULLABLE_EDITS = (
    "subject",
    "rate_per_minute",
    "send_window",
    "max_consecutive_failures",
    "segment",
    "variants",
    "ab_test",
    "start_at",
)


def edit_changes(body: CampaignPatch | Any) -> dict[str, Any]:
    data = body.model_dump(exclude_unset=True)
    if "send_window" in data:
        data["send_window"] = windows.validate(data["send_window"])
    if "start_at" in data:
        data["start_at"] = _utc(data["start_at"])
    changes = {k: v for k, v in data.items() if v is not None or k in NULLABLE_EDITS}
    if "limit" in changes:
        changes["recipient_limit"] = changes.pop("limit")
    return changes


@router.patch(
    "/campaigns/{campaign_id}",
    response_model=Campaign,
    summary="Edit a campaign",
    description="Message, subject, limit, rate, send window and account at any time (a "
    "sending campaign uses them for every message not yet sent); audience, segment, "
    "variants, A/B test and start time only while it is a draft or scheduled (409 after).",
)
async def patch_campaign(
    campaign_id: IdPath, body: CampaignPatch, svc: Services = Depends(services)
) -> dict[str, Any]:
    changes = edit_changes(body)
    if changes:
        # The row and (for a template check) a sample contact, then the edit and the view's
        # figures: two waits, not four (the figures do not change with an edit that keeps
        # the audience).
        samples: list[dict[str, Any]] | None = None
        if "audience_id" in changes or all(changes.get(f) is None for f in ("message", "subject")):
            campaign = await svc.messaging.get_campaign(campaign_id)
        else:
            campaign, samples = await asyncio.gather(
                svc.messaging.get_campaign(campaign_id),
                svc.messaging.first_contact_of_campaign(campaign_id),
            )
        lifecycle.refuse_late_change(campaign_id, campaign["status"], list(changes))
        audience_id = changes.get("audience_id", campaign["audience_id"])
        if "audience_id" in changes:
            await svc.messaging.get_audience(audience_id)
        await _check_design(
            svc,
            audience_id,
            {},
            changes.get("variants", campaign.get("variants")),
            changes.get("ab_test", campaign.get("ab_test")),
            changes.get("segment"),
        )
        edit = svc.message_app.edit(campaign_id, changes, campaign, samples)
        if "audience_id" in changes:
            return (await svc.message_app.describe([await edit]))[0]
        updated, figures = await asyncio.gather(edit, svc.messaging.view_figures([campaign_id]))
        return (await svc.message_app.describe([updated], figures))[0]
    return await campaign_view(svc, campaign_id)


@router.delete("/campaigns/{campaign_id}", status_code=204, summary="Delete a campaign")
async def delete_campaign(campaign_id: IdPath, svc: Services = Depends(services)) -> Response:
    await svc.message_app.delete(campaign_id)
    return Response(status_code=204)


async def act(svc: Services, campaign_id: int, action: str) -> dict[str, Any]:
    previous = await svc.message_app.act(campaign_id, action)
    current = await svc.messaging.get_campaign(campaign_id)
    return {
        "campaign_id": campaign_id,
        "status": current["status"],
        "previous_status": previous.value,
    }


@router.post("/campaigns/{campaign_id}/start", response_model=StatusChanged, summary="Start")
async def start(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await act(svc, campaign_id, "start")


@router.post("/campaigns/{campaign_id}/stop", response_model=StatusChanged, summary="Stop")
async def stop(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await act(svc, campaign_id, "stop")


@router.post("/campaigns/{campaign_id}/resume", response_model=StatusChanged, summary="Resume")
async def resume(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await act(svc, campaign_id, "resume")


@router.post("/campaigns/{campaign_id}/pause", response_model=StatusChanged, summary="Pause")
async def pause(campaign_id: IdPath, svc: Services = Depends(services)) -> dict[str, Any]:
    return await act(svc, campaign_id, "pause")


@router.get("/campaigns/{campaign_id}/series", summary="Sent and failed over time")
async def series(
    campaign_id: IdPath,
    bucket_seconds: int = Query(default=1, ge=1, le=86_400),
    limit: int = Query(default=600, ge=1, le=10_000),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    await svc.messaging.get_campaign(campaign_id)
    points = await svc.messaging.series(campaign_id, bucket_seconds, limit)
    return {"campaign_id": campaign_id, "bucket_seconds": bucket_seconds, "points": points}


@router.get(
    "/campaigns/{campaign_id}/report",
    summary="Report (JSON, or CSV of the time series)",
    responses=reports.REPORT_RESPONSES,
)
async def report(
    campaign_id: IdPath,
    format: Literal["json", "csv"] = Query(default="json"),
    bucket_seconds: int = Query(default=60, ge=1, le=86_400),
    svc: Services = Depends(services),
) -> Response:
    view = await campaign_view(svc, campaign_id)
    points = await svc.messaging.series(campaign_id, bucket_seconds, 100_000)
    per_variant = await svc.messaging.variant_counts(campaign_id)
    body = {
        "campaign": view,
        "counts": {
            k: view[k] for k in ("sent_count", "failed_count", "sending_count", "total_recipients")
        },
        "per_variant": per_variant,
        "ab_test": ab_test_report(view, per_variant),
        "failures_by_reason": await svc.messaging.failure_reasons(campaign_id),
        "links": await svc.message_app.operations.link_report(campaign_id),
        "bounces": await svc.message_app.operations.bounce_counts(campaign_id),
        "bucket_seconds": bucket_seconds,
        "series": [
            {"at": datetime.fromtimestamp(p["bucket"], UTC).isoformat().replace("+00:00", "Z"), **p}
            for p in points
        ],
    }
    return reports.respond(
        body, "series", ["at", "sent", "failed"], format, f"campaign-{campaign_id}"
    )


def ab_test_report(view: dict[str, Any], per_variant: dict[str, Any]) -> dict[str, Any] | None:
    test = view.get("ab_test")
    if not test:
        return None
    if view.get("ab_winner"):
        phase = "winner_chosen"
    elif view.get("ab_sample_done_at"):
        phase = "waiting_for_results"
    else:
        phase = "sending_sample"
    scores = ab_test.scores(test["metric"], view.get("variants") or [], per_variant)
    return {
        **test,
        "phase": phase,
        "sample_sent_at": view.get("ab_sample_done_at"),
        "winner": view.get("ab_winner"),
        "scores": [{"variant": s.variant, "value": s.value, "of": s.denominator} for s in scores],
    }


@router.post(
    "/campaigns/{campaign_id}/engagements",
    response_model=EngagementRecorded,
    summary="Report a recipient's click or conversion (for A/B metrics and reports)",
)
async def engagement(
    campaign_id: IdPath, body: EngagementCreate, svc: Services = Depends(services)
) -> dict[str, Any]:
    contact_id = await svc.messaging.delivered_contact(campaign_id, body.external_id)
    return {"recorded": await svc.messaging.engage(campaign_id, contact_id, body.kind)}


@router.post(
    "/audiences/{audience_id}/segment-preview",
    summary="How many contacts a segment matches (and how many are suppressed)",
)
async def segment_preview(
    audience_id: IdPath, body: SegmentPreview, svc: Services = Depends(services)
) -> dict[str, Any]:
    await svc.messaging.get_audience(audience_id)
    conditions = segments.validate(body.segment)
    follow_up = segments.engagement_conditions(conditions)

    async def chosen(after: int, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The page's contacts that meet every condition (follow-ups: by the query)."""
        if follow_up and page:
            subset = await svc.messaging.list_contacts(audience_id, after, len(page), follow_up)
            page = [c for c in subset if c["id"] <= page[-1]["id"]]
        return [c for c in page if segments.matches(conditions, c)]

    matching, total, after = 0, 0, 0
    while True:
        page = await svc.messaging.list_contacts(audience_id, after, 5000)
        if not page:
            break
        total += len(page)
        matching += len(await chosen(after, page))
        after = page[-1]["id"]
    sample = []
    if conditions:
        first = await svc.messaging.list_contacts(audience_id, 0, 200)
        sample = [c["external_id"] for c in await chosen(0, first)][:10]
    return {"audience_id": audience_id, "matching": matching, "total": total, "sample": sample}


@router.post("/campaigns/preview", response_model=Preview, summary="Render a message for a sample")
async def preview(body: PreviewRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    sample = None
    if body.audience_id is not None:
        await svc.messaging.get_audience(body.audience_id)
        sample = await svc.message_app.sample_contact(body.audience_id)
    contact = sample or {"external_id": "sample", "address": "sample@example.com", "attributes": {}}
    try:
        rendered = await svc.message_app.templates.preview(body.message, contact)
    except InvalidInput as exc:
        return {"rendered": None, "contact": contact, "error": exc.message}
    return {"rendered": rendered, "contact": contact, "error": None}
