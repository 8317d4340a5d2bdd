"""Schema errors in the words a person uses: "Name cannot be blank.", not validator text.

Every 422 body keeps its `field` (the API's name for it) and `details`; only the sentence
changes, from "String should have at least 1 character" to what a form would say.
"""

from __future__ import annotations

from typing import Any

# The API's field names as an operator reads them (the UI shows the same labels).
LABELS = {
    "name": "Name",
    "target_url": "Target URL",
    "user_profile_ids": "User profiles",
    "requests_per_minute": "Requests per minute",
    "duration_minutes": "Duration",
    "total_users": "Virtual users",
    "request_timeout_seconds": "Request timeout",
    "stages": "Stages",
    "requests": "Requests",
    "method": "Method",
    "path": "Path",
    "weight": "Weight",
    "headers": "Headers",
    "body": "Body",
    "think_time_ms": "Think time",
    "account_id": "Account",
    "audience_id": "Audience",
    "message": "Message",
    "subject": "Subject",
    "limit": "Limit",
    "rate_per_minute": "Rate",
    "segment": "Segment",
    "variants": "Variants",
    "ab_test": "A/B test",
    "sample_percent": "Sample share",
    "metric": "Metric",
    "wait_minutes": "Wait",
    "start_at": "Start at",
    "send_window": "Send window",
    "max_consecutive_failures": "Failures in a row before pausing",
    "channel": "Channel",
    "config": "Settings",
    "contacts": "Contacts",
    "address": "Address",
    "external_id": "External id",
    "status": "Status",
    "campaign_id": "Campaign",
    "addresses": "Addresses",
    "kind": "Kind",
}

ITEM_NAMES = {"requests": "Request", "stages": "Stage", "variants": "Variant"}

PATTERN_HINTS = {
    "target_url": "must be a web address starting with http:// or https:// and a host, "
    "like http://127.0.0.1:9000",
}


def label(field: str) -> str:
    """'requests.1.path' -> 'Request 2: path'; 'target_url' -> 'Target URL'."""
    parts = field.split(".")
    words: list[str] = []
    index = 0
    while index < len(parts):
        part = parts[index]
        following = parts[index + 1] if index + 1 < len(parts) else None
        if part in ITEM_NAMES and following is not None and following.isdigit():
            words.append(f"{ITEM_NAMES[part]} {int(following) + 1}")
            index += 2
            continue
        if not part.isdigit():
            words.append(LABELS.get(part, part.replace("_", " ")))
        index += 1
    if not words:
        return "The request body"
    text = ": ".join([words[0], *(w.lower() for w in words[1:])])
    return text[:1].upper() + text[1:]


def _count(n: Any, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def sentence(field: str, kind: str, message: str, ctx: dict[str, Any]) -> str:
    """One schema error as a sentence a form can show beside the field."""
    what = label(field)
    last = field.rsplit(".", 1)[-1]
    if kind == "blank":
        return message
    if kind == "missing":
        return f"{what} is required."
    if kind == "string_too_short":
        if ctx.get("min_length", 1) <= 1:
            return f"{what} cannot be blank."
        return f"{what} needs at least {_count(ctx['min_length'], 'character', 'characters')}."
    if kind == "string_too_long":
        return f"{what} may have at most {_count(ctx['max_length'], 'character', 'characters')}."
    if kind == "string_pattern_mismatch":
        return f"{what} {PATTERN_HINTS.get(last, 'is not in the expected form')}."
    if kind == "too_short":
        if last == "user_profile_ids":
            return "Choose at least one user profile."
        return f"{what} needs at least {_count(ctx.get('min_length', 1), 'item', 'items')}."
    if kind == "too_long":
        return f"{what} may have at most {_count(ctx.get('max_length'), 'item', 'items')}."
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {
            "greater_than": ("more than", "gt"),
            "greater_than_equal": ("at least", "ge"),
            "less_than": ("less than", "lt"),
            "less_than_equal": ("at most", "le"),
        }[kind]
        value = ctx.get(bound[1])
        shown = f"{value:,g}" if isinstance(value, (int, float)) else value
        return f"{what} must be {bound[0]} {shown}."
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{what} must be a whole number."
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"{what} must be a number."
    if kind in ("bool_parsing", "bool_type"):
        return f"{what} must be yes or no (true or false)."
    if kind in ("string_type", "string_unicode"):
        return f"{what} must be text."
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{what} must be an object of named values."
    if kind == "list_type":
        return f"{what} must be a list."
    if kind in ("datetime_parsing", "datetime_type", "datetime_from_date_parsing"):
        return f"{what} must be a date and time, like 2030-01-31T09:00:00Z."
    if kind in ("literal_error", "enum"):
        return f"{what} must be one of {ctx.get('expected', 'the listed values')}."
    if kind == "extra_forbidden":
        return f"{what} is not a setting this accepts."
    if kind == "json_invalid":
        return f"The body is not valid JSON ({ctx.get('error', 'cannot be read')})."
    text = message.removeprefix("Value error, ").removeprefix("Assertion failed, ").rstrip(".")
    if field == "body":
        return text[:1].upper() + text[1:] + "."
    return f"{what}: {text}."
