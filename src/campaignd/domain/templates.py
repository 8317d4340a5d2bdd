"""Message templates: sandboxed Jinja2 over a contact's fields and attributes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from campaignd.domain.errors import InvalidInput

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
MAX_TEMPLATE_CHARS = 100_000
# Variables the sender provides for every message, beside the contact's own fields.
PROVIDED = {"unsubscribe_url": "https://example.invalid/unsubscribe"}


def context_for(contact: dict[str, Any]) -> dict[str, Any]:
    """What a template sees: attributes, then the contact's own fields (which win)."""
    attributes = dict(contact.get("attributes") or {})
    fields = {"external_id": contact["external_id"], "address": contact["address"]}
    return {**attributes, **fields, "contact": {**fields, "attributes": attributes}}


@lru_cache(maxsize=256)
def _compiled(template: str) -> Template:
    return _env.from_string(template)


def render(template: str, contact: dict[str, Any]) -> str:
    """Render for one contact; raises TemplateError (incl. sandbox SecurityError) on failure."""
    return _compiled(template).render(context_for(contact))


def check(template: str, field: str = "message", sample: dict[str, Any] | None = None) -> None:
    """Refuse a template that does not parse, escapes the sandbox, or fails for `sample`."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidInput(
            f"Field '{field}' is longer than {MAX_TEMPLATE_CHARS} characters.", field=field
        )
    try:
        names = meta.find_undeclared_variables(_env.parse(template))
    except TemplateError as exc:
        raise InvalidInput(
            f"Field '{field}' is not a valid template: {exc.message}.",
            field=field,
            line=getattr(exc, "lineno", None),
        ) from None
    # Every variable bound to a harmless string: what fails now is the template's own doing.
    probe = {
        "external_id": "id",
        "address": "a@example.invalid",
        "attributes": dict.fromkeys(names, "x"),
    }
    _try(template, probe, field, "")
    if sample is not None:
        attributes = {**PROVIDED, **(sample.get("attributes") or {})}
        _try(
            template,
            {**sample, "attributes": attributes},
            field,
            f" for contact '{sample['external_id']}'",
        )


def _try(template: str, contact: dict[str, Any], field: str, where: str) -> None:
    try:
        render(template, contact)
    except TemplateError as exc:
        raise InvalidInput(
            f"Field '{field}' cannot be rendered{where}: {str(exc.message).rstrip('.')}.",
            field=field,
        ) from None
    except Exception as exc:  # a template may raise anything from a filter or a test
        raise InvalidInput(
            f"Field '{field}' cannot be rendered{where}: {type(exc).__name__}: {exc}.",
            field=field,
        ) from None
