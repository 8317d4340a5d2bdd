"""Journeys' pure rules: templates compiled once, the JSON path subset, extraction, checks."""

from __future__ import annotations

import random

import pytest

from campaignd.domain.journeys import (
    MISSING,
    JourneyError,
    Scope,
    TemplateFailure,
    compile_body,
    compile_steps,
    compile_template,
    escape_header_value,
    escape_path_value,
    parse_json_path,
)


def _scope(**vars: object) -> Scope:
    scope = Scope(3, {"email": "ann@example.com", "n": 7}, random.Random(1))
    scope.vars = dict(vars)
    scope.iteration = 2
    return scope


def test_simple_placeholders_render_without_jinja() -> None:
    template = compile_template("/u/{{ user.index }}/{{ iteration }}/{{ data.email }}/{{ token }}")
    assert all(isinstance(p, str) or p.__name__ == "<lambda>" for p in template.parts)
    assert template.render(_scope(token="t1")) == "/u/3/2/ann@example.com/t1"
    assert template.names == {"user", "iteration", "data", "token"}
    low_high = compile_template("{{ random_int(5, 6) }}")
    scope = _scope()
    assert {low_high.render(scope) for _ in range(50)} == {"5", "6"}
    assert len(compile_template("{{ uuid() }}").render(_scope())) == 36


def test_anything_else_renders_in_the_bounded_sandbox() -> None:
    template = compile_template("{{ data.email | upper }}-{{ token ~ 'x' }}")
    assert template.render(_scope(token="t")) == "ANN@EXAMPLE.COM-tx"
    with pytest.raises(TemplateFailure, match="budget"):
        compile_template(
            "{% for i in range(99999) %}{% for j in range(99) %}{{ j }}{% endfor %}{% endfor %}"
        ).render(_scope())
    with pytest.raises(TemplateFailure, match="no value"):
        compile_template("{{ token }}").render(_scope())


def test_values_are_escaped_for_where_they_go() -> None:
    path = compile_template("/q?x={{ v }}", escape_path_value)
    assert path.render(_scope(v="a b\r\n#")) == "/q?x=a%20b%0D%0A%23"
    header = compile_template("Bearer {{ v }}", escape_header_value)
    with pytest.raises(TemplateFailure, match="line break"):
        header.render(_scope(v="x\r\nEvil: 1"))


def test_json_bodies_put_rendered_text_in_json_strings() -> None:
    body = compile_body({"email": "{{ data.email }}", "quote": "{{ v }}", "n": 1})
    assert body is not None and body.constant is None
    assert body.render(_scope(v='a"b')) == b'{"email": "ann@example.com", "quote": "a\\"b", "n": 1}'
    constant = compile_body({"a": [1, 2]})
    assert constant is not None and constant.constant == b'{"a": [1, 2]}'


@pytest.mark.parametrize(
    ("path", "document", "value"),
    [
        ("$.a.b", {"a": {"b": 1}}, 1),
        ("$.items[0].id", {"items": [{"id": "x"}]}, "x"),
        ("$.items[-1]", {"items": [1, 2, 3]}, 3),
        ("$['a b'][\"c\"]", {"a b": {"c": True}}, True),
        ("$.missing", {"a": 1}, MISSING),
        ("$.a[5]", {"a": [1]}, MISSING),
        ("$", [1], [1]),
    ],
)
def test_json_path_subset(path: str, document: object, value: object) -> None:
    assert parse_json_path(path).find(document) == value or value is MISSING


@pytest.mark.parametrize("bad", ["a.b", "$..a", "$.a[*]", "$[?(@.x)]", "$.a."])
def test_unknown_json_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_json_path(bad)


def test_checks_extractions_and_needs_are_worked_out_once() -> None:
    (step,) = compile_steps(
        [
            {
                "name": "s",
                "path": "/",
                "extract": {
                    "t": {"json": "$.token"},
                    "id": {"regex": "id=(\\d+)"},
                    "loc": {"header": "Location"},
                },
                "checks": [
                    {"status": 200},
                    {"json": "$.ok", "equals": True},
                    {"json": "$.n", "equals": 1},
                    {"body_contains": "id="},
                ],
            }
        ]
    )
    assert step.needs_json and step.needs_body and step.wanted_headers == {"location"}
    doc = {"token": "abc", "ok": 1, "n": 1.0}
    body = b'{"token": "abc"} id=42'
    assert [c.holds(200, body, doc) for c in step.checks] == [True, False, True, True]
    assert [c.name for c in step.checks] == [
        "status is 200",
        "$.ok == true",
        "$.n == 1",
        'body contains "id="',
    ]
    values = [r.apply({"location": "/x"}, body, doc) for r in step.extract]
    assert values == ["abc", "42", "/x"]


def test_a_step_that_only_reads_the_status_needs_no_body() -> None:
    (step,) = compile_steps([{"name": "s", "path": "/", "checks": [{"status": 204}]}])
    assert not step.needs_body and not step.needs_json


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"name": "a", "path": "/{{ x }}"}], "steps[0].path"),
        (
            [{"name": "a", "path": "/", "extract": {"user": {"json": "$.a"}}}],
            "steps[0].extract.user",
        ),
        (
            [{"name": "a", "path": "/", "extract": {"v": {"json": "$.a", "regex": "x"}}}],
            "steps[0].extract.v",
        ),
        ([{"name": "a", "path": "/", "checks": [{"status": 99}]}], "steps[0].checks[0].status"),
        (
            [{"name": "a", "path": "/", "checks": [{"body_contains": ""}]}],
            "steps[0].checks[0].body_contains",
        ),
        ([{"name": "a", "path": "/"}, {"name": "a", "path": "/"}], "steps[1].name"),
        ([{"name": "a", "path": "/{{ random_int(9, 1) }}"}], "steps[0].path"),
        ([{"name": "a", "path": "/{% if %}"}], "steps[0].path"),
        ([{"name": "a", "path": "/", "body": "{{ ''.__class__ }}"}], "steps[0].body"),
    ],
)
def test_problems_name_the_step_and_field(steps: list[dict[str, object]], field: str) -> None:
    with pytest.raises(JourneyError) as caught:
        compile_steps(steps)
    assert caught.value.context["field"] == field
    assert caught.value.context["step"] == steps[-1]["name"]


def test_a_variable_is_known_only_after_the_step_that_extracts_it() -> None:
    steps = [
        {"name": "a", "path": "/", "extract": {"t": {"json": "$.t"}}},
        {"name": "b", "path": "/{{ t }}", "headers": {"X": "{{ t | length }}"}},
    ]
    compiled = compile_steps(steps)
    assert compiled[1].path.names == {"t"}
    with pytest.raises(JourneyError, match="steps\\[0\\]"):
        compile_steps(list(reversed(steps)))
