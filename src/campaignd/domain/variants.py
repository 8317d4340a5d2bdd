"""A/B variants: each recipient's variant is a pure function of campaign and contact."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any


def bucket(campaign_id: int, contact_id: int) -> float:
    """A stable number in [0, 1) for this recipient of this campaign."""
    digest = hashlib.blake2b(f"{campaign_id}:{contact_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose(variants: Sequence[dict[str, Any]], campaign_id: int, contact_id: int) -> dict[str, Any]:
    """The variant for a recipient, by weight; the same answer every time it is asked."""
    total = sum(float(v.get("weight", 1)) for v in variants)
    point = bucket(campaign_id, contact_id) * total
    for variant in variants:
        point -= float(variant.get("weight", 1))
        if point < 0:
            return variant
    return variants[-1]
