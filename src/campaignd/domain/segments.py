"""Segments: filters over a contact's attributes, evaluated without I/O.

A condition may instead name another campaign (a follow-up): `{"campaign": 7, "received":
true, "clicked": false}`. Those need the ledger, so the recipient query applies them (see
`engagement_conditions`); `matches` leaves them to it.
"""

from __future__ import annotations

import math
from typing import Any

from campaignd.domain.errors import InvalidInput

OPERATORS = ("equals", "not_equals", "in", "range", "exists", "tags")
ENGAGEMENTS = ("received", "clicked", "converted")


def validate(segment: Any, field: str = "segment") -> list[dict[str, Any]]:
    """Normalize `{"all": [conditions]}` or a bare list of conditions; refuse what cannot work."""
    if segment is None:
        return []
    conditions = segment.get("all") if isinstance(segment, dict) else segment
    if not isinstance(conditions, list):
        raise InvalidInput(
            f"Field '{field}' must be a list of conditions or {{\"all\": [...]}}.", field=field
        )
    for index, condition in enumerate(conditions):
        where = f"{field}[{index}]"
        if isinstance(condition, dict) and "campaign" in condition:
            _check_engagement(condition, where)
            continue
        if not isinstance(condition, dict) or not isinstance(condition.get("attribute"), str):
            raise InvalidInput(f"Field '{where}' needs an 'attribute' name.", field=where)
        ops = [op for op in OPERATORS if op in condition]
        if len(ops) != 1:
            raise InvalidInput(
                f"Field '{where}' needs exactly one of {', '.join(OPERATORS)}.", field=where
            )
        _check_operand(ops[0], condition[ops[0]], f"{where}.{ops[0]}")
    return list(conditions)


def _check_engagement(condition: dict[str, Any], where: str) -> None:
    campaign = condition["campaign"]
    if isinstance(campaign, bool) or not isinstance(campaign, int) or not 0 < campaign < 2**53:
        raise InvalidInput(
            f"Field '{where}.campaign' must be a campaign id.", field=f"{where}.campaign"
        )
    unknown = sorted(set(condition) - {"campaign", *ENGAGEMENTS})
    if unknown:
        raise InvalidInput(
            f"Field '{where}.{unknown[0]}' is not an engagement; use {', '.join(ENGAGEMENTS)}.",
            field=f"{where}.{unknown[0]}",
        )
    given = [name for name in ENGAGEMENTS if name in condition]
    if not given:
        raise InvalidInput(
            f"Field '{where}' needs at least one of {', '.join(ENGAGEMENTS)}.", field=where
        )
    for name in given:
        if not isinstance(condition[name], bool):
            raise InvalidInput(
                f"Field '{where}.{name}' must be true or false.", field=f"{where}.{name}"
            )


def engagement_conditions(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The follow-up conditions (on another campaign), for the recipient query."""
    return [c for c in conditions if isinstance(c, dict) and "campaign" in c]


def referenced_campaigns(conditions: list[dict[str, Any]]) -> list[int]:
    return sorted({int(c["campaign"]) for c in engagement_conditions(conditions)})


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check_operand(op: str, value: Any, where: str) -> None:
    if op in ("in", "tags"):
        if not isinstance(value, list) or not all(_is_scalar(v) for v in value):
            raise InvalidInput(
                f"Field '{where}' must be a list of strings, numbers or booleans.", field=where
            )
    elif op in ("equals", "not_equals"):
        if value is not None and not _is_scalar(value):
            raise InvalidInput(
                f"Field '{where}' must be a string, a number, a boolean or null.", field=where
            )
    elif op == "range":
        if not (isinstance(value, dict) and value and set(value) <= {"min", "max"}):
            raise InvalidInput(f'Field \'{where}\' must be {{"min"?, "max"?}}.', field=where)
        for bound, number in value.items():
            if number is not None and not _is_number(number):
                raise InvalidInput(
                    f"Field '{where}.{bound}' must be a finite number.", field=f"{where}.{bound}"
                )
    elif not isinstance(value, bool):
        raise InvalidInput(f"Field '{where}' must be true or false.", field=where)


def stored_problem(segment: Any) -> str | None:
    """Why a segment read from the database cannot be used (it predates a check), or None."""
    try:
        validate(segment)
    except InvalidInput as exc:
        return (
            f"The stored segment cannot be used: {exc.message} "
            "Delete the campaign and create it again."
        )
    return None


def _value(contact: dict[str, Any], name: str) -> tuple[bool, Any]:
    if name in ("external_id", "address"):
        return (name in contact), contact.get(name)
    attributes = contact.get("attributes")
    if not isinstance(attributes, dict):
        return False, None
    return (name in attributes), attributes.get(name)


def matches(conditions: list[dict[str, Any]], contact: dict[str, Any]) -> bool:
    """True when the contact meets every condition; one that cannot be evaluated is not met.

    Never raises: a condition stored before its operands were checked, or an attribute
    value of an odd type, simply does not match.
    """
    return all(_met(condition, contact) for condition in conditions)


def _met(condition: Any, contact: dict[str, Any]) -> bool:
    if isinstance(condition, dict) and "campaign" in condition:
        return True  # a follow-up condition: the recipient query has applied it
    if not isinstance(condition, dict) or not isinstance(condition.get("attribute"), str):
        return False
    try:
        return _holds(condition, *_value(contact, condition["attribute"]))
    except (TypeError, ValueError, OverflowError, RecursionError, KeyError, AttributeError):
        return False


def _holds(condition: dict[str, Any], present: bool, value: Any) -> bool:
    if "exists" in condition:
        return present is condition["exists"]
    if not present:
        return False
    if "equals" in condition:
        return bool(value == condition["equals"])
    if "not_equals" in condition:
        return bool(value != condition["not_equals"])
    if "in" in condition:
        return value in condition["in"]
    if "tags" in condition:
        tags = value if isinstance(value, list) else str(value).split(",")
        return set(condition["tags"]) <= {str(t).strip() for t in tags}
    if "range" in condition:
        return _in_range(value, condition["range"])
    return False


def _in_range(value: Any, bounds: dict[str, Any]) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    low, high = bounds.get("min"), bounds.get("max")
    return (low is None or number >= float(low)) and (high is None or number <= float(high))
