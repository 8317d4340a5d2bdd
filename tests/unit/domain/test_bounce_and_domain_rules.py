"""Bounce suppression rules, recipient domains and domain limits."""

from __future__ import annotations

import pytest

from campaignd.domain import bounces, domains, segments
from campaignd.domain.errors import InvalidInput


def test_a_hard_bounce_suppresses_at_once_a_soft_one_at_the_third() -> None:
    assert bounces.suppression_reason("hard", 0, "550 no user") == "hard bounce: 550 no user"
    assert bounces.suppression_reason("soft", 1, None) is None
    assert bounces.suppression_reason("soft", 2, "full") is None
    assert bounces.suppression_reason("soft", 3, "full") == "3 soft bounces within 30 days: full"


def test_domain_of_an_address() -> None:
    assert domains.domain_of("Ann@Gmail.COM.") == "gmail.com"
    assert domains.domain_of("12345") == ""


def test_domain_limits_are_validated_and_normalized() -> None:
    assert domains.validate_limits({"Gmail.com": 600}) == {"gmail.com": 600.0}
    assert domains.validate_limits(None) is None
    for bad in ({"not a domain": 1}, {"a.test": 0}, {"a.test": True}, {"a@b.test": 5}, [1]):
        with pytest.raises(InvalidInput):
            domains.validate_limits(bad)


def test_follow_up_conditions_are_checked_and_left_to_the_query() -> None:
    conditions = segments.validate(
        [{"campaign": 7, "received": True, "clicked": False}, {"attribute": "tier", "equals": 1}]
    )
    assert segments.engagement_conditions(conditions) == [conditions[0]]
    assert segments.referenced_campaigns(conditions) == [7]
    assert segments.matches(conditions, {"attributes": {"tier": 1}})
    assert not segments.matches(conditions, {"attributes": {"tier": 2}})
    for bad in (
        {"campaign": 7},
        {"campaign": True, "received": True},
        {"campaign": 7, "opened": True},
        {"campaign": 7, "clicked": 1},
    ):
        with pytest.raises(InvalidInput):
            segments.validate([bad])
