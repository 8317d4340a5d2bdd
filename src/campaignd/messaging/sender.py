"""A message runner owns one sending campaign: claim, render, pace, send, record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from campaignd.domain import ab_test, segments, templates, variants, windows
from campaignd.domain.domains import domain_of
from campaignd.domain.errors import CampaignError, RuleViolation
from campaignd.domain.leases import HeldLease
from campaignd.domain.pacing import Pacer
from campaignd.domain.statuses import Actor, CampaignStatus
from campaignd.logs import log_event
from campaignd.messaging.channels.base import Channel, OutgoingMessage, SendResult
from campaignd.messaging.domain_throttle import DomainThrottle
from campaignd.messaging.ledger_writer import LedgerWriter
from campaignd.messaging.link_tracking import LinkTracker
from campaignd.messaging.shared_pacer import SharedPacer
from campaignd.store.cluster_repo import LeaseLost
from campaignd.store.messaging_repo import (
    SENT,
    DeliveryOutcome,
    LedgerUpdate,
    MessagingRepository,
)
from campaignd.store.outage import is_unavailable

# Channels whose far end deduplicates by Idempotency-Key: claims left in doubt by a crash are
# sent again with the same key. Others (SMTP) settle them as failed instead.
IDEMPOTENT_CHANNELS = frozenset({"webhook", "telegram", "log"})
# Channels that send OutgoingMessage.headers (List-Unsubscribe) along with the message.
HEADER_CHANNELS = frozenset({"smtp"})
IN_DOUBT_REASON = "in doubt after a crash: not re-sent on a channel without idempotency"
SHUTDOWN = "shutdown"
# Stopped because its shard moved (lease lost, or handed to another node): the campaign's
# row is left alone, whoever holds the shard now carries on.
HANDOVER = "handover"
LEASE_LOST = "lease lost"
LEAVES_CAMPAIGN_ALONE = frozenset({SHUTDOWN, HANDOVER, LEASE_LOST})
RECORD_SECONDS = 0.1
REFRESH_SECONDS = 0.5
DRAIN_SECONDS = 5.0
CLAIM_AHEAD_SECONDS = 10.0
UNPACED_AHEAD_SECONDS = 0.5
RATE_SECONDS = 0.25
PROGRESS_POLL_SECONDS = 0.5
# A recipient whose domain keeps saying "try later" fails after this many tries.
MAX_DOMAIN_BUSY_TRIES = 12

# (address, "hard"|"soft", reason, campaign id): a bounce the channel reported.
BounceHook = Callable[[str, str, str | None, int], Awaitable[None]]


AnyPacer = Pacer | SharedPacer
# What a runner that ended by itself does to its campaign (the engine decides: one shard's
# end completes the campaign only when every shard is done).
Conclude = Callable[["MessageRunner", CampaignStatus, dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class Recipient:
    contact: dict[str, Any]
    variant: str | None
    attempts: int = 0  # tries its domain answered "later" to
    domain_slot: bool = False  # a slot of its domain's limit is already reserved for it
    # The runner's claim generation when it was claimed: a lowered limit on a sharded
    # campaign starts a new one, and older claims are given back instead of sent.
    generation: int = 0


class MessageRunner:
    """Sends one campaign until its limit is reached, its audience is exhausted, or it stops."""

    def __init__(
        self,
        campaign: dict[str, Any],
        channel_kind: str,
        channel: Channel,
        repo: MessagingRepository,
        *,
        campaign_pacer: AnyPacer,
        account_pacer: AnyPacer,
        concurrency: int,
        claim_batch: int,
        segment: Any,
        on_exit: Callable[[MessageRunner], None],
        unsubscribe_url: Callable[[int, int], str] | None = None,
        ledger: LedgerWriter | None = None,
        lease: HeldLease | None = None,
        shards: int = 1,
        conclude: Conclude | None = None,
        max_consecutive_failures: int = 0,
        domain_throttle: DomainThrottle | None = None,
        link_tracker: LinkTracker | None = None,
        on_bounce: BounceHook | None = None,
    ) -> None:
        self.campaign_id: int = campaign["id"]
        self.lease = lease
        self.shard = lease.ref.shard if lease else 0
        self.shards = shards
        self.version = int(campaign.get("version") or 0)
        self._conclude = conclude
        self._enforce_limit = False
        self._generation = 0
        suffix = f"-s{self.shard}" if shards > 1 else ""
        self.runner_id = f"sender-{self.campaign_id}{suffix}-{uuid.uuid4().hex[:8]}"
        self.repo = repo
        self.ledger = ledger or LedgerWriter(repo)
        self.channel_kind = channel_kind
        self.channel = channel
        self.campaign_pacer = campaign_pacer
        self.account_pacer = account_pacer
        self.concurrency = concurrency
        self.claim_batch = claim_batch
        self._stored_segment = segment
        self.segment: list[dict[str, Any]] = []
        self.outcome: CampaignStatus | None = None
        self.sent = 0
        self.failed = 0
        self._outstanding = 0  # claimed by this runner, not yet settled or released
        self._in_send = 0
        self._recording = True
        self._pace_lock = asyncio.Lock()
        # Unbounded: the claim window bounds what is in it.
        self._queue: asyncio.Queue[Recipient | None] = asyncio.Queue()
        self._results: list[DeliveryOutcome] = []
        self._rate_sample = (time.monotonic(), 0, 0.0)  # (when, settled then, rate since)
        self._released: list[int] = []
        # Something waits in _results or _released (or the recorder is to finish): the
        # recorder sleeps on this instead of looking every RECORD_SECONDS.
        self._unrecorded = asyncio.Event()
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()  # a claim settled or was released, an edit, a stop
        self._stop_reason = "stopped"
        self._on_exit = on_exit
        self._unsubscribe_url = unsubscribe_url
        self._task: asyncio.Task[None] | None = None
        self._database_down = False
        self._audience_id: int = campaign["audience_id"]
        self._follow_up: list[dict[str, Any]] = []
        self._rescan = False
        self.domain_throttle = domain_throttle or DomainThrottle()
        self.link_tracker = link_tracker
        self._on_bounce = on_bounce
        # Recipients waiting for their domain (limit or back-off): still claimed, not queued.
        self._deferred: dict[int, tuple[asyncio.TimerHandle, Recipient]] = {}
        self.ab_test: dict[str, Any] | None = campaign.get("ab_test")
        self.winner: str | None = campaign.get("ab_winner")
        self.sample_done_at = _parse_time(campaign.get("ab_sample_done_at"))
        self._default_failure_limit = max_consecutive_failures
        self._failures_in_a_row = 0
        self.pause_reason: str | None = None
        self.apply_edit(campaign)

    @property
    def testing(self) -> bool:
        """Sending the A/B sample: only sample recipients, each variant by weight."""
        return bool(self.ab_test and self.variants and self.winner is None)

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def apply_edit(self, campaign: dict[str, Any]) -> None:
        """Take the campaign's current values; every message not yet sent uses them."""
        self.message: str = campaign["message"]
        self.subject: str | None = campaign.get("subject")
        lowered = int(campaign["recipient_limit"]) < getattr(self, "limit", math.inf)
        self.limit: int = int(campaign["recipient_limit"])
        if lowered and self.shards > 1:
            # Shards share the limit: what each holds claimed was claimed under the old one.
            # Give back what is not being sent yet and count every shard's rows from now on.
            self._enforce_limit = True
            self._generation += 1
            self._release_deferred()
            self._release_queued()
            self._rescan = True  # those given back lie behind the cursor
        self.variants: list[dict[str, Any]] = list(campaign.get("variants") or [])
        self.send_window: dict[str, str] | None = campaign.get("send_window")
        own = campaign.get("max_consecutive_failures")
        self.failure_limit: int = self._default_failure_limit if own is None else int(own)
        self.track_links = bool(campaign.get("track_links"))
        # The link costs a signature per message: made only for a channel that puts it in a
        # header (SMTP's List-Unsubscribe) or a template that names it.
        self._needs_unsubscribe = self.channel_kind in HEADER_CHANNELS or any(
            "unsubscribe" in (text or "")
            for text in (
                self.message,
                self.subject,
                *(str(v.get("message") or "") for v in self.variants),
            )
        )
        self.campaign_pacer.set_rate(campaign.get("rate_per_minute"))
        self._progress.set()

    async def start(self) -> None:
        await self.repo.refresh_planner_stats()
        counts = (await self.repo.counts([self.campaign_id]))[self.campaign_id]
        self.sent = counts[SENT]
        if self.shards > 1:  # shards share the limit: each claim counts every shard's rows
            self._enforce_limit = self.limit < await self.repo.audience_size(self._audience_id)
        await self.repo.set_sending(self.campaign_id, self.runner_id)
        self._task = asyncio.create_task(self._run(), name=self.runner_id)
        log_event(
            "messages.runner_started",
            campaign_id=self.campaign_id,
            runner_id=self.runner_id,
            already_sent=self.sent,
            limit=self.limit,
        )

    def rescan(self) -> None:
        """Recipients became eligible again (retry-failed): look through the audience again."""
        self._rescan = True
        self._progress.set()

    async def stop(self, reason: str = "stopped") -> None:
        """Stop claiming, let in-flight sends finish (bounded), release what was not sent."""
        self._stop_reason = reason
        self._stop.set()
        self._progress.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def _run(self) -> None:
        workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        recorder = asyncio.create_task(self._record_loop())
        error: BaseException | None = None
        try:
            self.segment = _usable_segment(self._stored_segment)
            self._follow_up = segments.engagement_conditions(self.segment)
            await self._requeue_in_doubt()
            await self._produce()
        except LeaseLost:
            self._lose_lease()
        except Exception as exc:
            error = exc
            self.outcome = CampaignStatus.FAILED
            log_event(
                "messages.runner_failed",
                level=logging.ERROR,
                exc_info=True,
                campaign_id=self.campaign_id,
                runner_id=self.runner_id,
            )
        finally:
            self._stop.set()
            self._release_deferred()
            self._release_queued()
            for _ in workers:
                self._queue.put_nowait(None)
            _, stuck = await asyncio.wait(workers, timeout=DRAIN_SECONDS)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._release_deferred()
            self._release_queued()
            # The recorder finishes the write it is in (cancelling it mid-write would lose
            # the batch it holds); _finish then writes whatever is left.
            self._recording = False
            self._unrecorded.set()
            with contextlib.suppress(Exception):
                await recorder
            await self._finish(error)

    async def _requeue_in_doubt(self) -> None:
        """Claims a crash left in 'sending' go first: re-sent with the same key, or settled."""
        if self.channel_kind not in IDEMPOTENT_CHANNELS:
            if self.lease is not None:
                settled = await self.repo.settle_in_doubt_shard(
                    self.campaign_id, self.lease.ref, self.shards, IN_DOUBT_REASON
                )
            else:
                settled = await self.repo.settle_in_doubt(self.campaign_id, IN_DOUBT_REASON)
            if settled:
                log_event("messages.in_doubt_settled", campaign_id=self.campaign_id, count=settled)
            return
        after = 0
        resent = 0
        while not self._stop.is_set():
            if self.lease is not None:
                rows = await self.repo.in_doubt_shard(
                    self.campaign_id, self.lease.ref, self.shards, after, self.claim_batch
                )
            else:
                rows = await self.repo.in_doubt(self.campaign_id, after, self.claim_batch)
            if not rows:
                break
            for row in rows:
                self._outstanding += 1
                await self._queue.put(
                    Recipient(row, row.get("variant"), generation=self._generation)
                )
            resent += len(rows)
            after = rows[-1]["id"]
        if resent:
            log_event(
                "messages.in_doubt_resent",
                campaign_id=self.campaign_id,
                runner_id=self.runner_id,
                count=resent,
            )

    async def _produce(self) -> None:
        cursor = 0
        exhausted = False
        while not self._stop.is_set():
            if self._rescan:
                # Claims given back are written first, or the scan would pass them by again.
                if not await self._record():
                    await self._wait(1.0)
                    continue
                self._rescan, cursor, exhausted = False, 0, False
            window = self._claim_window()
            room = self.limit - self.sent - self._outstanding
            # Recipients waiting for a throttled domain do not hold up other domains' claims,
            # up to a bound.
            waiting = self._outstanding - len(self._deferred)
            if waiting > window // 2 or len(self._deferred) >= 4 * self.claim_batch:
                room = 0  # refill in chunks, not one claim per send
            room = min(room, window - waiting)
            if room > 0 and not exhausted:
                try:
                    batch = await self._claim(cursor, min(room, max(self.claim_batch, window // 2)))
                except Exception as exc:
                    if not is_unavailable(exc):
                        raise
                    self._note_outage(exc)
                    await self._wait(1.0)  # the database is away: wait, then claim again
                    continue
                if batch is None:
                    exhausted = True
                    continue
                cursor, recipients = batch
                if not recipients:
                    await self._wait(PROGRESS_POLL_SECONDS)
                for recipient in recipients:
                    await self._queue.put(recipient)
                continue
            if self._outstanding == 0:
                if self.testing and room > 0:
                    # The sample is sent: pick the winner, then the rest of the audience.
                    if await self._decide_winner():
                        cursor, exhausted = 0, False
                    continue
                # The limit is reached or nobody eligible is left: done until resumed.
                if self.outcome is None:
                    self.outcome = CampaignStatus.COMPLETED
                return
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), PROGRESS_POLL_SECONDS)

    def _claim_window(self) -> int:
        """How many recipients to hold claimed ahead of their send.

        Unpaced, about UNPACED_AHEAD_SECONDS of sends at the rate they go out, two batches at
        least, eight at most: the next claim starts while half of that still waits, so sending
        never stops for a claim (on a busy loop a claim's round trips wait behind every send,
        so a claim of 500 can take longer than sending 500). Paced, about CLAIM_AHEAD_SECONDS
        of sends, so a slow campaign holds few claims (a crash leaves only those in doubt) yet
        claims in chunks.
        """
        rates = [
            r
            for r in (self.campaign_pacer.rate_per_minute, self.account_pacer.rate_per_minute)
            if r
        ]
        if not rates:
            ahead = math.ceil(self._send_rate() * UNPACED_AHEAD_SECONDS)
            return max(2 * self.claim_batch, min(8 * self.claim_batch, ahead))
        ahead = math.ceil(min(rates) / 60.0 * CLAIM_AHEAD_SECONDS)
        return max(1, min(self.claim_batch, ahead))

    def _send_rate(self) -> float:
        """Settled sends per second lately (measured over at least RATE_SECONDS)."""
        now = time.monotonic()
        done = self.sent + self.failed
        since, done_then, rate = self._rate_sample
        if now - since >= RATE_SECONDS:
            rate = (done - done_then) / (now - since)
            self._rate_sample = (now, done, rate)
        return rate

    async def _decide_winner(self) -> bool:
        """Wait the test's time for results, then keep the best variant; False if interrupted."""
        assert self.ab_test is not None
        if not await self._record():  # the sample's outcomes count: write them first
            await self._wait(1.0)
            return False
        try:
            if self.sample_done_at is None:
                self.sample_done_at = datetime.now(UTC)
                await self.repo.note_ab_test(
                    self.campaign_id, "ab_sample_sent", {"ab_sample_done_at": self.sample_done_at}
                )
                log_event(
                    "messages.ab_sample_sent",
                    campaign_id=self.campaign_id,
                    runner_id=self.runner_id,
                    sent=self.sent,
                )
            wait = float(self.ab_test.get("wait_minutes") or 0) * 60.0
            left = (self.sample_done_at - datetime.now(UTC)).total_seconds() + wait
            if left > 0:
                await self._wait(min(left, 5.0))  # short steps: a stop must not wait for it
                return False
            metric = str(self.ab_test["metric"])
            stats = await self.repo.variant_counts(self.campaign_id)
            best = ab_test.winner(metric, self.variants, stats)
            await self.repo.note_ab_test(self.campaign_id, "ab_winner", {"ab_winner": best})
            if self.shards > 1:  # another shard may have decided first: one winner for all
                best = (await self.repo.get_campaign(self.campaign_id))["ab_winner"] or best
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self._note_outage(exc)
            await self._wait(1.0)
            return False
        self.winner = best
        log_event(
            "messages.ab_winner",
            campaign_id=self.campaign_id,
            runner_id=self.runner_id,
            metric=metric,
            winner=best,
            scores={s.variant: s.value for s in ab_test.scores(metric, self.variants, stats)},
        )
        return True

    async def _claim(self, cursor: int, wanted: int) -> tuple[int, list[Recipient]] | None:
        """Claim up to `wanted` recipients after `cursor`; None when the audience is exhausted."""
        while True:
            page = await self.repo.claim_next(
                self.campaign_id,
                self._audience_id,
                cursor,
                wanted,
                self._pick,
                follow_up=self._follow_up,
                lease=self.lease.ref if self.lease is not None else None,
                shards=self.shards,
                enforce_limit=self._enforce_limit,
            )
            if page is None or page.full:  # nobody left, or every shard together is done
                return None
            if page.busy:  # no room until in-flight sends settle: ask again from here
                return cursor, []
            cursor = page.cursor
            self._outstanding += len(page.won)
            if page.won:
                won = [Recipient(row, v, generation=self._generation) for row, v in page.won]
                return cursor, won

    def _pick(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
        """Whom of a page of candidates to claim (segment, A/B sample), with their variant."""
        chosen = rows
        if self.segment:
            chosen = [r for r in rows if segments.matches(self.segment, r)]
        if self.testing:
            assert self.ab_test is not None
            share = float(self.ab_test["sample_percent"])
            chosen = [r for r in chosen if ab_test.in_sample(self.campaign_id, r["id"], share)]
        return [(r, self._variant_for(r["id"])) for r in chosen]

    def _variant_for(self, contact_id: int) -> str | None:
        if not self.variants:
            return None
        if self.winner is not None:
            return self.winner
        return str(variants.choose(self.variants, self.campaign_id, contact_id)["name"])

    def _template_for(self, variant: str | None) -> str:
        for candidate in self.variants:
            if candidate["name"] == variant:
                return str(candidate.get("message") or self.message)
        return self.message

    async def _work(self) -> None:
        while True:
            recipient = await self._queue.get()
            if recipient is None:
                return
            try:
                outcome = await self._deliver(recipient)
            except Exception as exc:  # one recipient's bad data must never cost a worker
                outcome = self._unexpected(recipient, exc)
            if outcome is not None:
                self._settle(outcome)

    async def _deliver(self, recipient: Recipient) -> DeliveryOutcome | None:
        """Wait for a send slot and send; None when the recipient was released or deferred."""
        if not self._domain_ready(recipient):
            return None
        # One worker at a time waits for the next slot, so slots are taken just in time
        # and a rate or limit edit applies to the very next message.
        async with self._pace_lock:
            if not self._may_send(recipient):
                self._release(recipient)
                return None
            await self._pace()
            if not self._may_send(recipient):
                self._release(recipient)
                return None
            if self.lease is not None and not self.lease.usable(time.monotonic()):
                # Not renewed in time (paused, or cut off from the database): another node
                # may hold this shard now, so nothing more is sent for this epoch.
                self._lose_lease()
                self._release(recipient)
                return None
            self._in_send += 1
        try:
            return await self._send(recipient)
        finally:
            self._in_send -= 1

    def _domain_ready(self, recipient: Recipient) -> bool:
        """True when the recipient's domain may take it now; else it waits aside, still claimed."""
        if self.domain_throttle.idle:
            return True
        domain = domain_of(recipient.contact["address"])
        now = asyncio.get_running_loop().time()
        if recipient.domain_slot:
            wait = self.domain_throttle.held_for(domain, now)
            recipient.domain_slot = wait <= 0
        else:
            wait, recipient.domain_slot = self.domain_throttle.reserve(domain, now)
        if wait <= 0:
            recipient.domain_slot = False
            return True
        self._defer(recipient, wait)
        return False

    def _defer(self, recipient: Recipient, seconds: float) -> None:
        if self._stop.is_set():  # stopping: given back now, never left to a timer
            self._release(recipient)
            return
        contact_id = recipient.contact["id"]
        handle = asyncio.get_running_loop().call_later(seconds, self._undefer, contact_id)
        self._deferred[contact_id] = (handle, recipient)

    def _undefer(self, contact_id: int) -> None:
        entry = self._deferred.pop(contact_id, None)
        if entry is None:
            return
        recipient = entry[1]
        if self._stop.is_set():
            self._release(recipient)
            return
        self._queue.put_nowait(recipient)

    def _release_deferred(self) -> None:
        for handle, recipient in self._deferred.values():
            handle.cancel()
            self._release(recipient)
        self._deferred.clear()

    def _may_send(self, recipient: Recipient) -> bool:
        return (
            not self._stop.is_set()
            and self.sent + self._in_send < self.limit
            and recipient.generation == self._generation
        )

    async def _pace(self) -> None:
        if self.send_window is None and self._unpaced():
            return
        while not self._stop.is_set():
            closed_for = windows.seconds_until_open(self.send_window, datetime.now(UTC))
            if closed_for <= 0:
                break
            # Re-check at least every few seconds: an edit may change the window.
            await self._wait(min(closed_for, 5.0))
        loop = asyncio.get_running_loop()
        for pacer in (self.campaign_pacer, self.account_pacer):
            if isinstance(pacer, SharedPacer):
                while not self._stop.is_set() and not await pacer.acquire(self._wait):
                    pass
                continue
            wait = pacer.reserve(loop.time())
            if wait > 0:
                await self._wait(wait)

    def _unpaced(self) -> bool:
        """Neither pacer limits nor holds the next send (a Retry-After hold still counts)."""
        now = asyncio.get_running_loop().time()
        return all(
            pacer.idle() if isinstance(pacer, SharedPacer) else pacer.idle(now)
            for pacer in (self.campaign_pacer, self.account_pacer)
        )

    async def _send(self, recipient: Recipient) -> DeliveryOutcome | None:
        contact = recipient.contact
        headers: dict[str, str] = {}
        if self._unsubscribe_url is not None and self._needs_unsubscribe:
            link = self._unsubscribe_url(self.campaign_id, contact["id"])
            headers = {
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
            attributes = {**(contact.get("attributes") or {}), "unsubscribe_url": link}
            contact = {**contact, "attributes": attributes}
        try:
            text = templates.render(self._template_for(recipient.variant), contact)
            subject = templates.render(self.subject, contact) if self.subject else None
        except Exception as exc:
            return DeliveryOutcome(contact["id"], False, 0, f"template: {exc}")
        if self.track_links and self.link_tracker is not None:
            text = await self.link_tracker.rewrite(text, contact["id"], recipient.variant)
        result = await self.channel.send(
            OutgoingMessage(
                campaign_id=self.campaign_id,
                contact_id=contact["id"],
                external_id=contact["external_id"],
                address=contact["address"],
                text=text,
                subject=subject,
                variant=recipient.variant,
                headers=headers,
            )
        )
        if result.throttled_seconds:
            # The far end said "slow down": every worker of this account waits, not only this one.
            for pacer in (self.account_pacer, self.campaign_pacer):
                if isinstance(pacer, SharedPacer):
                    pacer.hold(time.monotonic(), result.throttled_seconds)
                else:
                    pacer.hold(asyncio.get_running_loop().time(), result.throttled_seconds)
        return await self._after_send(recipient, result)

    async def _after_send(self, recipient: Recipient, result: SendResult) -> DeliveryOutcome | None:
        """The outcome to record; None when the recipient waits for its busy domain instead."""
        contact = recipient.contact
        attempts = recipient.attempts + result.attempts
        if result.domain_busy:
            domain = domain_of(contact["address"])
            recipient.attempts = attempts
            if self._stop.is_set():  # not a failure: it goes out when the campaign resumes
                self._release(recipient)
                return None
            if attempts < MAX_DOMAIN_BUSY_TRIES:
                now = asyncio.get_running_loop().time()
                self._defer(recipient, self.domain_throttle.back_off(domain, now))
                log_event(
                    "messages.domain_backoff",
                    level=logging.DEBUG,
                    campaign_id=self.campaign_id,
                    domain=domain,
                    hold_seconds=round(self.domain_throttle.held_for(domain, now), 3),
                )
                return None
        if result.ok and not self.domain_throttle.idle:
            self.domain_throttle.succeeded(domain_of(contact["address"]))
        if result.bounce and self._on_bounce is not None:
            try:
                await self._on_bounce(
                    contact["address"], result.bounce, result.error, self.campaign_id
                )
            except Exception:  # the delivery's outcome is written regardless
                log_event(
                    "messages.bounce_not_recorded",
                    level=logging.ERROR,
                    exc_info=True,
                    campaign_id=self.campaign_id,
                )
        return DeliveryOutcome(contact["id"], result.ok, attempts, result.error)

    def _unexpected(self, recipient: Recipient, exc: Exception) -> DeliveryOutcome:
        """A send that raised instead of answering: a failed delivery saying why."""
        log_event(
            "messages.send_error",
            level=logging.WARNING,
            campaign_id=self.campaign_id,
            runner_id=self.runner_id,
            contact_id=recipient.contact["id"],
            error=f"{type(exc).__name__}: {exc}"[:300],
        )
        reason = f"send error: {type(exc).__name__}: {exc}"[:300]
        return DeliveryOutcome(recipient.contact["id"], False, 0, reason)

    def _settle(self, outcome: DeliveryOutcome) -> None:
        self._outstanding -= 1
        self._progress.set()
        if outcome.ok:
            self.sent += 1
            self._failures_in_a_row = 0
        else:
            self.failed += 1
            # Only the far end's failures (refused, timed out, unreachable) say the channel is
            # broken; one recipient's unsendable data (no attempt made) says nothing about it.
            if outcome.attempts > 0:
                self._failures_in_a_row += 1
            if 0 < self.failure_limit <= self._failures_in_a_row and self.outcome is None:
                self._pause_for_failures(outcome.error)
        self._results.append(outcome)
        self._unrecorded.set()

    def _pause_for_failures(self, last_error: str | None) -> None:
        """A run of failures means the channel is broken: stop before the audience is spent."""
        self.outcome = CampaignStatus.PAUSED
        self.pause_reason = (
            f"Paused by itself after {self._failures_in_a_row} failed deliveries in a row; "
            f"the last one: {last_error or 'no reason given'}"
        )[:1000]
        self._stop.set()
        self._progress.set()
        log_event(
            "messages.auto_paused",
            level=logging.WARNING,
            campaign_id=self.campaign_id,
            runner_id=self.runner_id,
            failures_in_a_row=self._failures_in_a_row,
            last_error=(last_error or "")[:300],
        )

    def _release(self, recipient: Recipient) -> None:
        self._outstanding -= 1
        self._progress.set()
        self._released.append(recipient.contact["id"])
        self._unrecorded.set()

    def _release_queued(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                self._release(item)

    def _lose_lease(self) -> None:
        """Stop at once, leaving the campaign to whoever holds the shard now."""
        if self.lease is not None:
            self.lease.lost = True
        self._stop_reason = LEASE_LOST
        self.outcome = None
        self._stop.set()
        self._progress.set()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _record_loop(self) -> None:
        """Write what settled, RECORD_SECONDS after the first of it (what settles meanwhile
        goes in the same write); asleep while nothing waits, retrying while a write fails."""
        while self._recording:
            await self._unrecorded.wait()
            self._unrecorded.clear()
            await asyncio.sleep(RECORD_SECONDS)
            try:
                if not await self._record():
                    self._unrecorded.set()  # the database is away: try again
            except Exception:  # kept for the next try; the loop must outlive any one write
                self._unrecorded.set()
                log_event(
                    "messages.record_failed",
                    level=logging.ERROR,
                    exc_info=True,
                    campaign_id=self.campaign_id,
                    runner_id=self.runner_id,
                )

    async def _record(self) -> bool:
        """Write settled outcomes and released claims; keep them while the database is down."""
        if not self._results and not self._released:
            return True
        results, self._results = self._results, []
        released, self._released = self._released, []
        try:
            await self.ledger.write(
                LedgerUpdate(
                    self.campaign_id,
                    results,
                    released,
                    self.lease.ref if self.lease is not None else None,
                )
            )
        except LeaseLost:
            # Fenced off: the shard's new holder treats these claims as in doubt.
            self._lose_lease()
            return True
        except Exception as exc:
            self._results[:0] = results
            self._released[:0] = released
            if not is_unavailable(exc):
                raise
            self._note_outage(exc)
            return False
        if self._database_down:
            self._database_down = False
            log_event("messages.database_recovered", campaign_id=self.campaign_id)
        return True

    def _note_outage(self, exc: BaseException) -> None:
        """Log a database outage once; sending waits and carries on when it is back."""
        if not self._database_down:
            self._database_down = True
            log_event(
                "messages.database_unavailable",
                level=logging.WARNING,
                campaign_id=self.campaign_id,
                runner_id=self.runner_id,
                error=str(exc)[:300],
            )

    async def _finish(self, error: BaseException | None) -> None:
        try:
            for _ in range(60):
                if await self._record():
                    break
                await asyncio.sleep(0.5)
            await self.channel.close()
            if self.outcome is not None:
                extra: dict[str, Any] = {"last_error": str(error)} if error else {}
                if self.pause_reason is not None:
                    extra = {"last_error": self.pause_reason, "pause_reason": self.pause_reason}
            if self.outcome is not None and self._conclude is not None:
                with contextlib.suppress(LeaseLost):
                    await self._conclude(self, self.outcome, extra)
            elif self.outcome is not None:
                with contextlib.suppress(CampaignError):
                    await self.repo.transition(
                        self.campaign_id, self.outcome, Actor.SYSTEM, **extra
                    )
            if self._stop_reason not in LEAVES_CAMPAIGN_ALONE or self.outcome is not None:
                await self.repo.set_sending(self.campaign_id, None, str(error) if error else None)
        except Exception:
            log_event(
                "messages.runner_finish_failed",
                level=logging.ERROR,
                exc_info=True,
                campaign_id=self.campaign_id,
                runner_id=self.runner_id,
            )
        finally:
            log_event(
                "messages.runner_ended",
                campaign_id=self.campaign_id,
                runner_id=self.runner_id,
                outcome=self.outcome.value if self.outcome else self._stop_reason,
                sent=self.sent,
                failed=self.failed,
            )
            self._on_exit(self)


def _usable_segment(stored: Any) -> list[dict[str, Any]]:
    """The stored segment's conditions; RuleViolation (the campaign fails) if unusable."""
    problem = segments.stored_problem(stored)
    if problem is not None:
        raise RuleViolation(problem)
    return segments.validate(stored)


def _parse_time(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
