from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from campaignd.domain.ab_test import in_sample, score, winner

VARIANTS = [{"name": "A"}, {"name": "B"}, {"name": "C"}]


def test_highest_rate_wins_and_ties_go_to_the_first_listed() -> None:
    stats = {
        "A": {"sent": 10, "conversion": 1},
        "B": {"sent": 10, "conversion": 3},
        "C": {"sent": 5, "conversion": 2},
    }
    assert winner("conversion_rate", VARIANTS, stats) == "C"
    stats["C"]["conversion"] = 1
    assert winner("conversion_rate", VARIANTS, stats) == "B"
    stats["A"]["conversion"] = 3
    assert winner("conversion_rate", VARIANTS, stats) == "A"


def test_unsubscribes_are_better_low() -> None:
    stats = {
        "A": {"sent": 10, "unsubscribe": 2},
        "B": {"sent": 10, "unsubscribe": 0},
        "C": {"sent": 10, "unsubscribe": 1},
    }
    assert winner("unsubscribe_rate", VARIANTS, stats) == "B"


def test_delivery_rate_counts_failures() -> None:
    assert score("delivery_rate", {"sent": 3, "failed": 1}, "A").value == 0.75
    stats = {"A": {"sent": 3, "failed": 1}, "B": {"sent": 4}, "C": {}}
    assert winner("delivery_rate", VARIANTS, stats) == "B"


def test_nothing_measured_falls_back_to_the_first_variant() -> None:
    assert score("click_rate", {}, "A").value is None
    assert winner("click_rate", VARIANTS, {}) == "A"


@given(st.integers(1, 10_000), st.integers(1, 10_000_000))
def test_sample_membership_is_stable(campaign: int, contact: int) -> None:
    assert in_sample(campaign, contact, 30) == in_sample(campaign, contact, 30)
    assert not in_sample(campaign, contact, 0)
    assert in_sample(campaign, contact, 100)


def test_sample_share_is_close_to_the_percentage() -> None:
    members = sum(in_sample(7, contact, 20) for contact in range(20_000))
    assert abs(members / 20_000 - 0.20) < 0.01
