"""Traffic profiles, traffic campaigns and their per-second stats windows."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hdrh.histogram import HdrHistogram
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)

from campaignd.domain import lifecycle
from campaignd.domain.errors import NotFound
from campaignd.domain.leases import LeaseRef
from campaignd.domain.lifecycle import CampaignUse
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus
from campaignd.store import status as status_store
from campaignd.store.cluster_repo import ClusterRepository
from campaignd.store.db import Database, iso, utcnow
from campaignd.store.rows import (
    by_id,
    by_ids,
    listing,
    read_by_ids,
    read_versions,
    to_dict,
    to_dicts,
)
from campaignd.store.tables import traffic_campaigns, traffic_profiles, traffic_stats
from campaignd.traffic.stats import (
    WindowStats,
    decode_histogram,
    latency_summary,
    new_histogram,
)

T = traffic_campaigns
# What the nodes read on every tick, built once (see engine/node.py).
_WANTED_WHERE = (
    T.c.generating.is_(True),
    T.c.status.in_((CampaignStatus.RUNNING.value, CampaignStatus.PAUSED.value)),
)
_ACTIVE_SECONDS = (
    update(T).where(T.c.id == bindparam("cid")).values(active_seconds=bindparam("active"))
)
_WANTED = select(T).where(*_WANTED_WHERE)
_WANTED_VERSIONS = select(T.c.id, T.c.version).where(*_WANTED_WHERE)
_WANTED_BY_ID = select(T).where(T.c.id.in_(bindparam("ids", expanding=True)), *_WANTED_WHERE)
PERCENTILES = ("p50", "p90", "p99", "max")
# Old rows' percentiles are computed from their histograms in groups this large.
BACKFILL_CHUNK = 2000


@dataclass(slots=True)
class PendingWindow:
    """A stats window on its way to `traffic_stats`, with the campaign's figures at the time."""

    campaign_id: int
    window: WindowStats
    target_rpm: float
    active_seconds: float
    # The shard epoch that measured it: the window is written only while that is held.
    lease: LeaseRef | None = None


def window_percentiles(histogram: HdrHistogram) -> dict[str, float | None]:
    """A window's p50/p90/p99/max in ms as stored beside it (None without requests)."""
    if not histogram.get_total_count():
        return {f"{p}_ms": None for p in PERCENTILES}
    latency = latency_summary(histogram, 0)
    return {f"{p}_ms": latency[p] for p in PERCENTILES}


def _decoded_percentiles(rows: list[tuple[int, str]]) -> list[dict[str, Any]]:
    out = []
    for row_id, encoded in rows:
        try:
            values = window_percentiles(decode_histogram(encoded))
        except Exception:  # a damaged histogram has no percentiles; the counts still hold
            values = window_percentiles(new_histogram())
        out.append({"row_id": row_id, **values})
    return out


def _merged(rows: Sequence[Any]) -> WindowStats:
    total = WindowStats(started_at=0.0, seconds=0.0)
    _merge_into(total, rows)
    return total


def _merge_into(total: WindowStats, rows: Sequence[Any]) -> None:
    """Add stored windows to `total`, each histogram decoded straight into the total's (no
    window or step held on the way: each of those is a 190 KB histogram to fill and add)."""
    for row in rows:
        total.seconds += row.window_seconds
        total.succeeded += row.requests_succeeded
        total.failed += row.requests_failed
        total.dropped += row.requests_dropped
        total.latency_sum_us += row.latency_sum_us
        if row.histogram:
            total.histogram.decode_and_add(row.histogram.encode())
        if row.errors:
            total.errors.update(row.errors)
        total.add_steps_json(row.step_stats)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """Windows added up over one time bucket (or one window): counts, and latency in ms.

    Percentiles of a bucket are the largest of its windows' (an upper bound of the bucket's
    true percentile, never below it); `max_ms` is exact, so p99_ms <= max_ms holds.
    """

    at: str
    requests: int
    failed: int
    dropped: int
    seconds: float
    target_rpm: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    busy_users: int | None = None


P = traffic_profiles


