"""Journeys: the pure rules of scripted virtual users.

A profile's `steps` compile once into `CompiledStep`s: templates split into literal text and
getters, JSON paths into key tuples, extraction and check rules into small objects. Simple
placeholders (`{{ token }}`, `{{ data.email }}`, `{{ user.index }}`, `{{ iteration }}`,
`{{ random_int(1, 9) }}`, `{{ uuid() }}`) render without Jinja; anything else renders in the
bounded sandbox of `domain/templates.py`. Every error a profile could meet at run time from
its own text (syntax, unknown variable, bad JSON path or regex) is found here, when it is
saved, and named by step and field.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from jinja2 import Template as JinjaTemplate
from jinja2 import TemplateError

from campaignd.domain import templates
from campaignd.domain.errors import InvalidInput
from campaignd.domain.http_rules import HttpRuleError, normalize_path

MAX_REGEX_CHARS = 1000
# Only this much of a response body is kept for extraction and checks.
MAX_BODY_BYTES = 1_048_576
BUILTINS = frozenset({"data", "user", "iteration", "random_int", "uuid"})
_MARK = "@@campaignd-template-{}@@"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"{{\s*(.*?)\s*}}", re.S)
_VAR = re.compile(rf"^{_IDENT}$")
_DATA = re.compile(rf"^data\.({_IDENT})$")
_RANDOM_INT = re.compile(r"^random_int\(\s*(-?\d{1,18})\s*,\s*(-?\d{1,18})\s*\)$")
_UUID = re.compile(r"^uuid\(\s*\)$")
_JSON_PATH_PART = re.compile(
    rf"\.({_IDENT}|[0-9]+)|\[\s*(-?\d+)\s*\]|\[\s*'((?:[^'\\]|\\.)*)'\s*\]"
    rf'|\[\s*"((?:[^"\\]|\\.)*)"\s*\]'
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# A value put into a path is percent-encoded, but keeps what a path or query legally holds.
_PATH_SAFE = "/:@!$&'()*+,;=?~-._%"
MISSING: Any = object()


class JourneyError(InvalidInput):
    """Raised when a step cannot be compiled: names the step and the field (422)."""


class TemplateFailure(Exception):
    """Raised at run time when a template cannot be rendered for this user (counted, never
    fatal): a variable missing, the sandbox budget spent, a header value with a line break."""


# ---------------------------------------------------------------------------------------
# JSON path subset: $, .key, [0], [-1], ['key'], ["key"]
@dataclass(frozen=True, slots=True)
class JsonPath:
    text: str
    keys: tuple[str | int, ...]

    def find(self, document: Any) -> Any:
        """The value at this path, or MISSING."""
        value = document
        for key in self.keys:
            if isinstance(key, int):
                if not isinstance(value, list) or not -len(value) <= key < len(value):
                    return MISSING
                value = value[key]
            elif isinstance(value, dict) and key in value:
                value = value[key]
            else:
                return MISSING
        return value


def parse_json_path(text: str) -> JsonPath:
    """`$.a.b[0]['c d']` → JsonPath; ValueError says what is wrong."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise ValueError("a JSON path starts with '$', e.g. $.data.token")
    keys: list[str | int] = []
    position = 1
    while position < len(text):
        match = _JSON_PATH_PART.match(text, position)
        if match is None:
            raise ValueError(
                f"cannot read the JSON path at '{text[position:]}' (this subset knows "
                "$, .key, [0], [-1] and ['key'])"
            )
        dotted, index, single, double = match.groups()
        if dotted is not None:
            keys.append(dotted)
        elif index is not None:
            keys.append(int(index))
        else:
            quoted = single if single is not None else double
            keys.append(re.sub(r"\\(.)", r"\1", quoted))
        position = match.end()
    return JsonPath(text, tuple(keys))


