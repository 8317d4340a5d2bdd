"""Accounts, audiences, contacts, suppressions, message campaigns and the delivery ledger."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from campaignd.domain import ab_test, lifecycle
from campaignd.domain.errors import Conflict, NotFound
from campaignd.domain.leases import LeaseRef
from campaignd.domain.lifecycle import CampaignUse
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus
from campaignd.store import status as status_store
from campaignd.store.cluster_repo import ClusterRepository
from campaignd.store.db import Database, utcnow
from campaignd.store.rows import (
    archived_filter,
    by_id,
    listing,
    read_by_ids,
    read_versions,
    to_dict,
    to_dicts,
)
from campaignd.store.tables import (
    accounts,
    audiences,
    contacts,
    deliveries,
    engagements,
    leases,
    message_campaigns,
    suppressions,
)

M = message_campaigns
# What the nodes read on every tick, built once (see engine/node.py).
_RUNNING_WHERE = (archived_filter(M, False), M.c.status == CampaignStatus.RUNNING.value)
_DUE = select(M.c.id).where(
    M.c.status == CampaignStatus.SCHEDULED.value,
    M.c.start_at <= bindparam("now", type_=M.c.start_at.type),
)
_RUNNING = select(M).where(*_RUNNING_WHERE).order_by(M.c.id)
_RUNNING_VERSIONS = select(M.c.id, M.c.version).where(*_RUNNING_WHERE).order_by(M.c.id)
_RUNNING_BY_ID = select(M).where(M.c.id.in_(bindparam("ids", expanding=True)), *_RUNNING_WHERE)
D = deliveries
C = contacts
SENT, FAILED, SENDING = "sent", "failed", "sending"
# A failed delivery given one more try (retry-failed): eligible again, claimed like a new one.
RETRY = "retry"
VARIANT_COUNTS = (SENT, FAILED, SENDING, *ab_test.EVENTS)
# Multi-row INSERTs stay under PostgreSQL's 32,767 bind parameters (and SQLite's limit).
ROWS_PER_STATEMENT = 1000


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    contact_id: int
    ok: bool
    attempts: int
    error: str | None


# Chooses, from a page of candidates, whom to claim and with which variant.
Pick = Callable[[list[dict[str, Any]]], list[tuple[dict[str, Any], str | None]]]


@dataclass(frozen=True, slots=True)
class ClaimedPage:
    cursor: int  # the last candidate id read: the next page starts after it
    won: list[tuple[dict[str, Any], str | None]]  # (contact, variant) claimed by this call
    # With the limit enforced (shards share it): `full` when every shard's sent rows reach it,
    # `busy` when there is no room only because of rows still in flight (they may fail or be
    # given back): ask again later from the same cursor.
    full: bool = False
    busy: bool = False


@dataclass(frozen=True, slots=True)
class LedgerUpdate:
    """One campaign's settled outcomes and claims given back, for one write."""

    campaign_id: int
    outcomes: list[DeliveryOutcome]
    released: list[int]
    # The shard epoch the writer holds: the write is refused (LeaseLost) once it is not.
    lease: LeaseRef | None = None


def _by_variant(claims: list[tuple[int, str | None]]) -> dict[str | None, list[int]]:
    """Contact ids per variant (nearly always one group): one claim statement per group."""
    groups: dict[str | None, list[int]] = {}
    for contact_id, variant in claims:
        groups.setdefault(variant, []).append(contact_id)
    return groups


def normalize_address(address: str) -> str:
    return address.strip().lower()


@dataclass
class ViewFigures:
    """Per campaign: sent/failed/sending counts and (shard, node) holders; per audience: size."""

    counts: dict[int, dict[str, int]]
    holders: dict[int, list[tuple[int, str]]]
    audience_sizes: dict[int, int]


