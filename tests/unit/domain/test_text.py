"""Text no database stores, and text no header takes, found with where it is."""

from __future__ import annotations

from campaignd.domain.text import control_problem, find_unstorable


def test_the_first_unstorable_value_is_found_with_its_place() -> None:
    assert find_unstorable({"a": [1, {"b": "x\x00"}]}) == (
        "contains a NUL character (\\u0000)",
        ("a", 1, "b"),
    )
    assert find_unstorable({"k\ud800": 1}) == ("contains a lone surrogate (not valid Unicode)", ())
    assert find_unstorable([1.5, float("inf")]) == (
        "contains a number JSON cannot hold (NaN or Infinity)",
        (1,),
    )
    assert find_unstorable({"fine": ["text", 1, None, True, {"é": "ü"}]}) is None


def test_depth_is_bounded_without_recursion() -> None:
    deep: object = "x"
    for _ in range(100_000):
        deep = [deep]
    found = find_unstorable(deep)
    assert found is not None and found[0] == "nests deeper than 64 levels"


def test_header_values_refuse_line_breaks_and_control_characters() -> None:
    assert control_problem("subject", "Hi\r\nBcc: x") == "subject contains a line break"
    assert control_problem("subject", "Hi\tthere") == "subject contains a control character"
    assert control_problem("subject", "Hi\x7f") == "subject contains a control character"
    assert control_problem("subject", "Héllo ✓") is None
