"""What text may be stored and what may go into a message header."""

from __future__ import annotations

import math
import re
from typing import Any

from campaignd.domain.errors import InvalidInput

# C0 controls and DEL: never part of an id, an address or a header value.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LINE_BREAK = re.compile(r"[\r\n]")
# NUL (PostgreSQL's text refuses it) and lone surrogates (not encodable as UTF-8).
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
MAX_DEPTH = 64


def control_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be an id, address or header value, or None when it can."""
    if LINE_BREAK.search(value):
        return f"{name} contains a line break"
    if CONTROL.search(value):
        return f"{name} contains a control character"
    problem = unstorable_problem(value)
    return f"{name} {problem}" if problem else None


def unstorable_problem(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a JSON-like value cannot be stored (NUL, lone surrogate, NaN, too deep), or None."""
    found = find_unstorable(value, max_depth)
    return found[0] if found else None


def find_unstorable(
    value: Any, max_depth: int = MAX_DEPTH
) -> tuple[str, tuple[str | int, ...]] | None:
    """The first problem unstorable_problem names, with where it is (keys and indexes).

    Walks strings, dict keys and values, and list items without recursion, so a deeply
    nested value is refused rather than overflowing the stack.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        problem = _problem(item)
        if problem is not None:
            return problem, where
        if isinstance(item, (dict, list)):
            if len(where) >= max_depth:
                return f"nests deeper than {max_depth} levels", where
            if isinstance(item, dict):
                for key, child in reversed(item.items()):
                    stack.append((child, (*where, str(key))))
                    stack.append((key, where))  # a key is checked where its dict is
            else:
                stack.extend((child, (*where, i)) for i, child in reversed(list(enumerate(item))))
    return None


def _problem(item: Any) -> str | None:
    if isinstance(item, str):
        found = UNSTORABLE.search(item)
        if found is None:
            return None
        if found.group() == "\x00":
            return "contains a NUL character (\\u0000)"
        return "contains a lone surrogate (not valid Unicode)"
    if isinstance(item, float) and not math.isfinite(item):
        return "contains a number JSON cannot hold (NaN or Infinity)"
    return None


def require_storable(value: str, field: str) -> str:
    """`value` itself, or InvalidInput naming `field` when no database could store it."""
    problem = unstorable_problem(value)
    if problem is not None:
        raise InvalidInput(f"Field '{field}' {problem}.", field=field)
    return value
