"""Recognising a database that cannot be reached, as opposed to a query that is wrong."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLSTATE classes that mean "the server is not there right now": 08 connection exceptions,
# 57P01-57P03 admin shutdown, crash shutdown, cannot connect now.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")
_UNAVAILABLE_WORDS = ("connection", "shutting down", "starting up", "closed", "terminat")


def is_unavailable(exc: BaseException) -> bool:
    """True when the error means the database is down or unreachable (retry later)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        original = exc.orig
        state = str(getattr(original, "sqlstate", "") or "")
        if state.startswith(_UNAVAILABLE_STATES):
            return True
        if isinstance(original, (ConnectionError, OSError)):
            return True
        text = f"{type(original).__name__} {original}".lower()
        return any(word in text for word in _UNAVAILABLE_WORDS)
    return isinstance(exc, (ConnectionError, OSError, TimeoutError))
