"""Segments: operand types are checked on the way in; evaluation never raises."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaignd.domain.errors import InvalidInput
from campaignd.domain.segments import matches, stored_problem, validate

GOOD = [
    {"attribute": "tier", "in": ["gold", 1, True]},
    {"attribute": "tags", "tags": ["vip"]},
    {"attribute": "age", "range": {"min": 18, "max": 65.5}},
    {"attribute": "name", "equals": None},
    {"attribute": "name", "not_equals": "x"},
    {"attribute": "email", "exists": True},
]


def test_good_segments_pass_unchanged() -> None:
    assert validate(GOOD) == GOOD
    assert validate({"all": GOOD}) == GOOD
    assert stored_problem(GOOD) is None


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"attribute": "a", "tags": [{"a": 1}]}, "segment[0].tags"),
        ({"attribute": "a", "tags": "vip"}, "segment[0].tags"),
        ({"attribute": "a", "in": [[1]]}, "segment[0].in"),
        ({"attribute": "a", "in": [None]}, "segment[0].in"),
        ({"attribute": "a", "range": {"min": "abc"}}, "segment[0].range.min"),
        ({"attribute": "a", "range": {"max": True}}, "segment[0].range.max"),
        ({"attribute": "a", "range": {"min": 10**400}}, "segment[0].range.min"),
        ({"attribute": "a", "range": {"min": float("nan")}}, "segment[0].range.min"),
        ({"attribute": "a", "range": {}}, "segment[0].range"),
        ({"attribute": "a", "equals": {"x": 1}}, "segment[0].equals"),
        ({"attribute": "a", "not_equals": [1]}, "segment[0].not_equals"),
        ({"attribute": "a", "exists": "yes"}, "segment[0].exists"),
    ],
)
def test_operands_of_the_wrong_type_are_refused_naming_the_field(
    condition: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate([condition])
    assert caught.value.context["field"] == field
    assert field in caught.value.message
    assert field in (stored_problem([condition]) or "")


def test_conditions_that_cannot_be_evaluated_are_not_met() -> None:
    contact = {"id": 1, "external_id": "e", "address": "a", "attributes": {"age": 10**400}}
    assert not matches(
        [{"attribute": "x", "tags": [{"a": 1}]}], {**contact, "attributes": {"x": 1}}
    )
    assert not matches([{"attribute": "age", "range": {"min": "abc"}}], contact)
    assert not matches([{"attribute": "age", "range": {"min": 1}}], contact)  # too big for float
    assert not matches(["not a condition"], contact)  # type: ignore[list-item]
    assert not matches([{"attribute": "a"}], {"attributes": ["not", "a", "dict"]})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
OPERATOR = st.sampled_from(["equals", "not_equals", "in", "range", "exists", "tags", "other"])


@given(
    st.lists(
        st.fixed_dictionaries({"attribute": st.sampled_from(["a", "external_id"])}).flatmap(
            lambda c: st.builds(lambda op, v: {**c, op: v}, OPERATOR, JSON)
        )
        | JSON,
        max_size=3,
    ),
    JSON,
)
def test_matches_is_total_over_any_json(conditions: Any, attribute: Any) -> None:
    contact = {"id": 1, "external_id": "e", "address": "a", "attributes": {"a": attribute}}
    assert matches(conditions, contact) in (True, False)
