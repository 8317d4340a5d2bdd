"""The one place a campaign status (and its archive mark) is written: compare-and-set in SQL,
audited."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from campaignd.domain import lifecycle
from campaignd.domain.errors import IllegalTransition, NotFound
from campaignd.domain.statuses import (
    Actor,
    CampaignKind,
    CampaignStatus,
    allowed_targets,
    check_transition,
)
from campaignd.store.db import Database, utcnow
from campaignd.store.rows import to_dict
from campaignd.store.tables import campaign_events


async def record_event(
    conn: AsyncConnection,
    kind: CampaignKind,
    campaign_id: int,
    event: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    actor: Actor | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(campaign_events).values(
            campaign_kind=kind.value,
            campaign_id=campaign_id,
            event=event,
            from_status=from_status,
            to_status=to_status,
            actor=actor.value if actor else None,
            details=details,
            at=utcnow(),
        )
    )


async def update_edited(
    db: Database,
    table: Table,
    kind: CampaignKind,
    campaign_id: int,
    values: dict[str, Any],
    details: dict[str, Any],
    notify: str | None = None,
) -> dict[str, Any] | None:
    """Store an edit of a campaign row (its version bumped) and its `edited` event, and wake
    the nodes listening with `notify` (Database.notify); the new row, or None if there is no
    such campaign.

    On PostgreSQL this is one statement (the event inserted by a data-modifying WITH, the
    NOTIFY in its select list) sent alone: one round trip where a transaction and a NOTIFY
    took five (BEGIN, UPDATE, INSERT, COMMIT, NOTIFY).
    """
    if not db.is_postgres:  # one engine on SQLite: nothing to notify
        changed = (
            update(table)
            .where(table.c.id == campaign_id)
            .values(**values, version=table.c.version + 1, updated_at=utcnow())
            .returning(*table.c)
        )
        async with db.transaction() as conn:
            row = (await conn.execute(changed)).first()
            if row is not None:
                await record_event(conn, kind, campaign_id, "edited", details=details)
        return to_dict(row)
    params = {f"v_{key}": value for key, value in values.items()}
    params.update(campaign_id=campaign_id, details=details, now=utcnow())
    if notify is not None:
        params["notify"] = notify[:200]
    statement = _edit_with_event(table, kind.value, tuple(sorted(values)), notify is not None)
    async with db.autocommit() as conn:
        edited = to_dict((await conn.execute(statement, params)).first())
    if edited is not None:
        edited.pop(NOTIFIED, None)
    return edited


NOTIFIED = "campaignd_notified"


@functools.lru_cache(maxsize=256)
def _edit_with_event(table: Table, kind: str, keys: tuple[str, ...], notify: bool) -> Any:
    """update_edited's statement on PostgreSQL for an edit of `keys`, built once (building
    it took longer than running it): the values come as parameters `v_<key>`."""
    updated = (
        update(table)
        .where(table.c.id == bindparam("campaign_id"))
        .values(
            {
                **{key: bindparam(f"v_{key}", type_=table.c[key].type) for key in keys},
                "version": table.c.version + 1,
                "updated_at": bindparam("now", type_=table.c.updated_at.type),
            }
        )
        .returning(*table.c)
        .cte("updated")
    )
    event = insert(campaign_events).from_select(
        ["campaign_kind", "campaign_id", "event", "details", "at"],
        select(
            literal(kind),
            updated.c.id,
            literal("edited"),
            bindparam("details", type_=campaign_events.c.details.type),
            bindparam("now", type_=campaign_events.c.at.type),
        ),
    )
    columns: list[Any] = [updated]
    if notify:  # sent once the statement commits, for the one row edited (none if none was)
        columns.append(func.pg_notify("campaignd", bindparam("notify")).label(NOTIFIED))
    return select(*columns).add_cte(event.cte("event"))


async def transition(
    conn: AsyncConnection,
    table: Table,
    kind: CampaignKind,
    campaign_id: int,
    requested: CampaignStatus,
    actor: Actor,
    *,
    extra: dict[str, Any] | None = None,
) -> CampaignStatus:
    """Move a campaign to `requested`; return the previous status.

    Raises NotFound, or IllegalTransition (with the status that won) when the table refuses
    the move or another writer changed the status between our read and our write.
    """
    row = (await conn.execute(select(table.c.status).where(table.c.id == campaign_id))).first()
    if row is None:
        raise NotFound(f"Campaign {campaign_id} does not exist.", campaign_id=campaign_id)
    current = CampaignStatus(row.status)
    try:
        check_transition(kind, current, requested, actor)
    except IllegalTransition as exc:
        exc.context["campaign_id"] = campaign_id
        raise
    result = await conn.execute(
        update(table)
        .where(table.c.id == campaign_id, table.c.status == current.value)
        .values(
            status=requested.value,
            version=table.c.version + 1,
            updated_at=utcnow(),
            **(extra or {}),
        )
    )
    if result.rowcount != 1:
        now = (
            await conn.execute(select(table.c.status).where(table.c.id == campaign_id))
        ).scalar_one()
        raise IllegalTransition(
            now,
            requested.value,
            [s.value for s in allowed_targets(kind, CampaignStatus(now))],
            campaign_id=campaign_id,
        )
    await record_event(
        conn,
        kind,
        campaign_id,
        "status",
        from_status=current.value,
        to_status=requested.value,
        actor=actor,
    )
    return current


async def set_archived(
    conn: AsyncConnection,
    table: Table,
    kind: CampaignKind,
    campaign_id: int,
    archived: bool,
    not_found: str,
) -> None:
    """Archive (an active campaign is refused) or unarchive; `not_found` is the NotFound text."""
    row = (
        await conn.execute(select(table.c.name, table.c.status).where(table.c.id == campaign_id))
    ).first()
    if row is None:
        raise NotFound(not_found, campaign_id=campaign_id)
    if archived:
        lifecycle.refuse_active_campaign(campaign_id, row.name, row.status, "archive")
    await conn.execute(
        update(table)
        .where(table.c.id == campaign_id, table.c.status == row.status)
        .values(archived_at=utcnow() if archived else None)
    )
    await record_event(conn, kind, campaign_id, "archived" if archived else "unarchived")
