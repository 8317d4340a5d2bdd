"""The node loop: heartbeats, shard leases, and runners that follow the database.

Every node (a `serve` with its engine, or a `worker`) runs this loop about once a second,
and at once when woken (an API write in this process, or a PostgreSQL NOTIFY from another):

1. heartbeat in `nodes`;
2. renew its own leases, only while their epoch is still the one it holds; a lease that
   cannot be renewed is lost, and its runner stops at once;
3. read which campaigns should run (traffic: `generating` and running or paused; messages:
   running), make sure each of their shards has a lease row, and claim free or expired ones
   with `FOR UPDATE SKIP LOCKED`, at most its share of each campaign so shards spread out;
4. start a runner per won shard, pass edits on to runners (by the row's `version`), stop
   and release what should no longer run, and hand a shard back when it holds too many;
5. the holder of the `leader` lease also starts scheduled campaigns when their time comes.

On SIGTERM the runners stop (in-flight sends finish, counts are written) and every lease is
released, so other nodes take over on their next look instead of after the expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from campaignd.domain.errors import CampaignError
from campaignd.domain.leases import HeldLease, LeaseRef, placement_cap
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus
from campaignd.engine.message_supervisor import MessageSupervisor
from campaignd.engine.supervisor import TrafficSupervisor
from campaignd.logs import log_event
from campaignd.settings import Settings
from campaignd.store.cluster_repo import LEADER, ClusterRepository, LeaseRow
from campaignd.store.db import Database, utcnow
from campaignd.store.messaging_repo import MessagingRepository
from campaignd.store.outage import is_unavailable
from campaignd.store.traffic_repo import TrafficRepository
from campaignd.traffic import runner as traffic_runner

S = CampaignStatus
TRAFFIC = CampaignKind.TRAFFIC.value
MESSAGE = CampaignKind.MESSAGE.value
NOTIFY_CHANNEL = "campaignd"
# Ticks woken by notifications come at most this often: every API edit anywhere wakes every
# node, and a burst of them is one look at the rows, not one each. An edit still reaches its
# runner well within a second.
MIN_TICK_GAP_SECONDS = 0.2
Key = tuple[str, int, int]


def default_node_name(role: str) -> str:
    return f"{socket.gethostname()}-{role}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


NOT_RECOVERED = (
    "Not resumed after a restart (CAMPAIGND_RECOVER_ON_START=false): resume it to send the rest."
)


class Node:
    """One member of the cluster: runs whatever campaign shards it holds a lease on."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        traffic: TrafficSupervisor,
        messages: MessageSupervisor,
        *,
        role: str,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.repo = ClusterRepository(db)
        self.traffic_repo: TrafficRepository = traffic.repo
        self.message_repo: MessagingRepository = messages.repo
        self.traffic = traffic
        self.messages = messages
        self.role = role
        self.name = name or default_node_name(role)
        self.host = socket.gethostname()
        self.started_at: datetime = utcnow()
        self.held: dict[Key, HeldLease] = {}
        self.leader: HeldLease | None = None
        self._stopping: dict[Key, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._listener: Any = None
        self._database_down = False
        self._renewed_at: float | None = None  # monotonic time of the last heartbeat and renewal
        # Whether the next tick must look at every lease (see tick), and the campaigns'
        # shards the last such look saw wanted.
        self._full_pass = True
        self._wanted_keys: frozenset[Key] | None = None
        self._leader_row = False  # the `leader` lease row is known to exist
        self._rows: dict[str, dict[int, dict[str, Any]]] | None = None  # as last read
        traffic.on_change = self.wake
        messages.on_change = self.wake

    @property
    def lease_seconds(self) -> float:
        return self.settings.lease_seconds

    def _valid_until(self, sent_at: float) -> float:
        # A margin short of the database's expiry, counted from before the renewal was sent.
        margin = min(3.0, self.lease_seconds / 5.0)
        return sent_at + self.lease_seconds - margin

    def wake(self) -> None:
        self._full_pass = True
        self._wake.set()

    def _notified(self, payload: str) -> None:
        """A NOTIFY from any node. An edit of one campaign ("traffic:ID", "message:ID") needs
        the campaigns' rows read again; anything else (a lease released) every lease too."""
        if not payload.startswith(("traffic:", "message:")):
            self._full_pass = True
        self._wake.set()

    # life -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.heartbeat()
        await self._free_gone_nodes()
        if not self.settings.recover_on_start:
            await self._leave_for_the_operator()
        self.traffic.start()
        await self._listen()
        self._running = True
        self._task = asyncio.create_task(self._loop(), name=f"node-{self.name}")
        log_event("node.started", node=self.name, role=self.role, host=self.host, pid=os.getpid())

    async def heartbeat(self) -> None:
        await self.repo.heartbeat(
            self.name, self.role, True, os.getpid(), self.host, self.started_at
        )

    async def _free_gone_nodes(self) -> None:
        """Leases of engines that are certainly gone are free now, not after their expiry.

        SQLite has one engine (the lock file says so): every lease is free. On PostgreSQL a
        node recorded on this host whose process no longer exists is gone (a restart after
        kill -9); nodes elsewhere are only judged by their leases' expiry.
        """
        if not self.db.is_postgres:
            await self.repo.free_all_leases()
            return
        gone = [
            name
            for name, pid in await self.repo.local_nodes(self.host, self.name)
            if not _pid_alive(pid)
        ]
        freed = await self.repo.free_leases_of(gone)
        if gone:
            log_event("node.gone_nodes_freed", node=self.name, gone=gone, leases=freed)

    async def _leave_for_the_operator(self) -> None:
        """CAMPAIGND_RECOVER_ON_START=false: traffic that was generating is not resumed, and
        message campaigns that were sending are paused, saying why (Resume sends the rest)."""
        if self.db.is_postgres and await self.repo.alive_engines(self.lease_seconds) > 1:
            return  # other nodes are running: nothing was interrupted
        for campaign in await self.traffic_repo.wanted_campaigns():
            await self.traffic_repo.clear_generating(
                campaign["id"], reason="not resumed after restart"
            )
            log_event(
                "traffic.not_recovered", campaign_id=campaign["id"], status=campaign["status"]
            )
        for campaign in await self.message_repo.sending_campaigns():
            if campaign["status"] == CampaignStatus.RUNNING.value:
                with contextlib.suppress(CampaignError):  # changed meanwhile by an operator
                    await self.message_repo.transition(
                        campaign["id"],
                        CampaignStatus.PAUSED,
                        Actor.SYSTEM,
                        pause_reason=NOT_RECOVERED,
                        last_error=NOT_RECOVERED,
                    )
            await self.message_repo.set_sending(campaign["id"], None)
            log_event(
                "messages.not_recovered", campaign_id=campaign["id"], status=campaign["status"]
            )

    async def shutdown(self) -> None:
        """Stop every runner (in-flight work finishes, counts are written), release every
        lease, and leave the cluster."""
        self._running = False
        self.wake()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)
        await asyncio.gather(
            self.traffic.shutdown(traffic_runner.SHUTDOWN),
            self.messages.shutdown(traffic_runner.SHUTDOWN),
            return_exceptions=True,
        )
        held = [h.ref for h in self.held.values()]
        if self.leader is not None:
            held.append(self.leader.ref)
        for ref in held:
            with contextlib.suppress(Exception):
                await self.repo.release(ref)
        self.held.clear()
        with contextlib.suppress(Exception):
            await self.repo.forget_node(self.name)
        await self._unlisten()
        with contextlib.suppress(Exception):
            await self.db.notify("released")
        log_event("node.stopped", node=self.name, released=len(held))

    # notifications ----------------------------------------------------------------------
    async def _listen(self) -> None:
        if not self.db.is_postgres or self._listener is not None:
            return
        import asyncpg

        try:
            self._listener = await asyncpg.connect(self.db.driver_dsn(), timeout=5)
            await self._listener.add_listener(
                NOTIFY_CHANNEL, lambda *args: self._notified(str(args[-1] or ""))
            )
        except Exception:
            self._listener = None  # polling the rows every tick still follows every change
            log_event("node.listen_failed", level=logging.WARNING, node=self.name, exc_info=True)

    async def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
            self._listener = None

    # the loop ---------------------------------------------------------------------------
    async def _loop(self) -> None:
        while self._running:
            self._wake.clear()
            began = time.monotonic()
            try:
                await self.tick()
                if self._database_down:
                    self._database_down = False
                    log_event("node.database_recovered", node=self.name)
            except Exception as exc:
                if not is_unavailable(exc):
                    log_event(
                        "node.tick_failed", level=logging.ERROR, node=self.name, exc_info=True
                    )
                elif not self._database_down:
                    self._database_down = True
                    log_event(
                        "node.database_unavailable",
                        level=logging.WARNING,
                        node=self.name,
                        error=str(exc)[:300],
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.node_tick_seconds)
            gap = min(MIN_TICK_GAP_SECONDS, self.settings.node_tick_seconds) - (
                time.monotonic() - began
            )
            if gap > 0 and self._running:
                await asyncio.sleep(gap)  # more wake-ups meanwhile make one tick

    def _renewal_due(self) -> bool:
        """Heartbeat and lease renewal keep the tick's pace, however often a wake-up comes."""
        if self._renewed_at is None:
            return True
        return time.monotonic() - self._renewed_at >= self.settings.node_tick_seconds * 0.9

    async def tick(self) -> None:
        """One look at the rows. Leases are read and claimed on a full pass: at the tick's
        pace, when woken from this process or by a release, or when the wanted campaigns or
        their shards changed. An edit of a campaign's settings (the usual notification,
        several a second under an API's load) is passed on to its runner without that.
        Free leases come from releases (notified), expiries and joining nodes (both seen at
        the tick's pace) and new or re-sharded campaigns (a change of the wanted set), so no
        free shard waits longer than it did."""
        renewal = self._renewal_due()
        if renewal:
            self._renewed_at = time.monotonic()
            await self.heartbeat()
            await self._renew()
        if self._listener is not None and self._listener.is_closed():
            self._listener = None
        await self._listen()
        full = renewal or self._full_pass
        self._full_pass = False
        try:
            wanted = await self._read_wanted(fresh=full)
            if not full and self._keys(wanted) != self._wanted_keys:
                full = True  # claims start runners from rows read whole, just now
                wanted = await self._read_wanted(fresh=True)
            await self._let_go(wanted)
            keys = self._keys(wanted)
            if full or keys != self._wanted_keys:
                self._wanted_keys = None  # until this pass has looked at every lease
                alive = await self.repo.alive_engines(self.lease_seconds)
                for kind, rows in wanted.items():
                    await self._take(kind, rows, alive)
                self._wanted_keys = keys
        except BaseException:
            self._full_pass = True
            raise
        for row in wanted[TRAFFIC].values():
            self.traffic.follow(row)
        for row in wanted[MESSAGE].values():
            self.messages.follow(row)
        await self._lead(full)

    @staticmethod
    def _keys(wanted: dict[str, dict[int, dict[str, Any]]]) -> frozenset[Key]:
        return frozenset(
            (kind, cid, int(row.get("shards") or 1))
            for kind, rows in wanted.items()
            for cid, row in rows.items()
        )

    async def _read_wanted(self, *, fresh: bool) -> dict[str, dict[int, dict[str, Any]]]:
        """The campaigns that should run (traffic: generating; messages: running), by kind.

        `fresh` reads every row whole. Otherwise only each row's `version` is read, and whole
        only the rows that are new or whose version moved: every edit a runner follows moves
        it, and a row read earlier is only handed to runners for what the version covers.
        """
        traffic, messages = self.traffic_repo, self.message_repo
        if fresh or self._rows is None:
            rows = {
                TRAFFIC: {c["id"]: c for c in await traffic.wanted_campaigns()},
                MESSAGE: {c["id"]: c for c in await messages.running_campaigns()},
            }
        else:
            versions = {
                TRAFFIC: await traffic.wanted_versions(),
                MESSAGE: await messages.running_versions(),
            }
            fetch = {TRAFFIC: traffic.wanted_by_id, MESSAGE: messages.running_by_id}
            rows = {}
            for kind, current in versions.items():
                known = self._rows[kind]
                moved = [
                    cid
                    for cid, version in current.items()
                    if cid not in known or int(known[cid].get("version") or 0) != version
                ]
                read = await fetch[kind](moved)
                rows[kind] = {
                    cid: read[cid] if cid in read else known[cid]
                    for cid in current
                    if cid in read or (cid in known and cid not in moved)
                }
        self._rows = rows
        return rows

    async def _renew(self) -> None:
        held = list(self.held.values())
        if self.leader is not None:
            held.append(self.leader)
        if not held:
            return
        sent_at = time.monotonic()
        kept = await self.repo.renew([h.ref for h in held], self.lease_seconds)
        for lease in held:
            if lease.ref.key in kept:
                lease.valid_until = self._valid_until(sent_at)
                continue
            lease.lost = True
            if lease is self.leader:
                self.leader = None
                log_event("node.leadership_lost", node=self.name)
                continue
            log_event(
                "node.lease_lost",
                level=logging.WARNING,
                node=self.name,
                kind=lease.ref.kind,
                campaign_id=lease.ref.campaign_id,
                shard=lease.ref.shard,
                epoch=lease.ref.epoch,
            )
            self._stop_in_background(lease.ref.key, traffic_runner.LEASE_LOST, release=False)

    def _host_running(self, key: Key) -> bool:
        kind, campaign_id, shard = key
        host = self.traffic if kind == TRAFFIC else self.messages
        return host.running(campaign_id, shard)

    async def _let_go(self, wanted: dict[str, dict[int, dict[str, Any]]]) -> None:
        """Stop what should no longer run here; release leases whose runner has ended."""
        for key, lease in list(self.held.items()):
            if key in self._stopping:
                continue
            kind, campaign_id, shard = key
            row = wanted[kind].get(campaign_id)
            if row is None or shard >= int(row.get("shards") or 1):
                reason = "stopped"
                self._stop_in_background(key, reason, release=True)
            elif not self._host_running(key):
                del self.held[key]
                await self.repo.release(lease.ref)

    def _stop_in_background(self, key: Key, reason: str, *, release: bool) -> None:
        """Stop a shard's runner without holding up the loop (a drain may take seconds)."""
        lease = self.held.get(key)
        if lease is None or key in self._stopping:
            return
        kind, campaign_id, shard = key
        host = self.traffic if kind == TRAFFIC else self.messages

        async def stop() -> None:
            try:
                await host.stop_shard(campaign_id, shard, reason)
                if release and not lease.lost:
                    await self.repo.release(lease.ref)
                    await self.db.notify("released")
            except Exception:
                log_event(
                    "node.release_failed", level=logging.WARNING, node=self.name, exc_info=True
                )
            finally:
                self._stopping.pop(key, None)
                if self.held.get(key) is lease:
                    del self.held[key]
                self.wake()

        self._stopping[key] = asyncio.create_task(stop(), name=f"stop-{kind}-{campaign_id}-{shard}")

    async def _take(self, kind: str, rows: dict[int, dict[str, Any]], alive: int) -> None:
        if not rows:
            return
        leases = await self.repo.leases_of(kind, rows)
        by_campaign: dict[int, list[LeaseRow]] = {}
        for lease in leases:
            by_campaign.setdefault(lease.campaign_id, []).append(lease)
        missing = {
            (kind, cid): int(row.get("shards") or 1)
            for cid, row in rows.items()
            if len([x for x in by_campaign.get(cid, []) if x.shard < int(row.get("shards") or 1)])
            < int(row.get("shards") or 1)
        }
        if missing:
            await self.repo.ensure(missing)
            leases = await self.repo.leases_of(kind, rows)
            by_campaign = {}
            for lease in leases:
                by_campaign.setdefault(lease.campaign_id, []).append(lease)
        now = await self.repo.clock()
        for cid, row in rows.items():
            shards = int(row.get("shards") or 1)
            cap = placement_cap(shards, alive)
            mine = [
                k for k in self.held if k[0] == kind and k[1] == cid and k not in self._stopping
            ]
            if len(mine) > cap:  # a node joined: hand one shard over so the rate spreads
                key = max(mine)
                log_event(
                    "node.rebalance", node=self.name, kind=kind, campaign_id=cid, shard=key[2]
                )
                self._stop_in_background(key, traffic_runner.HANDOVER, release=True)
                continue
            free = [
                x
                for x in by_campaign.get(cid, [])
                if x.shard < shards and not x.finished and not x.held_at(now)
            ]
            if not free or len(mine) >= cap:
                continue
            sent_at = time.monotonic()
            won = await self.repo.claim(
                kind, cid, shards, self.name, cap - len(mine), self.lease_seconds
            )
            for lease_row in won:
                await self._start(kind, row, lease_row, sent_at)

    async def _start(
        self, kind: str, row: dict[str, Any], lease_row: LeaseRow, sent_at: float
    ) -> None:
        ref = LeaseRef(kind, lease_row.campaign_id, lease_row.shard, self.name, lease_row.epoch)
        lease = HeldLease(ref, self._valid_until(sent_at))
        self.held[ref.key] = lease
        log_event(
            "node.lease_claimed",
            node=self.name,
            kind=kind,
            campaign_id=ref.campaign_id,
            shard=ref.shard,
            epoch=ref.epoch,
        )
        try:
            started: Any
            if kind == TRAFFIC:
                started = await self.traffic.start_shard(row, lease, lease_row.active_seconds)
            else:
                started = await self.messages.start_shard(row, lease)
                log_event(
                    "messages.recovered" if ref.epoch > 1 else "messages.shard_started",
                    campaign_id=ref.campaign_id,
                    runner_id=started.runner_id,
                    shard=ref.shard,
                    epoch=ref.epoch,
                )
        except Exception:
            started = None
            log_event(
                f"{kind}.shard_start_failed",
                level=logging.ERROR,
                node=self.name,
                campaign_id=ref.campaign_id,
                shard=ref.shard,
                exc_info=True,
            )
        if started is None:
            del self.held[ref.key]
            await self.repo.release(ref)

    async def _lead(self, full: bool) -> None:
        """The cluster-wide duties run on the one node holding the `leader` lease.

        The others try for it on full passes (at least at the tick's pace): it only comes
        free by a release, which is notified, or an expiry.
        """
        if self.leader is None and full:
            if not self._leader_row:
                await self.repo.ensure({(LEADER, 0): 1})
                self._leader_row = True
            sent_at = time.monotonic()
            won = await self.repo.claim(LEADER, 0, 1, self.name, 1, self.lease_seconds)
            if won:
                ref = LeaseRef(LEADER, 0, 0, self.name, won[0].epoch)
                self.leader = HeldLease(ref, self._valid_until(sent_at))
                log_event("node.leader", node=self.name, epoch=ref.epoch)
        leading = self.leader is not None and self.leader.usable(time.monotonic())
        if leading and await self.messages.start_due():
            self.wake()


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.05
) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
