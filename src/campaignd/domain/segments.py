"""Segments: filters over a contact's attributes, evaluated without I/O."""

from __future__ import annotations

from typing import Any

from campaignd.domain.errors import InvalidInput

OPERATORS = ("equals", "not_equals", "in", "range", "exists", "tags")


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
        if not isinstance(condition, dict) or not isinstance(condition.get("attribute"), str):
            raise InvalidInput(f"Field '{where}' needs an 'attribute' name.", field=where)
        ops = [op for op in OPERATORS if op in condition]
        if len(ops) != 1:
            raise InvalidInput(
                f"Field '{where}' needs exactly one of {', '.join(OPERATORS)}.", field=where
            )
        op = ops[0]
        value = condition[op]
        if op in ("in", "tags") and not isinstance(value, list):
            raise InvalidInput(f"Field '{where}.{op}' must be a list.", field=where)
        if op == "range" and not (
            isinstance(value, dict) and set(value) <= {"min", "max"} and value
        ):
            raise InvalidInput(f'Field \'{where}.range\' must be {{"min"?, "max"?}}.', field=where)
        if op == "exists" and not isinstance(value, bool):
            raise InvalidInput(f"Field '{where}.exists' must be true or false.", field=where)
    return list(conditions)


def _value(contact: dict[str, Any], name: str) -> tuple[bool, Any]:
    if name in ("external_id", "address"):
        return True, contact[name]
    attributes = contact.get("attributes") or {}
    return (name in attributes), attributes.get(name)


def matches(conditions: list[dict[str, Any]], contact: dict[str, Any]) -> bool:
    """True when the contact meets every condition."""
    return all(
        _holds(condition, *_value(contact, condition["attribute"])) for condition in conditions
    )


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
    return _in_range(value, condition["range"])


def _in_range(value: Any, bounds: dict[str, Any]) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    low, high = bounds.get("min"), bounds.get("max")
    return (low is None or number >= float(low)) and (high is None or number <= float(high))
