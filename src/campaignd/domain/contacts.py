"""Contact rows from JSON or CSV: what is kept, what is refused and why."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from campaignd.domain.errors import InvalidInput
from campaignd.domain.text import control_problem, unstorable_problem

MAX_CONTACTS = 100_000
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
            # Echoed back as JSON: a lone surrogate would make the response unencodable.
            shown = str(external_id)[:MAX_ID_CHARS]
            entry["external_id"] = shown.encode("utf-8", "replace").decode("utf-8")
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
    problem = control_problem("external_id", external_id)
    if problem is not None:
        return None, problem
    address = raw.get("address")
    if not isinstance(address, (str, int)) or isinstance(address, bool):
        return None, "address is required"
    address = str(address).strip()
    if not address or len(address) > MAX_ADDRESS_CHARS:
        return None, f"address must be 1 to {MAX_ADDRESS_CHARS} characters"
    problem = control_problem("address", address)
    if problem is not None:
        return None, problem
    attributes = raw.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        return None, "attributes must be an object"
    extra = {k: v for k, v in raw.items() if k not in ("external_id", "address", "attributes")}
    attributes = {**extra, **attributes}
    problem = unstorable_problem(attributes)
    if problem is not None:
        return None, f"attributes {problem}"
    return {"external_id": external_id, "address": address, "attributes": attributes}, None


def screen(
    rows: Iterable[tuple[int, Any, str | None]],
) -> tuple[list[dict[str, Any]], ImportReport]:
    """The contacts to store from (index, raw row, problem) rows, and the report of the rest.

    Raises InvalidInput when there are more than MAX_CONTACTS rows: nothing is kept then.
    """
    report = ImportReport()
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    for count, (index, row, problem) in enumerate(rows, start=1):
        if count > MAX_CONTACTS:
            raise too_many()
        if problem is not None or row is None:
            report.reject(index, problem or "unreadable row")
            continue
        contact, reason = clean_row(row)
        if contact is None:
            given = row.get("external_id") if isinstance(row, dict) else None
            report.reject(index, reason or "invalid", given)
            continue
        if contact["external_id"] in seen:
            report.duplicates += 1
            continue
        seen.add(contact["external_id"])
        kept.append(contact)
    return kept, report


def too_many() -> InvalidInput:
    return InvalidInput(
        f"An import holds at most {MAX_CONTACTS:,} contacts; split it into several requests.",
        field="contacts",
        limit=MAX_CONTACTS,
    )


def csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(row number, row, problem) for each data row; extra columns become attributes.

    Raises InvalidInput when the CSV itself cannot be parsed (a field over the parser's
    131,072-character limit): the parser cannot say where such a row ends.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    with _unreadable_as_invalid(reader):
        headers = [h.strip() for h in (reader.fieldnames or [])]
    if "external_id" not in headers or "address" not in headers:
        yield 1, None, "the header row must name external_id and address columns"
        return
    reader.fieldnames = headers
    rows = iter(reader)
    for number in itertools.count(2):
        with _unreadable_as_invalid(reader):
            row = next(rows, None)
        if row is None:
            return
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


@contextlib.contextmanager
def _unreadable_as_invalid(reader: csv.DictReader[str]) -> Iterator[None]:
    try:
        yield
    except csv.Error as exc:
        line = reader.line_num + 1
        raise InvalidInput(
            f"The CSV cannot be read near line {line}: {exc}.", field="body", line=line
        ) from None
