"""Turning result rows into plain dicts with ISO timestamps; the archived filter of lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from campaignd.store.db import iso


def to_dict(row: Row[Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in row._mapping.items()}


def archived_filter(table: Any, archived: bool) -> Any:
    """Rows archived (True) or in use (False), by the table's `archived_at`."""
    column = table.c.archived_at
    return column.is_not(None) if archived else column.is_(None)
