"""Contact rows from JSON or CSV: what is kept, what is refused and why."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_ID_CHARS = 200
MAX_ADDRESS_CHARS = 500


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, reason: str, external_id: Any = None) -> None:
        entry: dict[str, Any] = {"index": index, "reason": reason}
        if external_id not in (None, ""):
            entry["external_id"] = str(external_id)[:MAX_ID_CHARS]
        self.rejected.append(entry)


def clean_row(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A contact ready to store, or None with the reason it is refused."""
    if not isinstance(raw, dict):
        return None, "a contact must be an object"
    external_id = raw.get("external_id")
    if isinstance(external_id, bool) or not isinstance(external_id, (str, int)):
        return None, "external_id is required (a string or an integer)"
    external_id = str(external_id).strip()
    if not external_id or len(external_id) > MAX_ID_CHARS:
        return None, f"external_id must be 1 to {MAX_ID_CHARS} characters"
    address = raw.get("address")
    if not isinstance(address, (str, int)) or isinstance(address, bool):
        return None, "address is required"
    address = str(address).strip()
    if not address or len(address) > MAX_ADDRESS_CHARS:
        return None, f"address must be 1 to {MAX_ADDRESS_CHARS} characters"
    if any(c in address for c in "\r\n\x00"):
        return None, "address must not contain line breaks"
    attributes = raw.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        return None, "attributes must be an object"
    extra = {k: v for k, v in raw.items() if k not in ("external_id", "address", "attributes")}
    return {
        "external_id": external_id,
        "address": address,
        "attributes": {**extra, **attributes},
    }, None


def csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(row number, row, problem) for each data row; extra columns become attributes."""
    reader = csv.DictReader(io.StringIO(text))
    headers = [h.strip() for h in (reader.fieldnames or [])]
    if "external_id" not in headers or "address" not in headers:
        yield 1, None, "the header row must name external_id and address columns"
        return
    reader.fieldnames = headers
    for number, row in enumerate(reader, start=2):
        if None in row:
            yield number, None, "more fields than the header names"
            continue
        values = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        attributes = {k: v for k, v in values.items() if k not in ("external_id", "address") and v}
        yield (
            number,
            {**{k: values.get(k) for k in ("external_id", "address")}, "attributes": attributes},
            None,
        )
