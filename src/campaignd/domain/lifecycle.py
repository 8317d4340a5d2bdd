"""Delete, archive and clone rules for campaigns and the things campaigns use.

A campaign that is scheduled, running or paused can be neither deleted nor archived. A
profile, account or audience can be archived (hidden from lists and choices) unless an
active campaign uses it, and deleted only when no campaign uses it at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaignd.domain.errors import Conflict

ACTIVE_STATUSES = frozenset({"scheduled", "running", "paused"})
GERUND = {"delete": "deleting", "archive": "archiving"}
MAX_NAME = 200


@dataclass(frozen=True)
class CampaignUse:
    """A campaign that uses a profile, account or audience."""

    id: int
    name: str
    status: str

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


def refuse_active_campaign(campaign_id: int, name: str, status: str, action: str) -> None:
    """Conflict when a campaign that is still going would be deleted or archived."""
    if status in ACTIVE_STATUSES:
        raise Conflict(
            f"Campaign '{name}' is {status}; stop it before {GERUND[action]} it.",
            campaign_id=campaign_id,
            current_status=status,
        )


def _listed(uses: list[CampaignUse], with_status: bool) -> str:
    names = [f"'{u.name}'" + (f" ({u.status})" if with_status else "") for u in uses[:5]]
    more = f" and {len(uses) - 5} more" if len(uses) > 5 else ""
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return joined + more


def refuse_used(thing: str, thing_id: int, name: str, uses: list[CampaignUse], action: str) -> None:
    """Conflict naming the campaigns that keep `thing` from being deleted or archived.

    Archiving only needs the active campaigns stopped; deleting needs no campaign at all.
    """
    key = f"{thing.lower()}_id"
    if action == "archive":
        active = [u for u in uses if u.active]
        if active:
            which = "campaign" if len(active) == 1 else "campaigns"
            status = active[0].status if len(active) == 1 else "active"
            it = "it" if len(active) == 1 else "them"
            raise Conflict(
                f"{thing} '{name}' is used by {status} {which} {_listed(active, len(active) > 1)}; "
                f"stop {it} before archiving the {thing.lower()}.",
                **{key: thing_id},
                campaign_ids=[u.id for u in active],
            )
        return
    if uses:
        which = "campaign" if len(uses) == 1 else "campaigns"
        first = "that campaign" if len(uses) == 1 else "those campaigns"
        advice = (
            f"stop and delete {first} first"
            if any(u.active for u in uses)
            else f"delete {first} first, or archive the {thing.lower()} instead"
        )
        raise Conflict(
            f"{thing} '{name}' is used by {which} {_listed(uses, True)}; {advice}.",
            **{key: thing_id},
            campaign_ids=[u.id for u in uses],
        )


def copy_name(name: str) -> str:
    """The name of a clone: 'hello' -> 'hello (copy)', kept within the name's length."""
    suffix = " (copy)"
    return name[: MAX_NAME - len(suffix)] + suffix


# What shapes who gets a message can change only before it starts going out.
BEFORE_START_ONLY = {
    "audience_id": "audience",
    "segment": "segment",
    "variants": "variants",
    "ab_test": "A/B test",
    "start_at": "start time",
}
NOT_STARTED = frozenset({"draft", "scheduled"})


def refuse_late_change(campaign_id: int, status: str, fields: list[str]) -> None:
    """Conflict when a campaign that has started would change whom or what it sends to."""
    if status in NOT_STARTED:
        return
    for field in fields:
        if field in BEFORE_START_ONLY:
            what = BEFORE_START_ONLY[field]
            raise Conflict(
                f"The {what} can only change before the campaign starts (it is {status}); "
                f"clone the campaign to send with another {what}.",
                campaign_id=campaign_id,
                field=field,
                current_status=status,
            )
