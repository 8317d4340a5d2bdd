"""The template sandbox: ordinary templates render; nothing builds big, runs long or leaks."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from jinja2 import TemplateError

from campaignd.domain import templates
from campaignd.domain.errors import InvalidInput

CONTACT = {
    "external_id": "u1",
    "address": "ann@example.test",
    "attributes": {
        "name": "Ann",
        "items": [3, 1, 2],
        "tree": [{"n": 1, "kids": [{"n": 2, "kids": []}]}],
    },
}
# Over the budget before the fix: each took seconds or gigabytes (in the event loop).
OVER_BUDGET = [
    "{{ 7**10000000 > 1 }}",
    "{{ (10**5000) * (10**5000) }}",
    "{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'x'|indent(1000000000) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ 'ab'|wordwrap(1, wrapstring='x' * 4000000) }}",
    "{{ 'ab'|replace('a', 'a' * 100000)|replace('a', 'a' * 100000) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ (1).to_bytes(1000000000, 'big') }}",
    "{{ [1] * 10**8 }}",
    "{{ items|tojson(indent=1000000000) }}",
    "{{ range(10)|batch(1000000000, 0)|list }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}",
    "{% for i in range(20000) %}{{ 'x' * 100 }}{% endfor %}",
    "{% set big = 'x' * 4000000 %}{% for i in range(20000) %}{{ 'y' in big }}{% endfor %}",
]


def render(template: str, **attributes: Any) -> str:
    contact = {**CONTACT, "attributes": {**CONTACT["attributes"], **attributes}}
    return templates.render(template, contact)


@pytest.mark.parametrize("template", OVER_BUDGET)
def test_over_the_budget_fails_fast_with_a_reason(template: str) -> None:
    started = time.perf_counter()
    with pytest.raises(templates.OverBudget, match="over the render budget"):
        render(template)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("template", OVER_BUDGET[:4])
def test_check_refuses_over_the_budget_naming_the_field(template: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        templates.check(template, "subject")
    assert refused.value.context["field"] == "subject"
    assert refused.value.message.startswith("Field 'subject' cannot be rendered: over the render")


def test_lipsum_is_gone() -> None:
    with pytest.raises(TemplateError, match="lipsum"):
        render("{{ lipsum(n=20000) }}")


def test_the_budget_is_per_render() -> None:
    almost = "{% for i in range(20000) %}{{ i % 10 }}{% endfor %}"
    for _ in range(3):
        assert len(render(almost)) == 20000


def test_one_contacts_data_goes_over_the_budget_alone() -> None:
    template = "{% for a in note %}{% for b in note %}{% for c in note %}{% endfor %}{% endfor %}{% endfor %}ok"
    assert render(template, note="abc") == "ok"
    with pytest.raises(templates.OverBudget, match="steps"):
        render(template, note="n" * 300)


@pytest.mark.parametrize(
    "template",
    [
        "{{ {}.update }}",
        "{{ {}.keys|string }}",
        "{{ [{}.keys] }}",
        "{{ {}|attr('keys')|string }}",
        "{{ items|map('string') }}",
        "{{ items|reverse|string }}",
        "{{ cycler(1, 2) }}",
        "{{ joiner()|string }}",
        "{{ range|string }}",
        "{{ '%r' % {}.keys }}",
        "{{ {}.keys ~ '' }}",
    ],
)
def test_no_memory_address_is_ever_printed(template: str) -> None:
    try:
        output = render(template)
    except TemplateError as exc:
        output = str(exc)
    assert not re.search(r"0x[0-9a-fA-F]{4,}", output), output


def test_printing_a_method_is_an_error() -> None:
    with pytest.raises(TemplateError, match="cannot print"):
        render("{{ {}.update }}")
    with pytest.raises(InvalidInput, match="Field 'message' cannot be rendered: cannot print"):
        templates.check("{{ ''.upper }}")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hi {{ name }} <{{ address }}>", "Hi Ann <ann@example.test>"),
        ("{{ contact.attributes.name|upper }} {{ external_id }}", "ANN u1"),
        (
            "{% for i in items|sort %}{{ loop.index }}:{{ i }}{% if not loop.last %},{% endif %}"
            "{% endfor %}",
            "1:1,2:2,3:3",
        ),
        ("{{ items|join('-') }} {{ items|sum }} {{ items|map('string')|join }}", "3-1-2 6 312"),
        ("{{ '%s has %d' % (name, 3) }} {{ '{} {}'.format(name, 2) }}", "Ann has 3 Ann 2"),
        (
            "{{ name ~ '!' }} {{ 'ab' * 2 }} {{ 2 ** 10 }} {{ 6 * 7 }} {{ [1] + [2] }}",
            "Ann! abab 1024 42 [1, 2]",
        ),
        (
            "{{ name|center(7) }}|{{ 'a b c'|wordwrap(3) }}|{{ 'x'|indent(2, true) }}",
            "  Ann  |a b\nc|  x",
        ),
        ("{% macro hi(n) %}Hi {{ n }}{% endmacro %}{{ hi(name) }}", "Hi Ann"),
        ("{% for t in tree recursive %}{{ t.n }}{{ loop(t.kids) }}{% endfor %}", "12"),
        ("{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}", "ab"),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "10",
        ),
        ("{{ dict(a=1) }} {{ 'a,b'.split(',') }} {{ 'x'.ljust(3) }}|", "{'a': 1} ['a', 'b'] x  |"),
    ],
)
def test_ordinary_templates_still_render(template: str, expected: str) -> None:
    assert render(template) == expected


def test_preview_and_check_see_every_variable_the_sender_provides() -> None:
    contact = {"external_id": "s", "address": "s@example.test", "attributes": {}}
    for name in templates.PROVIDED:
        templates.check(f"{{{{ {name} }}}}", "message", contact)
        assert templates.preview(f"{{{{ {name} }}}}", contact) == templates.PROVIDED[name]
