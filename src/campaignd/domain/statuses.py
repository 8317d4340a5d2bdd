"""Campaign statuses and the one transition table every status change goes through."""

from __future__ import annotations

from enum import StrEnum

from campaignd.domain.errors import IllegalTransition


class CampaignKind(StrEnum):
    TRAFFIC = "traffic"
    MESSAGE = "message"


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"


class Actor(StrEnum):
    """Who asks for a change: an operator through the API, or the engine itself."""

    OPERATOR = "operator"
    SYSTEM = "system"


S = CampaignStatus
ACTIVE = frozenset({S.SCHEDULED, S.RUNNING, S.PAUSED})

# (from, to) -> who may make it. The engine (SYSTEM) may make every operator move too.
_OPERATOR_MOVES: dict[S, frozenset[S]] = {
    S.DRAFT: frozenset({S.RUNNING, S.SCHEDULED}),
    S.SCHEDULED: frozenset({S.RUNNING, S.STOPPED, S.DRAFT}),
    S.RUNNING: frozenset({S.PAUSED, S.STOPPED}),
    S.PAUSED: frozenset({S.RUNNING, S.STOPPED}),
    S.STOPPED: frozenset({S.RUNNING}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
}
_SYSTEM_MOVES: dict[S, frozenset[S]] = {
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED}),
    S.PAUSED: frozenset({S.FAILED}),
    S.SCHEDULED: frozenset({S.FAILED}),
}
# Message campaigns may be resumed after completion, to reach recipients added since.
_KIND_EXTRA: dict[CampaignKind, dict[S, frozenset[S]]] = {
    CampaignKind.MESSAGE: {S.COMPLETED: frozenset({S.RUNNING})},
    CampaignKind.TRAFFIC: {},
}


def allowed_targets(kind: CampaignKind, current: S, actor: Actor = Actor.OPERATOR) -> list[S]:
    """Statuses `actor` may move a `kind` campaign to from `current`, in table order."""
    moves = set(_OPERATOR_MOVES[current]) | set(_KIND_EXTRA[kind].get(current, frozenset()))
    if actor is Actor.SYSTEM:
        moves |= _SYSTEM_MOVES.get(current, frozenset())
    return [s for s in CampaignStatus if s in moves]


def is_allowed(kind: CampaignKind, current: S, requested: S, actor: Actor = Actor.OPERATOR) -> bool:
    return requested in allowed_targets(kind, current, actor)


def check_transition(
    kind: CampaignKind, current: S, requested: S, actor: Actor = Actor.OPERATOR
) -> None:
    """Raise IllegalTransition unless `actor` may move the campaign from current to requested."""
    if not is_allowed(kind, current, requested, actor):
        raise IllegalTransition(
            current.value,
            requested.value,
            [s.value for s in allowed_targets(kind, current, Actor.OPERATOR)],
        )


def parse_status(value: str) -> S:
    """The status named by `value`, or IllegalTransition-free InvalidInput for unknown names."""
    from campaignd.domain.errors import InvalidInput

    try:
        return CampaignStatus(value)
    except ValueError:
        raise InvalidInput(
            f"Unknown status '{value}'.",
            field="status",
            allowed=[s.value for s in CampaignStatus],
        ) from None
