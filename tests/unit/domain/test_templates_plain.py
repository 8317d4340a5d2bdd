"""Plain `{{ name }}` templates render without Jinja: the same text or the same error."""

from __future__ import annotations

from typing import Any

import pytest

from campaignd.domain import templates

CONTACTS: list[dict[str, Any]] = [
    {
        "external_id": "e1",
        "address": "a@b.test",
        "attributes": {"name": "Zoë", "age": 3, "score": 1.5, "flag": True, "contact": "x"},
    },
    {"external_id": "e2", "address": "c@d.test", "attributes": {"name": None, "n": [1]}},
    {"external_id": "e3", "address": "e@f.test", "attributes": {"external_id": "not me"}},
    {"external_id": "e4", "address": "g@h.test", "attributes": {"big": "x" * 600_000}},
]
TEMPLATES = [
    "Hello {{ name }}, our sale: https://x.test/a",
    "{{name}}{{ external_id }} {{address}}",
    "{{ age }} {{ score }} {{ flag }}",
    "{{ n }} {{ nothing }}",
    "{{ name|upper }}",
    "{{ contact.address }} {{ contact }}",
    "{% if 1 %}x{% endif %}{# c #}",
    "{{ range }} {{ none }} {{ True }}",
    "}} { {{ name }} }",
    "trailing newline\n",
    "{{ big }}{{ big }}",
]


def _outcome(template: str, contact: dict[str, Any]) -> str:
    try:
        return templates.render(template, contact)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_plain_path_renders_exactly_what_jinja_renders(
    template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = [_outcome(template, contact) for contact in CONTACTS]
    monkeypatch.setattr(templates, "_plain_parts", lambda _template: None)
    assert fast == [_outcome(template, contact) for contact in CONTACTS]


def test_only_text_and_plain_placeholders_take_the_plain_path() -> None:
    assert templates._plain_parts("Hi {{ name }}!") == (("Hi ", "!"), ("name",))
    assert templates._plain_parts("Hi {{ name|upper }}") is None
    assert templates._plain_parts("{% for x in y %}{% endfor %}") is None
    assert templates._plain_parts("{{ range }}") is None