class MessagingRepository:
    """All SQL for message campaigns; callers speak in intents, not queries."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.cluster = ClusterRepository(db)

    def _insert_ignore(self, table: Any) -> Any:
        dialect = postgresql if self.db.is_postgres else sqlite
        return dialect.insert(table)

    # accounts -------------------------------------------------------------------------
    async def create_account(self, data: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    insert(accounts)
                    .values(**data, created_at=now, updated_at=now)
                    .returning(accounts)
                )
            ).first()
        return to_dict(row)  # type: ignore[return-value]

    async def list_accounts(self, archived: bool = False) -> list[dict[str, Any]]:
        """Accounts in use (or, with archived=True, only the archived ones)."""
        query = select(accounts).where(archived_filter(accounts, archived)).order_by(accounts.c.id)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return to_dicts(rows)

    async def get_account(self, account_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        if row is None:
            raise NotFound(f"Account {account_id} does not exist.", account_id=account_id)
        return to_dict(row)  # type: ignore[return-value]

    async def update_account(self, account_id: int, data: dict[str, Any]) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    update(accounts)
                    .where(accounts.c.id == account_id)
                    .values(**data, updated_at=utcnow())
                    .returning(accounts)
                )
            ).first()
        if row is None:
            raise NotFound(f"Account {account_id} does not exist.", account_id=account_id)
        return to_dict(row)  # type: ignore[return-value]

    async def campaigns_using(self, column: str, row_id: int) -> list[CampaignUse]:
        """Message campaigns whose `column` (account_id or audience_id) is `row_id`."""
        query = select(M.c.id, M.c.name, M.c.status).where(M.c[column] == row_id).order_by(M.c.id)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [CampaignUse(r.id, r.name, r.status) for r in rows]

    async def delete_account(self, account_id: int) -> None:
        account = await self.get_account(account_id)
        uses = await self.campaigns_using("account_id", account_id)
        lifecycle.refuse_used("Account", account_id, account["name"], uses, "delete")
        async with self.db.transaction() as conn:
            # The foreign key refuses a delete if a campaign took the account meanwhile.
            result = await conn.execute(delete(accounts).where(accounts.c.id == account_id))
        if result.rowcount == 0:
            raise NotFound(f"Account {account_id} does not exist.", account_id=account_id)

    async def archive_account(self, account_id: int, archived: bool) -> dict[str, Any]:
        account = await self.get_account(account_id)
        if archived:
            uses = await self.campaigns_using("account_id", account_id)
            lifecycle.refuse_used("Account", account_id, account["name"], uses, "archive")
        return await self.update_account(
            account_id, {"archived_at": utcnow() if archived else None}
        )

    async def sealed_secrets(self, limit: int = 1) -> list[str]:
        """Some stored secret tokens (to check the key can open them at start-up)."""
        async with self.db.read() as conn:
            rows = (
                (
                    await conn.execute(
                        select(accounts.c.secrets)
                        .where(accounts.c.secrets.is_not(None))
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            sessions = (
                (
                    await conn.execute(
                        select(M.c.session).where(M.c.session.is_not(None)).limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        return [*rows, *sessions]

    # audiences and contacts -----------------------------------------------------------
    async def create_audience(self, name: str) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    insert(audiences).values(name=name, created_at=utcnow()).returning(audiences)
                )
            ).first()
        return {**to_dict(row), "contact_count": 0}  # type: ignore[dict-item]

    async def list_audiences(self, archived: bool = False) -> list[dict[str, Any]]:
        counts = (
            select(C.c.audience_id, func.count().label("n")).group_by(C.c.audience_id).subquery()
        )
        query = (
            select(audiences, func.coalesce(counts.c.n, 0).label("contact_count"))
            .outerjoin(counts, counts.c.audience_id == audiences.c.id)
            .where(archived_filter(audiences, archived))
            .order_by(audiences.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return to_dicts(rows)

    async def get_audience(self, audience_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(audiences).where(audiences.c.id == audience_id))
            ).first()
            if row is None:
                raise NotFound(f"Audience {audience_id} does not exist.", audience_id=audience_id)
            count = (
                await conn.execute(select(func.count()).where(C.c.audience_id == audience_id))
            ).scalar_one()
        return {**to_dict(row), "contact_count": count}  # type: ignore[dict-item]

    async def delete_audience(self, audience_id: int) -> None:
        audience = await self.get_audience(audience_id)
        uses = await self.campaigns_using("audience_id", audience_id)
        lifecycle.refuse_used("Audience", audience_id, audience["name"], uses, "delete")
        async with self.db.transaction() as conn:
            await conn.execute(delete(C).where(C.c.audience_id == audience_id))
            await conn.execute(delete(audiences).where(audiences.c.id == audience_id))

    async def archive_audience(self, audience_id: int, archived: bool) -> dict[str, Any]:
        audience = await self.get_audience(audience_id)
        if archived:
            uses = await self.campaigns_using("audience_id", audience_id)
            lifecycle.refuse_used("Audience", audience_id, audience["name"], uses, "archive")
        async with self.db.transaction() as conn:
            await conn.execute(
                update(audiences)
                .where(audiences.c.id == audience_id)
                .values(archived_at=utcnow() if archived else None)
            )
        return await self.get_audience(audience_id)

    async def contact_counts(self, audience_ids: Iterable[int]) -> dict[int, int]:
        """How many contacts each audience holds (0 for one with none)."""
        ids = sorted(set(audience_ids))
        if not ids:
            return {}
        query = (
            select(C.c.audience_id, func.count())
            .where(C.c.audience_id.in_(ids))
            .group_by(C.c.audience_id)
        )
        async with self.db.read() as conn:
            found = {row[0]: row[1] for row in (await conn.execute(query)).all()}
        return {i: int(found.get(i, 0)) for i in ids}

    async def add_contacts(self, audience_id: int, rows: list[dict[str, Any]]) -> int:
        """Insert contacts, skipping external ids already in the audience; return how many.

        One transaction for all of them: an error part-way stores none.
        """
        if not rows:
            return 0
        now = utcnow()
        values = [{**r, "audience_id": audience_id, "created_at": now} for r in rows]
        statement = self._insert_ignore(C).on_conflict_do_nothing().returning(C.c.id)
        inserted = 0
        async with self.db.transaction() as conn:
            for chunk in _chunks(values, ROWS_PER_STATEMENT):
                inserted += len((await conn.execute(statement, chunk)).scalars().all())
        return inserted

    async def refresh_planner_stats(self) -> None:
        """Before a campaign sends, let PostgreSQL's planner see freshly imported rows.

        With statistics from before an import it expects a handful of contacts and reads
        every remaining one per page (measured: 150 ms a page at 100,000 contacts) instead
        of walking (audience_id, id) in order and stopping at the page's end.
        """
        if self.db.is_postgres:
            async with self.db.transaction() as conn:
                await conn.exec_driver_sql("ANALYZE contacts")
                await conn.exec_driver_sql("ANALYZE deliveries")

    async def list_contacts(
        self,
        audience_id: int,
        after_id: int,
        limit: int,
        follow_up: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(C.c.id, C.c.external_id, C.c.address, C.c.attributes)
                    .where(
                        C.c.audience_id == audience_id,
                        C.c.id > after_id,
                        *follow_up_filters(follow_up or []),
                    )
                    .order_by(C.c.id)
                    .limit(limit)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def first_contact_of_campaign(self, campaign_id: int) -> list[dict[str, Any]]:
        """The first contact of the campaign's audience ([] if none), read without its row."""
        rows = await self.db.fetch(_FIRST_CONTACT_OF_CAMPAIGN, {"id": campaign_id})
        return [dict(zip(r._fields, r, strict=True)) for r in rows]

    # suppressions ---------------------------------------------------------------------
    async def suppress(self, address: str, reason: str | None) -> dict[str, Any]:
        address = normalize_address(address)
        statement = (
            self._insert_ignore(suppressions)
            .values(address=address, reason=reason, created_at=utcnow())
            .on_conflict_do_nothing()
        )
        async with self.db.transaction() as conn:
            await conn.execute(statement)
            row = (
                await conn.execute(select(suppressions).where(suppressions.c.address == address))
            ).first()
        return to_dict(row)  # type: ignore[return-value]

    async def list_suppressions(self, after: str, limit: int) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(suppressions)
                    .where(suppressions.c.address > after)
                    .order_by(suppressions.c.address)
                    .limit(limit)
                )
            ).all()
        return to_dicts(rows)

    async def unsuppress(self, address: str) -> None:
        async with self.db.transaction() as conn:
            result = await conn.execute(
                delete(suppressions).where(suppressions.c.address == normalize_address(address))
            )
        if result.rowcount == 0:
            raise NotFound(f"'{address}' is not suppressed.", address=address)

    # campaigns ------------------------------------------------------------------------
    async def create_campaign(self, data: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    insert(M)
                    .values(
                        **data, status=CampaignStatus.DRAFT.value, created_at=now, updated_at=now
                    )
                    .returning(M)
                )
            ).first()
            assert row is not None
            await status_store.record_event(
                conn, CampaignKind.MESSAGE, row.id, "created", to_status="draft"
            )
        return to_dict(row)  # type: ignore[return-value]

    async def list_campaigns(
        self, status: str | None = None, archived: bool = False
    ) -> list[dict[str, Any]]:
        return to_dicts(await self.db.fetch(listing(M, archived, bool(status)), {"status": status}))

    async def running_campaigns(self) -> list[dict[str, Any]]:
        """list_campaigns("running"), by a statement built once (every node, every tick)."""
        async with self.db.read() as conn:
            rows = (await conn.execute(_RUNNING)).all()
        return to_dicts(rows)

    async def running_versions(self) -> dict[int, int]:
        """The `version` of each running campaign (a narrow read to tell which rows changed)."""
        return await read_versions(self.db, _RUNNING_VERSIONS)

    async def running_by_id(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Those of `ids` that are still running, as running_campaigns reads them."""
        return await read_by_ids(self.db, _RUNNING_BY_ID, ids)

    async def get_campaign(self, campaign_id: int) -> dict[str, Any]:
        row = next(iter(await self.db.fetch(by_id(M), {"row_id": campaign_id})), None)
        if row is None:
            raise NotFound(f"Campaign {campaign_id} does not exist.", campaign_id=campaign_id)
        return to_dict(row)  # type: ignore[return-value]

    async def touch_campaigns(
        self, campaign_ids: list[int] | None = None, *, account_id: int | None = None
    ) -> list[int]:
        """Bump the version of these running campaigns (or the account's), so the nodes
        sending them read them again; the ids touched."""
        query = update(M).where(M.c.status == CampaignStatus.RUNNING.value)
        if campaign_ids is not None:
            query = query.where(M.c.id.in_(campaign_ids))
        if account_id is not None:
            query = query.where(M.c.account_id == account_id)
        async with self.db.transaction() as conn:
            rows = (
                await conn.execute(query.values(version=M.c.version + 1).returning(M.c.id))
            ).all()
        return [int(r.id) for r in rows]

    async def update_campaign(
        self,
        campaign_id: int,
        data: dict[str, Any],
        audit: dict[str, Any] | None = None,
        notify: str | None = None,
    ) -> dict[str, Any]:
        """Store an edit (audited as `audit`, else `data`); `notify`: Database.notify."""
        edited = await status_store.update_edited(
            self.db, M, CampaignKind.MESSAGE, campaign_id, data, audit or data, notify
        )
        if edited is None:
            raise NotFound(f"Campaign {campaign_id} does not exist.", campaign_id=campaign_id)
        return edited

    async def delete_campaign(self, campaign_id: int) -> None:
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(select(M.c.name, M.c.status).where(M.c.id == campaign_id))
            ).first()
            if row is None:
                raise NotFound(f"Campaign {campaign_id} does not exist.", campaign_id=campaign_id)
            lifecycle.refuse_active_campaign(campaign_id, row.name, row.status, "delete")
            await conn.execute(delete(D).where(D.c.campaign_id == campaign_id))
            await conn.execute(delete(engagements).where(engagements.c.campaign_id == campaign_id))
            await conn.execute(delete(M).where(M.c.id == campaign_id, M.c.status == row.status))

    async def clone_campaign(self, campaign_id: int) -> dict[str, Any]:
        """A new draft with the campaign's design: no recipients, no schedule, no results."""
        source = await self.get_campaign(campaign_id)
        copied = (
            "account_id", "audience_id", "message", "subject", "recipient_limit",
            "rate_per_minute", "segment", "variants", "ab_test", "send_window",
            "max_consecutive_failures", "track_links", "shards",
        )  # fmt: skip
        return await self.create_campaign(
            {"name": lifecycle.copy_name(source["name"]), **{k: source[k] for k in copied}}
        )

    async def archive_campaign(self, campaign_id: int, archived: bool) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            await status_store.set_archived(
                conn,
                M,
                CampaignKind.MESSAGE,
                campaign_id,
                archived,
                f"Campaign {campaign_id} does not exist.",
            )
        return await self.get_campaign(campaign_id)

    async def transition(
        self,
        campaign_id: int,
        requested: CampaignStatus,
        actor: Actor = Actor.OPERATOR,
        lease: LeaseRef | None = None,
        **extra: Any,
    ) -> CampaignStatus:
        """The compare-and-set status change, with the report's times written alongside.

        started_at on the first move to running (kept across resumes); completed_at on each
        completion (a resumed campaign shows its last one until it completes again). With a
        lease, only while its epoch is held (LeaseLost otherwise).
        """
        if requested is CampaignStatus.RUNNING:
            extra = {"started_at": func.coalesce(M.c.started_at, utcnow()), **extra}
        elif requested is CampaignStatus.COMPLETED:
            extra = {"completed_at": utcnow(), **extra}
        async with self.db.transaction() as conn:
            if lease is not None:
                await self.cluster.check(conn, lease)
            return await status_store.transition(
                conn, M, CampaignKind.MESSAGE, campaign_id, requested, actor, extra=extra
            )

    async def set_sending(
        self, campaign_id: int, runner_id: str | None, error: str | None = None
    ) -> None:
        values: dict[str, Any] = {"sending": runner_id is not None, "runner_id": runner_id}
        if error is not None:
            values["last_error"] = error
        async with self.db.transaction() as conn:
            await conn.execute(update(M).where(M.c.id == campaign_id).values(**values))

    async def note_ab_test(self, campaign_id: int, event: str, values: dict[str, Any]) -> None:
        """The A/B test's progress (sample done, winner): kept on the campaign and audited.

        Written once: with several shards the first one to decide wins, the others adopt it.
        """
        unset = [getattr(M.c, key).is_(None) for key in values]
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(M).where(M.c.id == campaign_id, *unset).values(**values)
            )
            if not result.rowcount:
                return
            await status_store.record_event(
                conn,
                CampaignKind.MESSAGE,
                campaign_id,
                event,
                actor=Actor.SYSTEM,
                details={k: str(v) for k, v in values.items()},
            )

    # the ledger -----------------------------------------------------------------------
    async def counts(self, campaign_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """sent / failed / sending per campaign, straight from the ledger."""
        ids = list(campaign_ids)
        result = {cid: {SENT: 0, FAILED: 0, SENDING: 0} for cid in ids}
        if not ids:
            return result
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(D.c.campaign_id, D.c.state, func.count())
                    .where(D.c.campaign_id.in_(ids))
                    .group_by(D.c.campaign_id, D.c.state)
                )
            ).all()
        for campaign_id, state, count in rows:
            result[campaign_id][state] = count
        return result

    async def view_figures(self, campaign_ids: list[int]) -> ViewFigures:
        """What a campaign's view adds to its row, in one round trip: the ledger's counts
        (`counts`), the live holders of its shards (`cluster.holders`) and the size of each
        campaign's audience (`contact_counts`), as three parts of one UNION ALL. It needs
        only the ids, so a view can read it while it reads the row."""
        ids = list(campaign_ids)
        figures = ViewFigures(
            counts={cid: {SENT: 0, FAILED: 0, SENDING: 0} for cid in ids},
            holders={},
            audience_sizes={},
        )
        if not ids:
            return figures
        params: dict[str, Any] = {"ids": ids}
        if not self.db.is_postgres:
            params["now"] = utcnow()
        rows = await self.db.fetch(_view_figures_query(self.db.is_postgres), params)
        for part, row_id, label, n in rows:
            if part == "count":
                figures.counts[row_id][label] = int(n)
            elif part == "lease":
                figures.holders.setdefault(row_id, []).append((int(n), label))
            else:
                figures.audience_sizes[row_id] = int(n)
        for held in figures.holders.values():
            held.sort()
        return figures

    def _eligible(
        self, campaign_id: int, audience_id: int, follow_up: list[dict[str, Any]] | None = None
    ) -> Any:
        return and_(
            C.c.audience_id == audience_id,
            ~exists().where(
                D.c.campaign_id == campaign_id, D.c.contact_id == C.c.id, D.c.state != RETRY
            ),
            ~exists().where(suppressions.c.address == func.lower(C.c.address)),
            *follow_up_filters(follow_up or []),
        )

    @functools.cached_property
    def _next_candidates(self) -> Any:
        """_candidates without follow-up conditions or shards, its values as parameters."""
        return (
            select(C.c.id, C.c.external_id, C.c.address, C.c.attributes)
            .where(
                C.c.id > bindparam("after", type_=BigInteger),
                self._eligible(
                    bindparam("cid", type_=BigInteger),  # type: ignore[arg-type]
                    bindparam("aud", type_=BigInteger),  # type: ignore[arg-type]
                ),
            )
            .order_by(C.c.id)
            .limit(bindparam("lim", type_=Integer))
        )

    @functools.cached_property
    def _next_candidates_sharded(self) -> Any:
        """_next_candidates of one shard: `contact id % shards == shard`."""
        shards, shard = bindparam("shards", type_=BigInteger), bindparam("shard", type_=BigInteger)
        return self._next_candidates.where(C.c.id % shards == shard)

    async def candidates(
        self,
        campaign_id: int,
        audience_id: int,
        after_id: int,
        limit: int,
        follow_up: list[dict[str, Any]] | None = None,
        shard: int = 0,
        shards: int = 1,
    ) -> list[dict[str, Any]]:
        """The next contacts by id with no delivery row for this campaign and not suppressed.

        `follow_up`: conditions on engagement with other campaigns (segments.py). With
        shards, only this shard's contacts: `contact id % shards == shard` (stable).
        """
        async with self.db.read() as conn:
            return await self._candidates(
                conn, campaign_id, audience_id, after_id, limit, follow_up, shard, shards
            )

    async def _candidates(
        self,
        conn: Any,
        campaign_id: int,
        audience_id: int,
        after_id: int,
        limit: int,
        follow_up: list[dict[str, Any]] | None,
        shard: int,
        shards: int,
    ) -> list[dict[str, Any]]:
        if not follow_up:  # the usual case, by a statement built once
            params = {"after": after_id, "aud": audience_id, "cid": campaign_id, "lim": limit}
            if shards > 1:
                params.update(shards=shards, shard=shard)
            statement = self._next_candidates_sharded if shards > 1 else self._next_candidates
            rows = (await conn.execute(statement, params)).all()
        else:
            query = select(C.c.id, C.c.external_id, C.c.address, C.c.attributes).where(
                C.c.id > after_id, self._eligible(campaign_id, audience_id, follow_up)
            )
            if shards > 1:
                query = query.where(C.c.id % shards == shard)
            rows = (await conn.execute(query.order_by(C.c.id).limit(limit))).all()
        return [
            {"id": i, "external_id": e, "address": a, "attributes": attributes}
            for i, e, a, attributes in rows
        ]

    async def claim_next(
        self,
        campaign_id: int,
        audience_id: int,
        after_id: int,
        limit: int,
        pick: Pick,
        *,
        follow_up: list[dict[str, Any]] | None = None,
        lease: LeaseRef | None = None,
        shards: int = 1,
        enforce_limit: bool = False,
    ) -> ClaimedPage | None:
        """Read the next `limit` candidates after `after_id` and claim those `pick` chooses,
        in one transaction (one set of round trips instead of two); None when none are left.

        With a lease the claim is fenced (its epoch must be held) and only the lease's shard
        is read; with `enforce_limit` it claims no more than the shared limit leaves (_room).
        """
        async with self.db.transaction() as conn:
            if lease is not None:
                await self.cluster.check(conn, lease)
            shard = lease.shard if lease is not None else 0
            rows = await self._candidates(
                conn, campaign_id, audience_id, after_id, limit, follow_up, shard, shards
            )
            if not rows:
                return None
            picks = pick(rows)
            claims = [(row["id"], variant) for row, variant in picks]
            cursor = rows[-1]["id"]
            if claims and lease is not None and enforce_limit:
                room, full = await self._room(conn, campaign_id)
                if room <= 0:
                    return ClaimedPage(after_id, [], full=full, busy=not full)
                if room < len(claims):
                    claims = claims[:room]
                    cursor = claims[-1][0]  # the rest of the page is read again next time
            won: set[int] = set()
            if claims:
                shard_epoch = (lease.shard, lease.epoch) if lease is not None else (None, None)
                won = await self._claim_ids(conn, campaign_id, claims, *shard_epoch)
        return ClaimedPage(cursor, [(row, variant) for row, variant in picks if row["id"] in won])

    async def _room(self, conn: Any, campaign_id: int) -> tuple[int, bool]:
        """How many more the campaign's limit allows, counting every shard's sent and in-flight
        rows (under the campaign row's lock, so shards claim one after another), and whether
        its sent rows alone reach it."""
        limit = (
            await conn.execute(
                select(M.c.recipient_limit).where(M.c.id == campaign_id).with_for_update()
            )
        ).scalar_one()
        counts = dict(
            (
                await conn.execute(
                    select(D.c.state, func.count())
                    .where(D.c.campaign_id == campaign_id, D.c.state.in_((SENT, SENDING)))
                    .group_by(D.c.state)
                )
            ).all()
        )
        sent = int(counts.get(SENT, 0))
        return int(limit) - sent - int(counts.get(SENDING, 0)), sent >= int(limit)

    async def audience_size(self, audience_id: int) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(select(func.count()).where(C.c.audience_id == audience_id))
                ).scalar_one()
            )

    async def count_eligible(
        self, campaign_id: int, audience_id: int, follow_up: list[dict[str, Any]] | None = None
    ) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(C)
                        .where(self._eligible(campaign_id, audience_id, follow_up))
                    )
                ).scalar_one()
            )

    async def claim(self, campaign_id: int, claims: list[tuple[int, str | None]]) -> set[int]:
        """Write 'sending' rows before sending; return the contact ids this call won."""
        if not claims:
            return set()
        async with self.db.transaction() as conn:
            return await self._claim_ids(conn, campaign_id, claims)

    async def _claim_ids(
        self,
        conn: Any,
        campaign_id: int,
        claims: list[tuple[int, str | None]],
        shard: int | None = None,
        epoch: int | None = None,
    ) -> set[int]:
        """INSERT 'sending' rows, RETURNING the contact ids won. A row waiting for its retry is
        claimed too (attempts kept); any other existing row is not.

        The ids go in as one array (PostgreSQL) or one JSON list (SQLite): one statement of a
        few parameters per claim, whatever its size, instead of a row of parameters each.
        """
        won: set[int] = set()
        now = utcnow()
        for variant, contact_ids in _by_variant(claims).items():
            result = await conn.execute(
                self._claim_sql,
                {
                    "campaign_id": campaign_id,
                    "ids": self._id_list(contact_ids),
                    "variant": variant,
                    "now": now,
                    "shard": shard,
                    "epoch": epoch,
                },
            )
            won.update(result.scalars().all())
        return won

    def _id_list(self, ids: list[int]) -> Any:
        return ids if self.db.is_postgres else json.dumps(ids)

    @functools.cached_property
    def _ids_select(self) -> str:
        """A subquery reading the :ids parameter (array or JSON list) as ids named `value`."""
        if self.db.is_postgres:
            return "SELECT unnest(CAST(:ids AS BIGINT[])) AS value"
        return "SELECT value FROM json_each(:ids)"

    @functools.cached_property
    def _claim_sql(self) -> Any:
        return text(
            "INSERT INTO deliveries (campaign_id, contact_id, state, attempts, variant,"
            " claimed_at, shard, epoch)"
            f" SELECT :campaign_id, value, '{SENDING}', 0, :variant, :now, :shard, :epoch"
            f" FROM ({self._ids_select}) AS picked WHERE true"
            " ON CONFLICT (campaign_id, contact_id) DO UPDATE SET state = excluded.state,"
            " claimed_at = excluded.claimed_at, variant = excluded.variant,"
            " shard = excluded.shard, epoch = excluded.epoch"
            f" WHERE deliveries.state = '{RETRY}'"
            " RETURNING contact_id"
        ).bindparams(
            bindparam("now", type_=D.c.claimed_at.type),
            bindparam("variant", type_=D.c.variant.type),
            bindparam("shard", type_=D.c.shard.type),
            bindparam("epoch", type_=D.c.epoch.type),
            bindparam("campaign_id", type_=D.c.campaign_id.type),
        )

    async def record(self, campaign_id: int, outcomes: list[DeliveryOutcome]) -> None:
        """Settle claimed rows as sent or failed, in one transaction."""
        await self.settle([LedgerUpdate(campaign_id, outcomes, [])])

    async def release(self, campaign_id: int, contact_ids: list[int]) -> None:
        """Give back claims that were never sent (stop, or a lowered limit)."""
        await self.settle([LedgerUpdate(campaign_id, [], contact_ids)])

    async def settle(self, updates: list[LedgerUpdate]) -> set[int]:
        """Outcomes and released claims of any number of campaigns, in one transaction.

        Outcomes are grouped by what they write (state, attempts, error): nearly all are
        "sent after 1 attempt", so a batch becomes a few UPDATE .. IN (..) statements rather
        than one round trip per row. An update whose lease epoch is no longer held is left
        out; the indexes of those are returned.
        """
        fenced: set[int] = set()
        if not any(u.outcomes or u.released for u in updates):
            return fenced
        now = utcnow()
        async with self.db.transaction() as conn:
            held = await self.cluster.held_of(conn, [u.lease for u in updates if u.lease])
            for index, u in enumerate(updates):
                if u.lease is not None and u.lease not in held:
                    fenced.add(index)
                    continue
                groups: dict[tuple[bool, int, str | None], list[int]] = {}
                for o in u.outcomes:
                    groups.setdefault((o.ok, o.attempts, o.error), []).append(o.contact_id)
                for (ok, attempts, error), contact_ids in groups.items():
                    await conn.execute(
                        self._settle_outcomes,
                        {
                            "cid": u.campaign_id,
                            "ids": self._id_list(contact_ids),
                            "new_state": SENT if ok else FAILED,
                            "more_attempts": attempts,
                            "done_at": now,
                            "error_text": error,
                        },
                    )
                if u.released:
                    await conn.execute(
                        self._settle_released,
                        {"cid": u.campaign_id, "ids": self._id_list(u.released)},
                    )
        return fenced

    # settle's statements, built once (a node settles many times a second).
    @functools.cached_property
    def _settle_outcomes(self) -> Any:
        return (
            update(D)
            .where(
                D.c.campaign_id == bindparam("cid"),
                D.c.contact_id.in_(text(self._ids_select)),
            )
            .values(
                state=bindparam("new_state", type_=D.c.state.type),
                attempts=D.c.attempts + bindparam("more_attempts", type_=Integer),
                finished_at=bindparam("done_at", type_=D.c.finished_at.type),
                last_error=bindparam("error_text", type_=D.c.last_error.type),
            )
        )

    @functools.cached_property
    def _settle_released(self) -> Any:
        return delete(D).where(
            D.c.campaign_id == bindparam("cid"),
            D.c.contact_id.in_(text(self._ids_select)),
            D.c.state == SENDING,
        )

    async def in_doubt(self, campaign_id: int, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Claims left 'sending' by a crash, with their contacts, by contact id."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(C.c.id, C.c.external_id, C.c.address, C.c.attributes, D.c.variant)
                    .join(D, D.c.contact_id == C.c.id)
                    .where(D.c.campaign_id == campaign_id, D.c.state == SENDING, C.c.id > after_id)
                    .order_by(C.c.id)
                    .limit(limit)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def settle_in_doubt(self, campaign_id: int, reason: str) -> int:
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(D)
                .where(D.c.campaign_id == campaign_id, D.c.state == SENDING)
                .values(state=FAILED, finished_at=utcnow(), last_error=reason)
            )
        return int(result.rowcount or 0)

    @staticmethod
    def _in_doubt_for(lease: LeaseRef, shards: int) -> Any:
        """Claims of this shard left by an epoch that is not ours (only a gone one can be)."""
        not_ours = or_(
            D.c.shard.is_(None),
            D.c.epoch.is_(None),
            D.c.shard != lease.shard,
            D.c.epoch != lease.epoch,
        )
        mine = D.c.contact_id % shards == lease.shard if shards > 1 else D.c.contact_id > 0
        return and_(D.c.state == SENDING, mine, not_ours)

    async def in_doubt_shard(
        self, campaign_id: int, lease: LeaseRef, shards: int, after_id: int, limit: int
    ) -> list[dict[str, Any]]:
        """Claims of this shard left in 'sending' by an epoch gone (crash, kill, lost lease)."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(C.c.id, C.c.external_id, C.c.address, C.c.attributes, D.c.variant)
                    .join(D, D.c.contact_id == C.c.id)
                    .where(
                        D.c.campaign_id == campaign_id,
                        self._in_doubt_for(lease, shards),
                        C.c.id > after_id,
                    )
                    .order_by(C.c.id)
                    .limit(limit)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def settle_in_doubt_shard(
        self, campaign_id: int, lease: LeaseRef, shards: int, reason: str
    ) -> int:
        async with self.db.transaction() as conn:
            await self.cluster.check(conn, lease)
            result = await conn.execute(
                update(D)
                .where(D.c.campaign_id == campaign_id, self._in_doubt_for(lease, shards))
                .values(state=FAILED, finished_at=utcnow(), last_error=reason)
            )
        return int(result.rowcount or 0)

    async def due_campaigns(self) -> list[dict[str, Any]]:
        """Scheduled campaigns whose start time has come."""
        async with self.db.read() as conn:
            rows = (await conn.execute(_DUE, {"now": utcnow()})).all()
        return [{"id": r.id} for r in rows]

    async def sending_campaigns(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(M).where(or_(M.c.sending.is_(True), M.c.status == "running"))
                )
            ).all()
        return to_dicts(rows)

    async def series(
        self, campaign_id: int, bucket_seconds: int, limit: int
    ) -> list[dict[str, Any]]:
        """Sent and failed per time bucket, oldest first."""
        epoch = (
            func.extract("epoch", D.c.finished_at)
            if self.db.is_postgres
            else cast(func.strftime("%s", D.c.finished_at), Integer)
        )
        bucket = (cast(func.floor(epoch / bucket_seconds), Integer) * bucket_seconds).label(
            "bucket"
        )
        query = (
            select(
                bucket,
                func.sum(cast(D.c.state == SENT, Integer)).label("sent"),
                func.sum(cast(D.c.state == FAILED, Integer)).label("failed"),
            )
            .where(D.c.campaign_id == campaign_id, D.c.finished_at.is_not(None))
            .group_by(literal_column("bucket"))
            .order_by(literal_column("bucket").desc())
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            {"bucket": int(r.bucket), "sent": int(r.sent or 0), "failed": int(r.failed or 0)}
            for r in reversed(rows)
        ]

    async def variant_counts(self, campaign_id: int) -> dict[str, dict[str, int]]:
        """Per variant: deliveries by state and engagements by kind."""
        E = engagements
        async with self.db.read() as conn:
            states = (
                await conn.execute(
                    select(D.c.variant, D.c.state, func.count())
                    .where(D.c.campaign_id == campaign_id)
                    .group_by(D.c.variant, D.c.state)
                )
            ).all()
            engaged = (
                await conn.execute(
                    select(D.c.variant, E.c.kind, func.count())
                    .select_from(
                        E.join(
                            D,
                            and_(
                                D.c.campaign_id == E.c.campaign_id, D.c.contact_id == E.c.contact_id
                            ),
                        )
                    )
                    .where(E.c.campaign_id == campaign_id)
                    .group_by(D.c.variant, E.c.kind)
                )
            ).all()
        result: dict[str, dict[str, int]] = {}
        for variant, key, count in [*states, *engaged]:
            counts = result.setdefault(variant or "default", dict.fromkeys(VARIANT_COUNTS, 0))
            counts[key] = int(count)
        return result

    async def engage(self, campaign_id: int, contact_id: int, kind: str) -> bool:
        """Note that a recipient clicked, converted or unsubscribed; False if already noted."""
        statement = (
            self._insert_ignore(engagements)
            .values(campaign_id=campaign_id, contact_id=contact_id, kind=kind, at=utcnow())
            .on_conflict_do_nothing()
        )
        async with self.db.transaction() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)

    async def delivered_contact(self, campaign_id: int, external_id: str) -> int:
        """The id of the contact with `external_id` that this campaign has sent to."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(C.c.id, D.c.state)
                    .select_from(M.join(C, C.c.audience_id == M.c.audience_id))
                    .outerjoin(D, and_(D.c.campaign_id == M.c.id, D.c.contact_id == C.c.id))
                    .where(M.c.id == campaign_id, C.c.external_id == external_id)
                )
            ).first()
        if row is None:
            raise NotFound(
                f"Campaign {campaign_id}'s audience has no contact '{external_id}'.",
                campaign_id=campaign_id,
                external_id=external_id,
            )
        if row.state not in (SENT, SENDING):  # sending: out, its outcome not yet written
            raise Conflict(
                f"Contact '{external_id}' has not been sent campaign {campaign_id}"
                f" (delivery: {row.state or 'none'}).",
                campaign_id=campaign_id,
                external_id=external_id,
            )
        return int(row.id)

    async def failure_reasons(self, campaign_id: int, limit: int = 20) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(D.c.last_error, func.count().label("n"))
                    .where(D.c.campaign_id == campaign_id, D.c.state == FAILED)
                    .group_by(D.c.last_error)
                    .order_by(func.count().desc())
                    .limit(limit)
                )
            ).all()
        return [{"reason": r.last_error or "unknown", "count": int(r.n)} for r in rows]


