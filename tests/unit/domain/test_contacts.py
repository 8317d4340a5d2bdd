"""Contact rows: what import keeps, what it refuses and why, and its limits."""

from __future__ import annotations

import pytest

from campaignd.domain.contacts import MAX_CONTACTS, clean_row, csv_rows, screen
from campaignd.domain.errors import InvalidInput


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"external_id": "a\r\nb", "address": "x"}, "external_id contains a line break"),
        ({"external_id": "a\x00b", "address": "x"}, "external_id contains a control character"),
        ({"external_id": "a\tb", "address": "x"}, "external_id contains a control character"),
        ({"external_id": "a\x7fb", "address": "x"}, "external_id contains a control character"),
        ({"external_id": "a\ud800", "address": "x"}, "external_id contains a lone surrogate"),
        ({"external_id": "a", "address": "x\ny"}, "address contains a line break"),
        ({"external_id": "a", "address": "x\x1fy"}, "address contains a control character"),
        (
            {"external_id": "a", "address": "x", "attributes": {"n": "\x00"}},
            "attributes contains a NUL",
        ),
        (
            {"external_id": "a", "address": "x", "attributes": {"\x00": 1}},
            "attributes contains a NUL",
        ),
        ({"external_id": "a", "address": "x", "city": ["\x00"]}, "attributes contains a NUL"),
        ({"external_id": "a", "address": "x", "n": float("nan")}, "attributes contains a number"),
    ],
)
def test_rows_with_unusable_text_are_refused_with_a_reason(row: dict, reason: str) -> None:  # type: ignore[type-arg]
    contact, why = clean_row(row)
    assert contact is None and why is not None and why.startswith(reason)


def test_text_around_ids_is_trimmed_and_line_breaks_in_attributes_are_kept() -> None:
    contact, why = clean_row({"external_id": " a\n", "address": "x", "name": "A\nB"})
    assert why is None and contact == {
        "external_id": "a",
        "address": "x",
        "attributes": {"name": "A\nB"},
    }


def test_deeply_nested_attributes_are_refused() -> None:
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    contact, why = clean_row({"external_id": "a", "address": "x", "attributes": {"d": deep}})
    assert contact is None and why == "attributes nests deeper than 64 levels"


def test_a_csv_field_over_the_parser_limit_is_a_sentence_naming_the_line() -> None:
    text = "external_id,address\nk1,a\nk2," + "x" * 200_000 + "\nk3,b\n"
    with pytest.raises(InvalidInput) as caught:
        list(csv_rows(text))
    assert caught.value.context == {"field": "body", "line": 3}
    assert "field larger than field limit" in caught.value.message


def test_more_rows_than_the_limit_are_refused_before_anything_is_kept() -> None:
    rows = ((i, {"external_id": str(i), "address": "a"}, None) for i in range(MAX_CONTACTS + 1))
    with pytest.raises(InvalidInput) as caught:
        screen(rows)
    assert caught.value.context["limit"] == MAX_CONTACTS
    kept, report = screen((i, {"external_id": str(i % 3), "address": "a"}, None) for i in range(5))
    assert [c["external_id"] for c in kept] == ["0", "1", "2"] and report.duplicates == 2
