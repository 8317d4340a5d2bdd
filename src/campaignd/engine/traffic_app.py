"""Traffic campaigns as the API sees them: validate, write rows, read views from the database.

Nothing here calls a runner. A status change, an edit or "generate" is a row written (the
status by the one compare-and-set, `generating` as the desired flag, `version` bumped), then
a wake-up for the nodes (this process's loop at once, others through NOTIFY). Views are read
from the database, so any node's API answers for every campaign, wherever it runs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from campaignd.domain import lifecycle
from campaignd.domain.errors import Conflict, NotFound, RuleViolation
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus
from campaignd.engine.guard import TargetGuard
from campaignd.engine.node import Node, wait_until
from campaignd.engine.supervisor import TrafficSupervisor
from campaignd.logs import log_event
from campaignd.store.cluster_repo import ClusterRepository
from campaignd.store.traffic_repo import TrafficRepository, in_order
from campaignd.traffic.stats import LatencyMemo, WindowStats, summarize

S = CampaignStatus
KIND = CampaignKind.TRAFFIC.value
LIVE_FIELDS = frozenset({"requests_per_minute", "duration_minutes", "name"})
# How long "generate" waits for a node to take the campaign, and a stop for it to let go.
GENERATE_WAIT_SECONDS = 2.0
STOP_WAIT_SECONDS = 3.0
# A window row is taken as final this long after it was first read past: rows commit out of
# id order only within a transaction's life, far shorter than this.
SETTLE_SECONDS = 5.0
# New windows up to this many are decoded on the loop (about 0.2 ms each); more go to
# a thread so that a first look at a long campaign does not hold up other requests.
INLINE_MERGE_ROWS = 4


@dataclass
class _MergedWindows:
    """Every window of a campaign merged so far; only newer rows are read and decoded."""

    totals: WindowStats = field(default_factory=lambda: WindowStats(started_at=0.0, seconds=0.0))
    floor: int = 0  # every row with an id up to here is merged
    seen: set[int] = field(default_factory=set)  # merged rows above the floor
    reads: list[tuple[float, int]] = field(default_factory=list)  # (when, highest id seen)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one merge at a time per campaign
    # Each shard's latest window read: (id, users busy then). Their sum is the campaign's
    # busy users now (a merge of windows keeps only counts and histograms).
    latest: dict[int, tuple[int, int]] = field(default_factory=dict)
    memo: LatencyMemo = field(default_factory=LatencyMemo)  # totals only grow: see summarize

    def busy_users(self) -> int:
        return sum(busy for _, busy in self.latest.values())


class TrafficApp:
    def __init__(
        self,
        repo: TrafficRepository,
        guard: TargetGuard,
        host: TrafficSupervisor | None = None,
        node: Node | None = None,
    ) -> None:
        self.repo = repo
        self.cluster: ClusterRepository = repo.cluster
        self.guard = guard
        self.host = host
        self.node = node
        self._merged: dict[int, _MergedWindows] = {}

    async def _changed(self, campaign_id: int) -> None:
        """Wake this node and (NOTIFY) every other one: campaign_id's row changed."""
        if self.node is not None:
            self.node.wake()
        await self.repo.db.notify(f"traffic:{campaign_id}")

    @staticmethod
    def generating(row: dict[str, Any]) -> bool:
        return bool(row.get("generating")) and row["status"] in (S.RUNNING, S.PAUSED)

    def view(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            **row,
            "traffic_generation_active": self.generating(row),
            "thread_id": row.get("runner_id"),
        }

    # writes -----------------------------------------------------------------------------
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        data = {**data, "target_url": await self.guard.check(data["target_url"])}
        await self.repo.get_profiles(data["user_profile_ids"])
        return await self.repo.create_campaign(data)

    async def edit(self, campaign_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Store an edit; the nodes generating it pick up rate and duration within a second."""
        row = await self.repo.get_campaign(campaign_id)
        if "target_url" in changes:
            changes = {**changes, "target_url": await self.guard.check(changes["target_url"])}
        if "user_profile_ids" in changes:
            await self.repo.get_profiles(changes["user_profile_ids"])
        if not changes:
            return row
        if self.generating(row) and set(changes) - LIVE_FIELDS:
            fields = sorted(set(changes) - LIVE_FIELDS)
            raise Conflict(
                f"Cannot change {', '.join(fields)} while traffic is being generated; stop the "
                "campaign first (requests_per_minute and duration_minutes can change live).",
                campaign_id=campaign_id,
                fields=fields,
            )
        if self.generating(row) and row.get("stages") and "requests_per_minute" in changes:
            raise Conflict(
                "This campaign's rate follows its stages; stop it to change the rate.",
                campaign_id=campaign_id,
                fields=["requests_per_minute"],
            )
        updated = await self.repo.update_campaign(
            campaign_id, changes, notify=f"traffic:{campaign_id}"
        )
        if self.node is not None:
            self.node.wake()
        return updated

    async def delete(self, campaign_id: int) -> None:
        row = await self.repo.get_campaign(campaign_id)
        lifecycle.refuse_active_campaign(campaign_id, row["name"], row["status"], "delete")
        if self.generating(row) or (await self.cluster.holders(KIND, [campaign_id])).get(
            campaign_id
        ):  # stopped, a node still finishing its last sends
            raise Conflict(
                f"Campaign '{row['name']}' is still finishing; delete it in a moment.",
                campaign_id=campaign_id,
            )
        await self.repo.delete_campaign(campaign_id)
        await self.cluster.forget_campaign(KIND, campaign_id)
        self._merged.pop(campaign_id, None)

    async def change_status(self, campaign_id: int, requested: S) -> S:
        """Apply an operator's status change; return the previous status."""
        row = await self.repo.get_campaign(campaign_id)
        if requested is S.RUNNING and row["status"] == S.STOPPED and row["start_time"]:
            await self.guard.check_target(row["target_url"])  # a resume meets today's allowlist
        previous = await self.repo.transition(campaign_id, requested, Actor.OPERATOR)
        log_event(
            "traffic.status_changed",
            campaign_id=campaign_id,
            runner_id=row.get("runner_id"),
            previous_status=previous.value,
            status=requested.value,
        )
        if requested is S.STOPPED and row.get("generating"):
            await self.repo.clear_generating(campaign_id, reason="stopped")
        elif requested is S.RUNNING and previous is S.STOPPED and row["start_time"] is not None:
            await self.repo.start_generating(campaign_id, fresh=False)
        await self._changed(campaign_id)
        if requested is S.STOPPED:
            await self._wait_released(campaign_id)
        return previous

    async def generate(self, campaign_id: int) -> dict[str, Any]:
        """Ask the cluster to generate a campaign in `running`; the row once a node has it."""
        row = await self.repo.get_campaign(campaign_id)
        if row["status"] != S.RUNNING:
            raise RuleViolation(
                "Campaign must be in 'running' status to start traffic generation. "
                f"Current status: {row['status']}",
                current_status=row["status"],
                required_status="running",
                campaign_id=campaign_id,
            )
        if row.get("generating"):
            raise Conflict(
                f"Traffic generation is already active for campaign {campaign_id}.",
                campaign_id=campaign_id,
                thread_id=row.get("runner_id"),
            )
        await self.guard.check_target(row["target_url"])
        await self.cluster.reset(KIND, campaign_id, fresh=True)
        if not await self.repo.start_generating(campaign_id, fresh=True):
            raise Conflict(
                f"Traffic generation is already active for campaign {campaign_id}.",
                campaign_id=campaign_id,
            )
        self._merged.pop(campaign_id, None)
        await self._changed(campaign_id)
        before = row.get("runner_id")

        async def taken() -> bool:
            current = await self.repo.get_campaign(campaign_id)
            return bool(current.get("runner_id")) and current.get("runner_id") != before

        await wait_until(taken, GENERATE_WAIT_SECONDS)
        return await self.repo.get_campaign(campaign_id)

    async def _wait_released(self, campaign_id: int) -> None:
        """A stop returns once no node generates the campaign any more (bounded)."""

        async def released() -> bool:
            if self.host is not None and self.host.runner(campaign_id) is not None:
                return False
            return not (await self.cluster.holders(KIND, [campaign_id])).get(campaign_id)

        await wait_until(released, STOP_WAIT_SECONDS, step=0.02)

    # views ------------------------------------------------------------------------------
    async def nodes(self, campaign_id: int) -> list[dict[str, Any]]:
        held = (await self.cluster.holders(KIND, [campaign_id])).get(campaign_id, [])
        return [{"shard": lease.shard, "node": lease.holder} for lease in held]

    async def live(
        self, campaign_id: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        """A campaign's row, its profiles, its live figures and who holds its shards, read at
        once (one wait, not two)."""
        if self.host is not None and self.host.runner(campaign_id) is not None:
            campaign, profiles, nodes = await asyncio.gather(
                self.repo.get_campaign(campaign_id),
                self.repo.profiles_of_campaign(campaign_id),
                self.nodes(campaign_id),
            )
            merged = None
        else:  # the figures come from the database: read them with the rest
            try:
                campaign, profiles, nodes, merged = await asyncio.gather(
                    self.repo.get_campaign(campaign_id),
                    self.repo.profiles_of_campaign(campaign_id),
                    self.nodes(campaign_id),
                    self._totals(campaign_id),
                )
            except NotFound:
                self._merged.pop(campaign_id, None)  # no such campaign: keep no state for it
                raise
        chosen = in_order(list(campaign["user_profile_ids"]), profiles)
        return campaign, chosen, await self.stats(campaign, merged), nodes

    async def stats(
        self, campaign: dict[str, Any], merged: tuple[WindowStats, int, LatencyMemo] | None = None
    ) -> dict[str, Any]:
        """Live figures: this node's runner when it runs the only shard, else every shard's
        windows merged from the database (counts add up, histograms add exactly); `merged`
        when the caller has read them."""
        runner = self.host.runner(campaign["id"]) if self.host is not None else None
        if runner is not None and int(campaign.get("shards") or 1) == 1:
            return runner.stats()
        totals, busy, memo = merged if merged is not None else await self._totals(campaign["id"])
        if not self.generating(campaign):
            busy = 0  # nothing generates now
        stats = summarize(
            totals,
            float(campaign.get("active_seconds") or 0.0),
            float(campaign["requests_per_minute"]),
            memo=memo,
        )
        stats["busy_users"] = busy
        return stats

    async def _totals(self, campaign_id: int) -> tuple[WindowStats, int, LatencyMemo]:
        """Every window merged, and the users busy in each shard's latest window."""
        # A lock per campaign: info requests for different campaigns never wait for each other.
        merged = self._merged.setdefault(campaign_id, _MergedWindows())
        async with merged.lock:
            rows = await self.repo.windows_after(campaign_id, merged.floor)
            fresh = [r for r in rows if r.id not in merged.seen]
            if len(fresh) > INLINE_MERGE_ROWS:
                merged.totals.merge(await asyncio.to_thread(self.repo.merge_rows, fresh))
            elif fresh:
                self.repo.merge_rows_into(merged.totals, fresh)
            if fresh:
                merged.seen.update(r.id for r in fresh)
            for row in rows:
                shard = row.shard or 0
                if row.id > merged.latest.get(shard, (0, 0))[0]:
                    merged.latest[shard] = (row.id, row.busy_users or 0)
            now = time.monotonic()
            if rows:
                merged.reads.append((now, max(r.id for r in rows)))
            settled = [high for when, high in merged.reads if when < now - SETTLE_SECONDS]
            if settled:
                merged.floor = max(merged.floor, *settled)
                merged.seen = {i for i in merged.seen if i > merged.floor}
                merged.reads = [(w, h) for w, h in merged.reads if w >= now - SETTLE_SECONDS]
            return merged.totals, merged.busy_users(), merged.memo