def follow_up_filters(conditions: list[dict[str, Any]]) -> list[Any]:
    """SQL for segment conditions on another campaign: received, clicked, converted."""
    filters = []
    for condition in conditions:
        other = int(condition["campaign"])
        for name, kind in (("received", None), ("clicked", "click"), ("converted", "conversion")):
            if name not in condition:
                continue
            if kind is None:
                seen = D.alias("follow_up_delivery")
                test = exists().where(
                    seen.c.campaign_id == other,
                    seen.c.contact_id == C.c.id,
                    seen.c.state == SENT,
                )
            else:
                E = engagements.alias(f"follow_up_{kind}")
                test = exists().where(
                    E.c.campaign_id == other, E.c.contact_id == C.c.id, E.c.kind == kind
                )
            filters.append(test if condition[name] else ~test)
    return filters


@functools.cache
def _view_figures_query(postgres: bool) -> Any:
    """MessagingRepository.view_figures' UNION ALL for campaigns `:ids`, built once."""
    L = leases
    ids = bindparam("ids", expanding=True)
    text = String(200)
    parts = [
        select(
            literal("count", text).label("part"),
            D.c.campaign_id.label("id"),
            D.c.state.label("label"),
            func.count().label("n"),
        )
        .where(D.c.campaign_id.in_(ids))
        .group_by(D.c.campaign_id, D.c.state),
        select(
            literal("lease", text),
            L.c.campaign_id,
            L.c.holder,
            cast(L.c.shard, BigInteger),
        ).where(
            L.c.kind == CampaignKind.MESSAGE.value,
            L.c.campaign_id.in_(ids),
            L.c.holder.is_not(None),
            L.c.expires_at > (func.now() if postgres else bindparam("now")),
        ),
    ]
    audiences = select(M.c.audience_id).where(M.c.id.in_(ids)).scalar_subquery()
    parts.append(
        select(literal("audience", text), C.c.audience_id, null(), func.count())
        .where(C.c.audience_id.in_(audiences))
        .group_by(C.c.audience_id)
    )
    return union_all(*parts)


_FIRST_CONTACT_OF_CAMPAIGN = (
    select(C.c.id, C.c.external_id, C.c.address, C.c.attributes)
    .where(
        C.c.audience_id
        == select(M.c.audience_id).where(M.c.id == bindparam("id")).scalar_subquery()
    )
    .order_by(C.c.id)
    .limit(1)
)