class TrafficRepository:
    """All SQL for traffic campaigns; callers speak in intents, not queries."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.cluster = ClusterRepository(db)

    # profiles -------------------------------------------------------------------------
    async def create_profile(self, data: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                insert(P).values(**data, created_at=now, updated_at=now).returning(P)
            )
            return to_dict(result.first())  # type: ignore[return-value]

    async def list_profiles(self, archived: bool = False) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(listing(P, archived, False))).all()
        return to_dicts(rows)

    async def get_profile(self, profile_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(by_id(P), {"row_id": profile_id})).first()
        if row is None:
            raise NotFound(f"Traffic profile {profile_id} does not exist.", profile_id=profile_id)
        return to_dict(row)  # type: ignore[return-value]

    async def profiles_of_campaign(self, campaign_id: int) -> dict[int, dict[str, Any]]:
        """The profiles a campaign names, by id, read without its row (so a view can read
        them while it reads the row)."""
        query = _profiles_of_campaign(self.db.is_postgres)
        rows = await self.db.fetch(query, {"campaign_id": campaign_id})
        return {r.id: to_dict(r) for r in rows}  # type: ignore[misc]

    async def get_profiles(self, ids: list[int]) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(by_ids(P), {"row_ids": ids})).all()
        return in_order(ids, {r.id: to_dict(r) for r in rows})  # type: ignore[misc]

    async def update_profile(self, profile_id: int, data: dict[str, Any]) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(P)
                .where(P.c.id == profile_id)
                .values(**data, updated_at=utcnow())
                .returning(P)
            )
            row = result.first()
        if row is None:
            raise NotFound(f"Traffic profile {profile_id} does not exist.", profile_id=profile_id)
        return to_dict(row)  # type: ignore[return-value]

    async def campaigns_using_profile(self, profile_id: int) -> list[CampaignUse]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(T.c.id, T.c.name, T.c.status, T.c.user_profile_ids).order_by(T.c.id)
                )
            ).all()
        return [
            CampaignUse(r.id, r.name, r.status)
            for r in rows
            if profile_id in (r.user_profile_ids or [])
        ]

    async def delete_profile(self, profile_id: int) -> None:
        profile = await self.get_profile(profile_id)
        uses = await self.campaigns_using_profile(profile_id)
        lifecycle.refuse_used("Profile", profile_id, profile["name"], uses, "delete")
        async with self.db.transaction() as conn:
            result = await conn.execute(delete(P).where(P.c.id == profile_id))
        if result.rowcount == 0:
            raise NotFound(f"Traffic profile {profile_id} does not exist.", profile_id=profile_id)

    async def archive_profile(self, profile_id: int, archived: bool) -> dict[str, Any]:
        profile = await self.get_profile(profile_id)
        if archived:
            uses = await self.campaigns_using_profile(profile_id)
            lifecycle.refuse_used("Profile", profile_id, profile["name"], uses, "archive")
        return await self.update_profile(
            profile_id, {"archived_at": utcnow() if archived else None}
        )

    # campaigns ------------------------------------------------------------------------
    async def create_campaign(self, data: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                insert(T)
                .values(**data, status=CampaignStatus.DRAFT.value, created_at=now, updated_at=now)
                .returning(T)
            )
            row = result.first()
            assert row is not None
            await status_store.record_event(
                conn, CampaignKind.TRAFFIC, row.id, "created", to_status="draft"
            )
            return to_dict(row)  # type: ignore[return-value]

    async def list_campaigns(
        self, status: str | None = None, archived: bool = False
    ) -> list[dict[str, Any]]:
        return to_dicts(await self.db.fetch(listing(T, archived, bool(status)), {"status": status}))

    async def get_campaign(self, campaign_id: int) -> dict[str, Any]:
        row = next(iter(await self.db.fetch(by_id(T), {"row_id": campaign_id})), None)
        if row is None:
            raise NotFound(
                f"Traffic campaign {campaign_id} does not exist.", campaign_id=campaign_id
            )
        return to_dict(row)  # type: ignore[return-value]

    async def update_campaign(
        self, campaign_id: int, data: dict[str, Any], notify: str | None = None
    ) -> dict[str, Any]:
        """Store an edit (audited); `notify`: Database.notify once it is stored."""
        edited = await status_store.update_edited(
            self.db, T, CampaignKind.TRAFFIC, campaign_id, data, data, notify
        )
        if edited is None:
            raise NotFound(
                f"Traffic campaign {campaign_id} does not exist.", campaign_id=campaign_id
            )
        return edited

    async def delete_campaign(self, campaign_id: int) -> None:
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(select(T.c.name, T.c.status).where(T.c.id == campaign_id))
            ).first()
            if row is None:
                raise NotFound(
                    f"Traffic campaign {campaign_id} does not exist.", campaign_id=campaign_id
                )
            lifecycle.refuse_active_campaign(campaign_id, row.name, row.status, "delete")
            await conn.execute(
                delete(traffic_stats).where(traffic_stats.c.campaign_id == campaign_id)
            )
            await conn.execute(delete(T).where(T.c.id == campaign_id, T.c.status == row.status))

    async def clone_campaign(self, campaign_id: int) -> dict[str, Any]:
        """A new draft with the campaign's settings and none of its results."""
        source = await self.get_campaign(campaign_id)
        copied = (
            "target_url", "user_profile_ids", "requests_per_minute", "duration_minutes",
            "total_users", "stages", "request_timeout_seconds", "shards",
        )  # fmt: skip
        return await self.create_campaign(
            {"name": lifecycle.copy_name(source["name"]), **{k: source[k] for k in copied}}
        )

    async def archive_campaign(self, campaign_id: int, archived: bool) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            await status_store.set_archived(
                conn,
                T,
                CampaignKind.TRAFFIC,
                campaign_id,
                archived,
                f"Traffic campaign {campaign_id} does not exist.",
            )
        return await self.get_campaign(campaign_id)

    async def transition(
        self,
        campaign_id: int,
        requested: CampaignStatus,
        actor: Actor = Actor.OPERATOR,
        **extra: Any,
    ) -> CampaignStatus:
        async with self.db.transaction() as conn:
            return await status_store.transition(
                conn, T, CampaignKind.TRAFFIC, campaign_id, requested, actor, extra=extra
            )

    # runner bookkeeping ---------------------------------------------------------------
    async def mark_generating(self, campaign_id: int, runner_id: str, start_time: datetime) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                update(T)
                .where(T.c.id == campaign_id)
                .values(generating=True, runner_id=runner_id, start_time=start_time)
            )
            await status_store.record_event(
                conn,
                CampaignKind.TRAFFIC,
                campaign_id,
                "generation_started",
                details={"runner_id": runner_id},
            )

    async def clear_generating(
        self, campaign_id: int, reason: str, error: str | None = None
    ) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                update(T)
                .where(T.c.id == campaign_id)
                .values(generating=False, runner_id=None, last_error=error)
            )
            await status_store.record_event(
                conn,
                CampaignKind.TRAFFIC,
                campaign_id,
                "generation_ended",
                details={"reason": reason, "error": error},
            )

    async def generating_campaigns(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(T).where(T.c.generating.is_(True)))).all()
        return to_dicts(rows)

    async def record_windows(self, batch: list[PendingWindow]) -> set[tuple[str, int, int]]:
        """Insert many windows and move each campaign's active time, in one transaction.

        Windows of a lease epoch that is no longer held are dropped (fenced): their shard
        now belongs to another node. The keys of such leases are returned.
        """
        fenced: set[tuple[str, int, int]] = set()
        if not batch:
            return fenced
        async with self.db.transaction() as conn:
            leases = {item.lease for item in batch if item.lease is not None}
            held = await self.cluster.held_of(conn, leases)
            fenced = {lease.key for lease in leases - held}
            kept = [i for i in batch if i.lease is None or i.lease.key not in fenced]
            if not kept:
                return fenced
            latest: dict[int, float] = {}
            shard_clock: dict[LeaseRef, float] = {}
            for item in kept:
                latest[item.campaign_id] = item.active_seconds
                if item.lease is not None:
                    shard_clock[item.lease] = item.active_seconds
            await conn.execute(
                insert(traffic_stats),
                [
                    {
                        "campaign_id": item.campaign_id,
                        "window_start": datetime.fromtimestamp(item.window.started_at, UTC),
                        "window_seconds": item.window.seconds,
                        "requests_succeeded": item.window.succeeded,
                        "requests_failed": item.window.failed,
                        "requests_dropped": item.window.dropped,
                        "target_rpm": item.target_rpm,
                        "latency_sum_us": item.window.latency_sum_us,
                        "histogram": (
                            item.window.histogram.encode().decode() if item.window.total else None
                        ),
                        "shard": item.lease.shard if item.lease else None,
                        "epoch": item.lease.epoch if item.lease else None,
                        "errors": dict(item.window.errors) or None,
                        **window_percentiles(item.window.histogram),
                        "busy_users": item.window.busy_users,
                        "step_stats": item.window.steps_to_json(),
                    }
                    for item in kept
                ],
            )
            await conn.execute(
                _ACTIVE_SECONDS,
                [{"cid": cid, "active": active} for cid, active in latest.items()],
            )
            await self.cluster.note_active_seconds_many(conn, shard_clock)
        return fenced

    async def note_runner(self, campaign_id: int, runner_id: str) -> None:
        """The runner now generating (a shard of) the campaign, for views and the audit."""
        async with self.db.transaction() as conn:
            await conn.execute(update(T).where(T.c.id == campaign_id).values(runner_id=runner_id))
            await status_store.record_event(
                conn,
                CampaignKind.TRAFFIC,
                campaign_id,
                "generation_started",
                details={"runner_id": runner_id},
            )

    async def start_generating(self, campaign_id: int, *, fresh: bool) -> bool:
        """Ask the cluster to generate: the desired flag every node follows.

        A fresh start is a compare-and-set (running, not yet generating): of two concurrent
        requests one wins. False when it lost.
        """
        values: dict[str, Any] = {"generating": True, "version": T.c.version + 1}
        where = [T.c.id == campaign_id]
        if fresh:
            values.update(start_time=utcnow(), active_seconds=0.0, last_error=None)
            where += [T.c.generating.is_(False), T.c.status == CampaignStatus.RUNNING.value]
        async with self.db.transaction() as conn:
            result = await conn.execute(update(T).where(*where).values(**values))
        return bool(result.rowcount)

    async def wanted_campaigns(self) -> list[dict[str, Any]]:
        """Campaigns some node should be generating (running or paused, with the flag)."""
        async with self.db.read() as conn:
            rows = (await conn.execute(_WANTED)).all()
        return to_dicts(rows)

    async def wanted_versions(self) -> dict[int, int]:
        """The `version` of each wanted campaign (a narrow read to tell which rows changed)."""
        return await read_versions(self.db, _WANTED_VERSIONS)

    async def wanted_by_id(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Those of `ids` that are still wanted, as wanted_campaigns reads them."""
        return await read_by_ids(self.db, _WANTED_BY_ID, ids)

    async def campaigns_by_id(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        async with self.db.read() as conn:
            rows = (await conn.execute(by_ids(T), {"row_ids": ids})).all()
        return {r.id: to_dict(r) for r in rows}  # type: ignore[misc]

    async def windows_after(self, campaign_id: int, after_id: int) -> list[Any]:
        """Stats windows with ids above `after_id`, for an incremental merge of the totals
        (with each window's shard and busy-users gauge)."""
        return await self.db.fetch(
            _WINDOWS_AFTER, {"campaign_id": campaign_id, "after_id": after_id}
        )

    async def record_window(
        self, campaign_id: int, window: WindowStats, target_rpm: float, active_seconds: float
    ) -> None:
        await self.record_windows([PendingWindow(campaign_id, window, target_rpm, active_seconds)])

    @staticmethod
    def merge_rows(rows: Sequence[Any]) -> WindowStats:
        return _merged(rows)

    @staticmethod
    def merge_rows_into(total: WindowStats, rows: Sequence[Any]) -> None:
        _merge_into(total, rows)

    async def cumulative_stats(self, campaign_id: int) -> WindowStats:
        """Every persisted window of the campaign merged into one.

        Decoding and merging a day of windows takes tens of seconds: done in a thread, so
        the event loop (the API, every runner) goes on meanwhile.
        """
        S = traffic_stats
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        S.c.window_seconds,
                        S.c.requests_succeeded,
                        S.c.requests_failed,
                        S.c.requests_dropped,
                        S.c.latency_sum_us,
                        S.c.histogram,
                        S.c.errors,
                        S.c.step_stats,
                    )
                    .where(S.c.campaign_id == campaign_id)
                    .order_by(S.c.id)
                )
            ).all()
        return await asyncio.to_thread(_merged, rows)

    async def fill_missing_percentiles(self, campaign_id: int) -> int:
        """Store percentiles for windows written before they were stored; how many were filled.

        Each old window is decoded once, in a thread, and never again.
        """
        S = traffic_stats
        filled = 0
        after = 0
        while True:
            async with self.db.read() as conn:
                rows = (
                    await conn.execute(
                        select(S.c.id, S.c.histogram)
                        .where(
                            S.c.campaign_id == campaign_id,
                            S.c.id > after,
                            S.c.max_ms.is_(None),
                            S.c.histogram.is_not(None),
                        )
                        .order_by(S.c.id)
                        .limit(BACKFILL_CHUNK)
                    )
                ).all()
            if not rows:
                return filled
            after = rows[-1].id
            values = await asyncio.to_thread(_decoded_percentiles, [(r[0], r[1]) for r in rows])
            async with self.db.transaction() as conn:
                await conn.execute(
                    update(S)
                    .where(S.c.id == bindparam("row_id"))
                    .values({f"{p}_ms": bindparam(f"{p}_ms") for p in PERCENTILES}),
                    values,
                )
            filled += len(rows)

    async def window_count(self, campaign_id: int) -> tuple[int, float]:
        """How many windows the campaign has and the seconds from the first to the last."""
        S = traffic_stats
        query = select(
            func.count(),
            func.min(self._epoch(S.c.window_start)),
            func.max(self._epoch(S.c.window_start)),
        ).where(S.c.campaign_id == campaign_id)
        async with self.db.read() as conn:
            count, first, last = (await conn.execute(query)).one()
        return int(count), float(last - first) if count else 0.0

    def _epoch(self, column: Any) -> ColumnElement[Any]:
        if self.db.is_postgres:
            return func.extract("epoch", column)
        return cast(func.strftime("%s", column), BigInteger)

    async def stats_series(
        self, campaign_id: int, limit: int = 3600, bucket_seconds: int | None = None
    ) -> list[SeriesPoint]:
        """The newest `limit` windows (or buckets of `bucket_seconds`), oldest first.

        Reads the stored percentiles only: no histogram is decoded, whatever the span.
        """
        await self.fill_missing_percentiles(campaign_id)
        S = traffic_stats
        if bucket_seconds is None:
            query = select(
                S.c.window_start.label("at"),
                (S.c.requests_succeeded + S.c.requests_failed).label("requests"),
                S.c.requests_failed.label("failed"),
                S.c.requests_dropped.label("dropped"),
                S.c.window_seconds.label("seconds"),
                S.c.target_rpm,
                *(getattr(S.c, f"{p}_ms") for p in PERCENTILES),
                S.c.busy_users,
            ).order_by(S.c.id.desc())
        else:
            bucket = (
                cast(func.floor(self._epoch(S.c.window_start) / bucket_seconds), BigInteger)
                * bucket_seconds
            ).label("bucket")
            query = (
                select(
                    bucket,
                    func.sum(S.c.requests_succeeded + S.c.requests_failed).label("requests"),
                    func.sum(S.c.requests_failed).label("failed"),
                    func.sum(S.c.requests_dropped).label("dropped"),
                    func.sum(S.c.window_seconds).label("seconds"),
                    func.avg(S.c.target_rpm).label("target_rpm"),
                    *(func.max(getattr(S.c, f"{p}_ms")).label(f"{p}_ms") for p in PERCENTILES),
                    func.max(S.c.busy_users).label("busy_users"),
                )
                .group_by(literal_column("bucket"))
                .order_by(literal_column("bucket").desc())
            )
        query = query.where(S.c.campaign_id == campaign_id).limit(limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [self._point(r, bucket_seconds is not None) for r in reversed(rows)]

    @staticmethod
    def _point(row: Any, bucketed: bool) -> SeriesPoint:
        at = datetime.fromtimestamp(int(row.bucket), UTC) if bucketed else row.at
        return SeriesPoint(
            at=iso(at) or "",
            requests=int(row.requests or 0),
            failed=int(row.failed or 0),
            dropped=int(row.dropped or 0),
            seconds=float(row.seconds or 0.0),
            target_rpm=float(row.target_rpm or 0.0),
            p50_ms=row.p50_ms,
            p90_ms=row.p90_ms,
            p99_ms=row.p99_ms,
            max_ms=row.max_ms,
            busy_users=row.busy_users,
        )


_WINDOWS_AFTER = (
    select(
        traffic_stats.c.id,
        traffic_stats.c.shard,
        traffic_stats.c.busy_users,
        traffic_stats.c.window_seconds,
        traffic_stats.c.requests_succeeded,
        traffic_stats.c.requests_failed,
        traffic_stats.c.requests_dropped,
        traffic_stats.c.latency_sum_us,
        traffic_stats.c.histogram,
        traffic_stats.c.errors,
        traffic_stats.c.step_stats,
    )
    .where(
        traffic_stats.c.campaign_id == bindparam("campaign_id"),
        traffic_stats.c.id > bindparam("after_id"),
    )
    .order_by(traffic_stats.c.id)
)


def in_order(ids: list[int], found: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The profiles `ids` names, in its order; NotFound names the ones missing."""
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(
            f"Traffic profile(s) {', '.join(map(str, missing))} do not exist.",
            field="user_profile_ids",
            missing=missing,
        )
    return [found[i] for i in ids]


@functools.cache
def _profiles_of_campaign(postgres: bool) -> Any:
    """Profiles whose id is in campaign `:campaign_id`'s user_profile_ids (a JSON array)."""
    if postgres:
        ids = (
            "SELECT CAST(json_array_elements_text(user_profile_ids) AS BIGINT)"
            " FROM traffic_campaigns WHERE id = :campaign_id"
        )
    else:
        ids = (
            "SELECT json_each.value FROM traffic_campaigns, json_each(user_profile_ids)"
            " WHERE traffic_campaigns.id = :campaign_id"
        )
    return select(P).where(P.c.id.in_(text(ids)))
