"""The transition table of API.md, checked move by move."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaignd.domain.errors import IllegalTransition, InvalidInput
from campaignd.domain.statuses import (
    Actor,
    CampaignKind,
    CampaignStatus,
    allowed_targets,
    check_transition,
    is_allowed,
    parse_status,
)

S = CampaignStatus
K = CampaignKind

OPERATOR_ALLOWED = {
    (S.DRAFT, S.RUNNING),
    (S.DRAFT, S.SCHEDULED),
    (S.SCHEDULED, S.RUNNING),
    (S.SCHEDULED, S.STOPPED),
    (S.SCHEDULED, S.DRAFT),
    (S.RUNNING, S.PAUSED),
    (S.RUNNING, S.STOPPED),
    (S.PAUSED, S.RUNNING),
    (S.PAUSED, S.STOPPED),
    (S.STOPPED, S.RUNNING),
}
SYSTEM_ONLY = {
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.PAUSED, S.FAILED),
    (S.SCHEDULED, S.FAILED),
}
MESSAGE_ONLY = {(S.COMPLETED, S.RUNNING)}

ALL_PAIRS = [(a, b) for a in S for b in S]


@pytest.mark.parametrize(("current", "requested"), ALL_PAIRS)
@pytest.mark.parametrize("kind", list(K))
def test_operator_moves_match_the_contract(kind: K, current: S, requested: S) -> None:
    expected = (current, requested) in OPERATOR_ALLOWED or (
        kind is K.MESSAGE and (current, requested) in MESSAGE_ONLY
    )
    assert is_allowed(kind, current, requested, Actor.OPERATOR) is expected


@pytest.mark.parametrize(("current", "requested"), ALL_PAIRS)
@pytest.mark.parametrize("kind", list(K))
def test_the_engine_may_also_complete_and_fail(kind: K, current: S, requested: S) -> None:
    expected = (current, requested) in OPERATOR_ALLOWED | SYSTEM_ONLY or (
        kind is K.MESSAGE and (current, requested) in MESSAGE_ONLY
    )
    assert is_allowed(kind, current, requested, Actor.SYSTEM) is expected


def test_completed_traffic_campaign_cannot_be_resumed() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(K.TRAFFIC, S.COMPLETED, S.RUNNING)
    assert info.value.body() == {
        "error": "Cannot change status from 'completed' to 'running'.",
        "current_status": "completed",
        "requested_status": "running",
        "allowed": [],
    }


def test_completed_message_campaign_can_be_resumed() -> None:
    check_transition(K.MESSAGE, S.COMPLETED, S.RUNNING)


def test_operator_cannot_complete_a_campaign() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(K.TRAFFIC, S.RUNNING, S.COMPLETED)
    assert info.value.context["allowed"] == ["paused", "stopped"]


def test_unknown_status_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_status("exploded")
    assert info.value.context["field"] == "status"


@given(st.sampled_from(list(K)), st.sampled_from(list(S)), st.sampled_from(list(S)))
def test_refusal_lists_exactly_the_allowed_moves(kind: K, current: S, requested: S) -> None:
    allowed = allowed_targets(kind, current)
    if requested in allowed:
        check_transition(kind, current, requested)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(kind, current, requested)
        assert info.value.context["allowed"] == [s.value for s in allowed]


@given(st.sampled_from(list(K)), st.lists(st.sampled_from(list(S)), max_size=30))
def test_walks_only_reach_terminal_states_through_the_table(kind: K, walk: list[S]) -> None:
    current = S.DRAFT
    for requested in walk:
        if is_allowed(kind, current, requested, Actor.SYSTEM):
            current = requested
    assert current in set(S)
    assert not allowed_targets(kind, S.FAILED, Actor.SYSTEM)
