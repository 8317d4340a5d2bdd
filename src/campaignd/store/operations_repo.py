"""SQL for message operations: the delivery log, retries, tracked links and clicks, bounces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from campaignd.domain import bounces as bounce_rules
from campaignd.domain import links as link_rules
from campaignd.store.db import Database, iso, utcnow
from campaignd.store.messaging_repo import FAILED, RETRY, SENDING, SENT, normalize_address
from campaignd.store.tables import (
    bounces,
    clicks,
    contacts,
    deliveries,
    engagements,
    links,
    suppressions,
)

C, D, L, K, B = contacts, deliveries, links, clicks, bounces
# What the delivery log calls each ledger state. A claim whose outcome is not written is in
# doubt: in flight right now, or left by a crash (and settled when the campaign resumes).
STATUS_OF_STATE = {SENT: "sent", FAILED: "failed", SENDING: "in_doubt", RETRY: "retrying"}
STATE_OF_STATUS = {status: state for state, status in STATUS_OF_STATE.items()}
EXPORT_PAGE = 5000


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    contact_id: int
    external_id: str
    address: str
    status: str
    variant: str | None
    attempts: int
    error: str | None
    updated_at: str | None

    @classmethod
    def from_row(cls, row: Any) -> DeliveryRow:
        return cls(
            contact_id=int(row.contact_id),
            external_id=row.external_id,
            address=row.address,
            status=STATUS_OF_STATE.get(row.state, row.state),
            variant=row.variant,
            attempts=int(row.attempts),
            error=row.last_error,
            updated_at=iso(row.finished_at or row.claimed_at),
        )


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class OperationsRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert(self, table: Any) -> Any:
        return (postgresql if self.db.is_postgres else sqlite).insert(table)

    # the delivery log -------------------------------------------------------------------
    def _log_query(self, campaign_id: int, status: str | None, q: str | None) -> Any:
        query = (
            select(
                D.c.contact_id,
                C.c.external_id,
                C.c.address,
                D.c.state,
                D.c.variant,
                D.c.attempts,
                D.c.last_error,
                D.c.claimed_at,
                D.c.finished_at,
            )
            .join(C, C.c.id == D.c.contact_id)
            .where(D.c.campaign_id == campaign_id)
        )
        if status is not None:
            query = query.where(D.c.state == STATE_OF_STATUS[status])
        if q:
            pattern = _like(q)
            query = query.where(
                or_(
                    func.lower(C.c.address).like(pattern, escape="\\"),
                    func.lower(C.c.external_id).like(pattern, escape="\\"),
                )
            )
        return query.order_by(D.c.contact_id)

    async def delivery_page(
        self, campaign_id: int, status: str | None, q: str | None, after: int, limit: int
    ) -> list[DeliveryRow]:
        """One keyset page of the delivery log, by contact id after `after`."""
        query = self._log_query(campaign_id, status, q).where(D.c.contact_id > after).limit(limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [DeliveryRow.from_row(r) for r in rows]

    async def delivery_log(
        self, campaign_id: int, status: str | None, q: str | None
    ) -> AsyncIterator[list[DeliveryRow]]:
        """Every row of the log, a page at a time: memory stays flat however long it is."""
        after = 0
        while True:
            page = await self.delivery_page(campaign_id, status, q, after, EXPORT_PAGE)
            if not page:
                return
            yield page
            after = page[-1].contact_id

    async def requeue_failed(self, campaign_id: int, keep_reason: str) -> int:
        """Give failed deliveries one more try; not those that may have reached the recipient.

        `keep_reason` marks failures settled "in doubt" (a channel with no idempotency), which
        may have been delivered: they are never retried.
        """
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(D)
                .where(
                    D.c.campaign_id == campaign_id,
                    D.c.state == FAILED,
                    or_(D.c.last_error.is_(None), D.c.last_error != keep_reason),
                )
                .values(state=RETRY)
            )
        return int(result.rowcount or 0)

    # tracked links --------------------------------------------------------------------
    async def link_ids(self, campaign_id: int, urls: list[str]) -> dict[str, int]:
        """The stored id of each URL for this campaign, storing the new ones."""
        hashes = {link_rules.url_hash(u): u for u in urls}
        values = [{"campaign_id": campaign_id, "url_hash": h, "url": u} for h, u in hashes.items()]
        async with self.db.transaction() as conn:
            await conn.execute(self._insert(L).on_conflict_do_nothing(), values)
            rows = (
                await conn.execute(
                    select(L.c.id, L.c.url_hash).where(
                        L.c.campaign_id == campaign_id, L.c.url_hash.in_(list(hashes))
                    )
                )
            ).all()
        return {hashes[r.url_hash]: int(r.id) for r in rows}

    async def link_url(self, campaign_id: int, link_id: int) -> str | None:
        async with self.db.read() as conn:
            value = (
                await conn.execute(
                    select(L.c.url).where(L.c.id == link_id, L.c.campaign_id == campaign_id)
                )
            ).scalar_one_or_none()
        return None if value is None else str(value)

    async def record_click(self, token: link_rules.LinkToken) -> bool:
        """Count a click (total) and note the recipient clicked (unique, and for A/B)."""
        now = utcnow()
        upsert = self._insert(K).values(
            campaign_id=token.campaign_id,
            contact_id=token.contact_id,
            link_id=token.link_id,
            variant=token.variant,
            clicks=1,
            first_at=now,
            last_at=now,
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[K.c.campaign_id, K.c.link_id, K.c.contact_id],
            set_={"clicks": K.c.clicks + 1, "last_at": now},
        )
        engaged = (
            self._insert(engagements)
            .values(
                campaign_id=token.campaign_id, contact_id=token.contact_id, kind="click", at=now
            )
            .on_conflict_do_nothing()
        )
        try:
            async with self.db.transaction() as conn:
                await conn.execute(upsert)
                await conn.execute(engaged)
        except IntegrityError:  # the contact or campaign was deleted since the message went out
            return False
        return True

    async def link_report(self, campaign_id: int) -> list[dict[str, Any]]:
        """Per URL: total and unique clicks, also per variant."""
        query = (
            select(
                L.c.id,
                L.c.url,
                K.c.variant,
                func.coalesce(func.sum(K.c.clicks), 0).label("total"),
                func.count(K.c.contact_id).label("unique"),
            )
            .select_from(L.outerjoin(K, and_(K.c.link_id == L.c.id)))
            .where(L.c.campaign_id == campaign_id)
            .group_by(L.c.id, L.c.url, K.c.variant)
            .order_by(L.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        report: dict[int, dict[str, Any]] = {}
        for row in rows:
            entry = report.setdefault(
                int(row.id), {"url": row.url, "clicks": 0, "unique_clicks": 0, "per_variant": {}}
            )
            if not row.unique:
                continue
            entry["clicks"] += int(row.total)
            entry["unique_clicks"] += int(row.unique)
            entry["per_variant"][row.variant or "default"] = {
                "clicks": int(row.total),
                "unique_clicks": int(row.unique),
            }
        return sorted(report.values(), key=lambda e: (-e["clicks"], e["url"]))

    # bounces --------------------------------------------------------------------------
    async def add_bounce(
        self, address: str, kind: str, reason: str | None, campaign_id: int | None
    ) -> int:
        """Store a bounce; return the address's soft bounces within the window, this included."""
        address = normalize_address(address)
        now = utcnow()
        async with self.db.transaction() as conn:
            await conn.execute(
                B.insert().values(
                    address=address, kind=kind, reason=reason, campaign_id=campaign_id, at=now
                )
            )
            soft = (
                await conn.execute(
                    select(func.count()).where(
                        B.c.address == address,
                        B.c.kind == bounce_rules.SOFT,
                        B.c.at > now - bounce_rules.SOFT_WINDOW,
                    )
                )
            ).scalar_one()
        return int(soft)

    async def last_campaign_to(self, address: str) -> int | None:
        """The campaign that most recently sent to this address (a bounce is its bounce)."""
        query = (
            select(D.c.campaign_id)
            .join(C, C.c.id == D.c.contact_id)
            .where(func.lower(C.c.address) == normalize_address(address), D.c.state == SENT)
            .order_by(D.c.finished_at.desc())
            .limit(1)
        )
        async with self.db.read() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else int(value)

    async def bounce_counts(self, campaign_id: int) -> dict[str, int]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(B.c.kind, func.count())
                    .where(B.c.campaign_id == campaign_id)
                    .group_by(B.c.kind)
                )
            ).all()
        counts = {bounce_rules.HARD: 0, bounce_rules.SOFT: 0}
        counts.update({kind: int(n) for kind, n in rows})
        return counts

    # test sends -----------------------------------------------------------------------
    async def audience_contacts(
        self,
        audience_id: int,
        *,
        external_ids: Sequence[str] = (),
        addresses: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Contacts of the audience with these external ids or (case-insensitive) addresses."""
        wanted = []
        if external_ids:
            wanted.append(C.c.external_id.in_(list(external_ids)))
        if addresses:
            wanted.append(func.lower(C.c.address).in_([normalize_address(a) for a in addresses]))
        if not wanted:
            return []
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(C.c.id, C.c.external_id, C.c.address, C.c.attributes)
                    .where(C.c.audience_id == audience_id, or_(*wanted))
                    .order_by(C.c.id)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def suppressed_among(self, addresses: list[str]) -> set[str]:
        normalized = [normalize_address(a) for a in addresses]
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(suppressions.c.address).where(suppressions.c.address.in_(normalized))
                )
            ).scalars()
            return set(rows)