# ---------------------------------------------------------------------------------------
# Templates
class Scope:
    """What one virtual user's templates see; the user's own state, changed in place."""

    __slots__ = ("data", "iteration", "rng", "user_index", "vars")

    def __init__(
        self, user_index: int, data: Mapping[str, Any], rng: random.Random | None = None
    ) -> None:
        self.user_index = user_index
        self.iteration = 0
        self.data = data
        self.vars: dict[str, Any] = {}
        self.rng = rng or random.Random()

    def context(self) -> dict[str, Any]:
        """The sandbox's view: extracted variables, then the built-ins (which win)."""
        return {
            **self.vars,
            "data": dict(self.data),
            "user": {"index": self.user_index},
            "iteration": self.iteration,
            "random_int": self.rng.randint,
            "uuid": _uuid,
        }


def _uuid() -> str:
    return str(uuid.uuid4())


def as_text(value: Any) -> str:
    """How an extracted or data value prints: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"))


Getter = Callable[[Scope], str]
Escape = Callable[[str], str]


def escape_path_value(value: str) -> str:
    return quote(value, safe=_PATH_SAFE)


def escape_header_value(value: str) -> str:
    if _CONTROL.search(value):
        raise TemplateFailure("a header value would hold a line break or control character")
    return value.strip(" \t")


def _plain(value: str) -> str:
    return value


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template: literal parts and getters, joined per render."""

    text: str
    parts: tuple[str | Getter, ...]
    names: frozenset[str]

    @property
    def constant(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def render(self, scope: Scope) -> str:
        try:
            return "".join([p if p.__class__ is str else p(scope) for p in self.parts])  # type: ignore[operator]
        except TemplateFailure:
            raise
        except KeyError as exc:
            raise TemplateFailure(f"'{exc.args[0]}' has no value for this user") from None
        except TemplateError as exc:
            raise TemplateFailure(str(exc.message)) from None
        except Exception as exc:  # a filter of a sandboxed template may raise anything
            raise TemplateFailure(f"{type(exc).__name__}: {exc}") from None


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def _fast_getter(expression: str) -> tuple[Getter, str] | None:
    """A Jinja-free getter for the simple placeholders, and the name it reads."""
    if expression == "iteration":
        return (lambda s: str(s.iteration)), "iteration"
    if expression == "user.index":
        return (lambda s: str(s.user_index)), "user"
    match = _DATA.match(expression)
    if match:
        column = match[1]
        return (lambda s: as_text(s.data[column])), "data"
    match = _RANDOM_INT.match(expression)
    if match:
        low, high = int(match[1]), int(match[2])
        if low > high:
            raise ValueError(f"random_int({low}, {high}) needs its first bound <= its second")
        return (lambda s: str(s.rng.randint(low, high))), "random_int"
    if _UUID.match(expression):
        return (lambda s: _uuid()), "uuid"
    if _VAR.match(expression) and expression not in BUILTINS:
        name = expression
        return (lambda s: as_text(s.vars[name])), name
    return None


def _escaped(getter: Getter, escape: Escape) -> Getter:
    if escape is _plain:
        return getter
    return lambda s: escape(getter(s))


def _sandboxed(compiled: JinjaTemplate) -> Getter:
    return lambda s: templates.render_context(compiled, s.context())


def compile_template(text: str, escape: Escape = _plain) -> Template:
    """Compile once: literal text and fast getters, or the whole text in the sandbox.

    Raises ValueError (bad bounds) or TemplateError (syntax, sandbox) for the caller to name.
    """
    if not is_template(text):
        return Template(text, (text,), frozenset())
    parts: list[str | Getter] = []
    names: set[str] = set()
    fast = "{%" not in text and "{#" not in text
    if fast:
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            found = _fast_getter(match[1])
            if found is None:
                fast = False
                break
            getter, name = found
            if match.start() > position:
                parts.append(text[position : match.start()])
            parts.append(_escaped(getter, escape))
            names.add(name)
            position = match.end()
        else:
            if position < len(text):
                parts.append(text[position:])
            if "{{" in "".join(p for p in parts if isinstance(p, str)):
                fast = False  # an unclosed placeholder: let Jinja say what is wrong
    if not fast:
        compiled = templates.compile_sandboxed(text)
        names = templates.undeclared_names(text)
        parts = [_escaped(_sandboxed(compiled), escape)]
    return Template(text, tuple(parts), frozenset(names))


# ---------------------------------------------------------------------------------------
# Extraction and checks
@dataclass(frozen=True, slots=True)
class ExtractRule:
    var: str
    kind: str  # json | regex | header
    source: str
    path: JsonPath | None = None
    pattern: re.Pattern[str] | None = None

    def apply(self, headers: Mapping[str, str], body: bytes, document: Any) -> Any:
        """The extracted value, or MISSING."""
        if self.kind == "json":
            assert self.path is not None
            if document is MISSING:
                return MISSING
            value = self.path.find(document)
            return MISSING if value is None else value
        if self.kind == "header":
            return headers.get(self.source.lower(), MISSING)
        assert self.pattern is not None
        match = self.pattern.search(body.decode("utf-8", "replace"))
        if match is None:
            return MISSING
        return match.group(1) if self.pattern.groups else match.group(0)


@dataclass(frozen=True, slots=True)
class CheckRule:
    name: str
    kind: str  # status | json | body_contains
    status: int = 0
    path: JsonPath | None = None
    expected: Any = MISSING
    needle: bytes = b""

    def holds(self, status: int, body: bytes, document: Any) -> bool:
        if self.kind == "status":
            return status == self.status
        if self.kind == "body_contains":
            return status != 0 and self.needle in body
        assert self.path is not None
        if document is MISSING:
            return False
        value = self.path.find(document)
        if self.expected is MISSING:
            return value is not MISSING and value is not None
        return same_json(value, self.expected)


def same_json(left: Any, right: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return bool(left == right)


def check_name(rule: Mapping[str, Any]) -> str:
    if rule.get("name"):
        return str(rule["name"])
    if "status" in rule:
        return f"status is {rule['status']}"
    if "body_contains" in rule:
        return f"body contains {json.dumps(rule['body_contains'])}"
    if "equals" in rule:
        return f"{rule['json']} == {json.dumps(rule['equals'])}"
    return f"{rule['json']} exists"


# ---------------------------------------------------------------------------------------
# Bodies
@dataclass(frozen=True, slots=True)
class BodyTemplate:
    """A request body: constant bytes, or parts with templated strings (JSON-encoded when the
    body is JSON)."""

    parts: tuple[bytes | Template, ...]
    json_strings: bool
    names: frozenset[str]

    @property
    def constant(self) -> bytes | None:
        if all(isinstance(p, bytes) for p in self.parts):
            return b"".join(p for p in self.parts if isinstance(p, bytes))
        return None

    def render(self, scope: Scope) -> bytes:
        out: list[bytes] = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
            elif self.json_strings:
                out.append(json.dumps(part.render(scope)).encode())
            else:
                out.append(part.render(scope).encode())
        return b"".join(out)


def compile_body(body: Any) -> BodyTemplate | None:
    if body is None:
        return None
    if isinstance(body, str):
        template = compile_template(body)
        part: bytes | Template = body.encode() if template.constant else template
        return BodyTemplate((part,), False, template.names)
    found: list[Template] = []

    def mark(value: Any) -> Any:
        if isinstance(value, str) and is_template(value):
            found.append(compile_template(value))
            return _MARK.format(len(found) - 1)
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    encoded = json.dumps(mark(body))
    parts: list[bytes | Template] = []
    names: set[str] = set()
    position = 0
    for index, template in enumerate(found):
        marker = json.dumps(_MARK.format(index))
        at = encoded.index(marker, position)
        parts.append(encoded[position:at].encode())
        parts.append(template)
        names |= template.names
        position = at + len(marker)
    parts.append(encoded[position:].encode())
    return BodyTemplate(tuple(p for p in parts if p != b""), True, frozenset(names))


# ---------------------------------------------------------------------------------------
# Steps
@dataclass(frozen=True, slots=True)
class CompiledStep:
    index: int
    name: str
    method: str
    path: Template
    headers: tuple[tuple[str, Template], ...]
    body: BodyTemplate | None
    extract: tuple[ExtractRule, ...]
    checks: tuple[CheckRule, ...]
    think: tuple[float, float] | None  # seconds, [low, high]

    # Worked out once: read for every response.
    needs_json: bool = False
    needs_body: bool = False
    wanted_headers: frozenset[str] = frozenset()


def _think(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (value / 1000.0, value / 1000.0)
    low, high = value
    return (low / 1000.0, high / 1000.0)


class _StepCompiler:
    def __init__(self, index: int, step: Mapping[str, Any], data: Sequence[Mapping[str, Any]]):
        self.index = index
        self.name = str(step.get("name") or f"step {index + 1}")
        self.step = step
        self.data = data

    def fail(self, field: str, problem: str) -> JourneyError:
        where = f"steps[{self.index}].{field}"
        return JourneyError(
            f"Step '{self.name}' ({where}): {problem.rstrip('.')}.",
            step=self.name,
            field=where,
        )

    def template(self, field: str, text: str, known: set[str], escape: Escape) -> Template:
        try:
            template = compile_template(text, escape)
        except TemplateError as exc:
            raise self.fail(field, f"not a valid template: {exc.message}") from None
        except ValueError as exc:
            raise self.fail(field, str(exc)) from None
        self.check_names(field, template.names, known)
        return template

    def check_names(self, field: str, names: frozenset[str] | set[str], known: set[str]) -> None:
        for name in sorted(names):
            if name in BUILTINS or name in known:
                continue
            raise self.fail(
                field,
                f"uses '{name}', which no earlier step extracts (known: "
                f"{', '.join(sorted(known | BUILTINS))})",
            )

    def probe(self, field: str, template: Template, known: set[str]) -> str:
        """Render with sample values, so a template that cannot render is refused now."""
        scope = Scope(0, self.data[0] if self.data else {}, random.Random(0))
        scope.vars = dict.fromkeys(known, "x")
        try:
            return template.render(scope)
        except TemplateFailure as exc:
            raise self.fail(field, f"cannot be rendered: {exc}") from None

    def data_columns(self, field: str, text: str) -> None:
        for match in _PLACEHOLDER.finditer(text):
            column = _DATA.match(match[1])
            if column is None:
                continue
            if not self.data:
                raise self.fail(field, f"uses data.{column[1]} but the profile has no data rows")
            for row_index, row in enumerate(self.data):
                if column[1] not in row:
                    raise self.fail(
                        field, f"uses data.{column[1]} but data row {row_index} has no such column"
                    )


def compile_steps(
    steps: Sequence[Mapping[str, Any]],
    data: Sequence[Mapping[str, Any]] | None = None,
    profile_headers: Mapping[str, str] | None = None,
    think_time_ms: Any = None,
) -> tuple[CompiledStep, ...]:
    """Compile a profile's steps; JourneyError names the step and field of the first problem."""
    rows = list(data or ())
    known: set[str] = set()
    compiled: list[CompiledStep] = []
    seen_names: set[str] = set()
    for index, step in enumerate(steps):
        c = _StepCompiler(index, step, rows)
        if c.name in seen_names:
            raise c.fail("name", f"the name '{c.name}' is used by an earlier step")
        seen_names.add(c.name)
        path_text = str(step.get("path") or "")
        c.data_columns("path", path_text)
        path = c.template("path", path_text, known, escape_path_value)
        try:
            normalize_path(c.probe("path", path, known))
        except HttpRuleError as exc:
            raise c.fail("path", str(exc)) from None
        headers: list[tuple[str, Template]] = []
        merged = {**(profile_headers or {}), **(step.get("headers") or {})}
        for name, value in merged.items():
            field = f"headers.{name}"
            c.data_columns(field, value)
            template = c.template(field, str(value), known, escape_header_value)
            c.probe(field, template, known)
            headers.append((name, template))
        body = None
        if step.get("body") is not None:
            c.data_columns("body", json.dumps(step["body"]))
            try:
                body = compile_body(step["body"])
            except TemplateError as exc:
                raise c.fail("body", f"not a valid template: {exc.message}") from None
            except ValueError as exc:
                raise c.fail("body", str(exc)) from None
            assert body is not None
            c.check_names("body", body.names, known)
            for part in body.parts:
                if isinstance(part, Template):
                    c.probe("body", part, known)
        checks = tuple(_check(c, i, rule) for i, rule in enumerate(step.get("checks") or ()))
        extract = tuple(_extract(c, var, rule) for var, rule in (step.get("extract") or {}).items())
        try:
            think = _think(step.get("think_time_ms", think_time_ms))
        except (TypeError, ValueError):
            raise c.fail("think_time_ms", "give milliseconds or [min, max]") from None
        compiled.append(
            CompiledStep(
                index=index,
                name=c.name,
                method=str(step.get("method") or "GET").upper(),
                path=path,
                headers=tuple(headers),
                body=body,
                extract=extract,
                checks=checks,
                think=think,
            )
        )
        rules: list[ExtractRule | CheckRule] = [*extract, *checks]
        needs_json = any(r.kind == "json" for r in rules)
        compiled[-1] = replace(
            compiled[-1],
            needs_json=needs_json,
            needs_body=needs_json or any(r.kind in ("regex", "body_contains") for r in rules),
            wanted_headers=frozenset(r.source.lower() for r in extract if r.kind == "header"),
        )
        known |= {rule.var for rule in extract}
    if not compiled:
        raise JourneyError("A journey needs at least one step.", field="steps")
    return tuple(compiled)


def _extract(c: _StepCompiler, var: str, rule: Mapping[str, Any]) -> ExtractRule:
    field = f"extract.{var}"
    if not _VAR.match(var) or var in BUILTINS:
        raise c.fail(
            field, f"'{var}' cannot be a variable name (letters, digits, _; not a built-in)"
        )
    kinds = [k for k in ("json", "regex", "header") if k in rule]
    if len(kinds) != 1 or not isinstance(rule[kinds[0]], str):
        raise c.fail(field, "give exactly one of json, regex or header, as a string")
    kind = kinds[0]
    source = rule[kind]
    if kind == "json":
        try:
            return ExtractRule(var, kind, source, path=parse_json_path(source))
        except ValueError as exc:
            raise c.fail(f"{field}.json", str(exc)) from None
    if kind == "regex":
        if len(source) > MAX_REGEX_CHARS:
            raise c.fail(f"{field}.regex", f"longer than {MAX_REGEX_CHARS} characters")
        try:
            return ExtractRule(var, kind, source, pattern=re.compile(source))
        except re.error as exc:
            raise c.fail(f"{field}.regex", f"not a valid regular expression: {exc}") from None
    if not source.strip() or _CONTROL.search(source):
        raise c.fail(f"{field}.header", "give a header name")
    return ExtractRule(var, kind, source.strip())


def _check(c: _StepCompiler, index: int, rule: Mapping[str, Any]) -> CheckRule:
    field = f"checks[{index}]"
    kinds = [k for k in ("status", "json", "body_contains") if k in rule]
    if len(kinds) != 1:
        raise c.fail(field, "give exactly one of status, json or body_contains")
    name = check_name(rule)
    kind = kinds[0]
    if kind == "status":
        status = rule["status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise c.fail(f"{field}.status", "give an HTTP status from 100 to 599")
        return CheckRule(name, kind, status=status)
    if kind == "body_contains":
        needle = rule["body_contains"]
        if not isinstance(needle, str) or not needle:
            raise c.fail(f"{field}.body_contains", "give the text the body must contain")
        return CheckRule(name, kind, needle=needle.encode())
    try:
        path = parse_json_path(rule["json"])
    except ValueError as exc:
        raise c.fail(f"{field}.json", str(exc)) from None
    return CheckRule(name, kind, path=path, expected=rule.get("equals", MISSING))


def check_profile(profile: Mapping[str, Any]) -> None:
    """Refuse (JourneyError, 422) a journey profile whose steps would fail by their own text."""
    steps = profile.get("steps")
    if steps:
        compile_steps(
            steps, profile.get("data"), profile.get("headers"), profile.get("think_time_ms")
        )
