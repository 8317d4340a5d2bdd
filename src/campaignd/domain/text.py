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
    """Why a JSON-like value cannot be stored (NUL, lone surrogate, NaN, too deep), or None.

    Walks strings, dict keys and values, and list items without recursion, so a deeply
    nested value is refused rather than overflowing the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            found = UNSTORABLE.search(item)
            if found:
                if found.group() == "\x00":
                    return "contains a NUL character (\\u0000)"
                return "contains a lone surrogate (not valid Unicode)"
        elif isinstance(item, float) and not math.isfinite(item):
            return "contains a number JSON cannot hold (NaN or Infinity)"
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                return f"nests deeper than {max_depth} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def require_storable(value: str, field: str) -> str:
    """`value` itself, or InvalidInput naming `field` when no database could store it."""
    problem = unstorable_problem(value)
    if problem is not None:
        raise InvalidInput(f"Field '{field}' {problem}.", field=field)
    return value
