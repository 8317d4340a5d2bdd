"""Leases on campaign shards: who may act for a shard, under which epoch, until when."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """One held epoch of one shard: what every fenced write names."""

    kind: str
    campaign_id: int
    shard: int
    holder: str
    epoch: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.kind, self.campaign_id, self.shard)


@dataclass(slots=True)
class HeldLease:
    """A lease as its holder sees it between renewals.

    `valid_until` is on this process's monotonic clock, set a margin short of the expiry
    the database recorded when the renewal was *sent*; a process that was paused past it
    (SIGSTOP, a long GC, a frozen VM) finds it spent the moment it runs again, before it
    could send anything for an epoch another node may have taken.
    """

    ref: LeaseRef
    valid_until: float
    lost: bool = False

    def usable(self, now: float) -> bool:
        return not self.lost and now < self.valid_until


def placement_cap(shards: int, alive_nodes: int) -> int:
    """At most this many shards of one campaign per node, so shards spread over nodes."""
    return max(1, math.ceil(shards / max(1, alive_nodes)))
