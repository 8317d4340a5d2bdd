"""A/B test with a winner: send a sample, measure each variant, send the best to the rest."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# metric -> (numerator, denominator, higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "delivery_rate": ("sent", "settled", True),
    "click_rate": ("click", "sent", True),
    "conversion_rate": ("conversion", "sent", True),
    "unsubscribe_rate": ("unsubscribe", "sent", False),
}
# What the operator's own systems may report back for a recipient of a campaign.
REPORTED_EVENTS = ("click", "conversion")
EVENTS = (*REPORTED_EVENTS, "unsubscribe")


def in_sample(campaign_id: int, contact_id: int, sample_percent: float) -> bool:
    """Whether this recipient is in the test sample: stable, and independent of the variant."""
    key = f"sample:{campaign_id}:{contact_id}".encode()
    point = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
    return point * 100.0 < sample_percent


@dataclass(frozen=True, slots=True)
class Score:
    variant: str
    value: float | None  # None: nothing to measure yet (no denominator)
    numerator: int
    denominator: int


def score(metric: str, stats: Mapping[str, int], variant: str) -> Score:
    numerator_key, denominator_key, _ = METRICS[metric]
    settled = stats.get("sent", 0) + stats.get("failed", 0)
    numerator = stats.get(numerator_key, 0)
    denominator = settled if denominator_key == "settled" else stats.get(denominator_key, 0)
    value = numerator / denominator if denominator else None
    return Score(variant, value, numerator, denominator)


def scores(
    metric: str, variants: Sequence[Mapping[str, Any]], stats: Mapping[str, Mapping[str, int]]
) -> list[Score]:
    return [score(metric, stats.get(str(v["name"]), {}), str(v["name"])) for v in variants]


def winner(
    metric: str, variants: Sequence[Mapping[str, Any]], stats: Mapping[str, Mapping[str, int]]
) -> str:
    """The best variant on `metric`; ties and unmeasured variants go to the one listed first."""
    sign = 1.0 if METRICS[metric][2] else -1.0
    best: Score | None = None
    for candidate in scores(metric, variants, stats):
        if candidate.value is None:
            continue
        if best is None or sign * candidate.value > sign * (best.value or 0.0):
            best = candidate
    return best.variant if best is not None else str(variants[0]["name"])
