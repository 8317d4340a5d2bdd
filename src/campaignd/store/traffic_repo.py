"""Traffic profiles, traffic campaigns and their per-second stats windows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update

from campaignd.domain.errors import Conflict, NotFound
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus
from campaignd.store import status as status_store
from campaignd.store.db import Database, utcnow
from campaignd.store.rows import to_dict
from campaignd.store.tables import traffic_campaigns, traffic_profiles, traffic_stats
from campaignd.traffic.stats import WindowStats, decode_histogram

T = traffic_campaigns


@dataclass(slots=True)
class PendingWindow:
    """A stats window on its way to `traffic_stats`, with the campaign's figures at the time."""

    campaign_id: int
    window: WindowStats
    target_rpm: float
    active_seconds: float


P = traffic_profiles


class TrafficRepository:
    """All SQL for traffic campaigns; callers speak in intents, not queries."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # profiles -------------------------------------------------------------------------
    async def create_profile(self, data: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                insert(P).values(**data, created_at=now, updated_at=now).returning(P)
            )
            return to_dict(result.first())  # type: ignore[return-value]

    async def list_profiles(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(P).order_by(P.c.id))).all()
        return [to_dict(r) for r in rows]  # type: ignore[misc]

    async def get_profile(self, profile_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(select(P).where(P.c.id == profile_id))).first()
        if row is None:
            raise NotFound(f"Traffic profile {profile_id} does not exist.", profile_id=profile_id)
        return to_dict(row)  # type: ignore[return-value]

    async def get_profiles(self, ids: list[int]) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(P).where(P.c.id.in_(ids)))).all()
        found = {r.id: to_dict(r) for r in rows}
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(
                f"Traffic profile(s) {', '.join(map(str, missing))} do not exist.",
                field="user_profile_ids",
                missing=missing,
            )
        return [found[i] for i in ids]  # type: ignore[misc]

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

    async def delete_profile(self, profile_id: int) -> None:
        async with self.db.transaction() as conn:
            users = [
                r.id
                for r in (await conn.execute(select(T.c.id, T.c.user_profile_ids))).all()
                if profile_id in (r.user_profile_ids or [])
            ]
            if users:
                raise Conflict(
                    f"Traffic profile {profile_id} is used by campaign(s) "
                    f"{', '.join(map(str, users))}; remove it from them first.",
                    profile_id=profile_id,
                    campaign_ids=users,
                )
            result = await conn.execute(delete(P).where(P.c.id == profile_id))
        if result.rowcount == 0:
            raise NotFound(f"Traffic profile {profile_id} does not exist.", profile_id=profile_id)

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

    async def list_campaigns(self, status: str | None = None) -> list[dict[str, Any]]:
        query = select(T).order_by(T.c.id)
        if status:
            query = query.where(T.c.status == status)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [to_dict(r) for r in rows]  # type: ignore[misc]

    async def get_campaign(self, campaign_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(select(T).where(T.c.id == campaign_id))).first()
        if row is None:
            raise NotFound(
                f"Traffic campaign {campaign_id} does not exist.", campaign_id=campaign_id
            )
        return to_dict(row)  # type: ignore[return-value]

    async def update_campaign(self, campaign_id: int, data: dict[str, Any]) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(T)
                .where(T.c.id == campaign_id)
                .values(**data, version=T.c.version + 1, updated_at=utcnow())
                .returning(T)
            )
            row = result.first()
            if row is None:
                raise NotFound(
                    f"Traffic campaign {campaign_id} does not exist.", campaign_id=campaign_id
                )
            await status_store.record_event(
                conn, CampaignKind.TRAFFIC, campaign_id, "edited", details=data
            )
        return to_dict(row)  # type: ignore[return-value]

    async def delete_campaign(self, campaign_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                delete(traffic_stats).where(traffic_stats.c.campaign_id == campaign_id)
            )
            result = await conn.execute(delete(T).where(T.c.id == campaign_id))
        if result.rowcount == 0:
            raise NotFound(
                f"Traffic campaign {campaign_id} does not exist.", campaign_id=campaign_id
            )

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
        return [to_dict(r) for r in rows]  # type: ignore[misc]

    async def record_windows(self, batch: list[PendingWindow]) -> None:
        """Insert many windows and move each campaign's active time, in one transaction."""
        if not batch:
            return
        latest: dict[int, float] = {}
        for item in batch:
            latest[item.campaign_id] = item.active_seconds
        async with self.db.transaction() as conn:
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
                    }
                    for item in batch
                ],
            )
            await conn.execute(
                update(T)
                .where(T.c.id == bindparam("cid"))
                .values(active_seconds=bindparam("active")),
                [{"cid": cid, "active": active} for cid, active in latest.items()],
            )

    async def record_window(
        self, campaign_id: int, window: WindowStats, target_rpm: float, active_seconds: float
    ) -> None:
        await self.record_windows([PendingWindow(campaign_id, window, target_rpm, active_seconds)])

    async def cumulative_stats(self, campaign_id: int) -> WindowStats:
        """Every persisted window of the campaign merged into one."""
        total = WindowStats(started_at=0.0, seconds=0.0)
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
                    )
                    .where(S.c.campaign_id == campaign_id)
                    .order_by(S.c.id)
                )
            ).all()
        for row in rows:
            total.seconds += row.window_seconds
            total.succeeded += row.requests_succeeded
            total.failed += row.requests_failed
            total.dropped += row.requests_dropped
            total.latency_sum_us += row.latency_sum_us
            if row.histogram:
                total.histogram.add(decode_histogram(row.histogram))
        return total

    async def stats_series(self, campaign_id: int, limit: int = 3600) -> list[dict[str, Any]]:
        """The newest `limit` windows, oldest first, for charts and reports."""
        S = traffic_stats
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(S)
                    .where(S.c.campaign_id == campaign_id)
                    .order_by(S.c.id.desc())
                    .limit(limit)
                )
            ).all()
        return [to_dict(r) for r in reversed(rows)]  # type: ignore[misc]
