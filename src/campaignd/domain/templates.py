"""Message templates: sandboxed Jinja2 over a contact's fields and attributes.

Every render runs under a budget enforced inside the sandbox: steps (loop iterations, calls,
operators, filters), characters built, output length and wall time. An operation that would
build something over the budget is refused before it allocates, so neither a template nor one
contact's data can hold the caller (the event loop, at send time) for long.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.runtime import Context, LoopContext, Macro, Undefined, markup_join
from jinja2.sandbox import SandboxedEnvironment, safe_range
from jinja2.utils import Cycler, Joiner, Namespace

from campaignd.domain.errors import InvalidInput

MAX_TEMPLATE_CHARS = 100_000
MAX_STEPS = 200_000  # loop iterations, calls, operators and filter input items
MAX_CHARS = 5_000_000  # characters built by every string operation of one render
MAX_OUTPUT_CHARS = 1_000_000
MAX_INT_BITS = 10_000
MAX_SECONDS = 0.1  # CPU time of the rendering thread: a busy machine does not fail a render
_CLOCK_EVERY = 32  # steps between two looks at the clock
# Variables the sender provides for every message, beside the contact's own fields.
PROVIDED = {"unsubscribe_url": "https://example.invalid/unsubscribe/sample"}
_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_PLAIN = (str, int, float, bool, type(None), list, tuple, dict, set, frozenset, bytes, range)
_SEQUENCES = (str, bytes, list, tuple)
_CONTAINERS = (list, tuple, dict, set, frozenset, range)


class OverBudget(TemplateRuntimeError):
    """Raised when a render would go over its budget of steps, characters or time."""


@dataclass(slots=True)
class _Budget:
    # None until the first look at the clock (_CLOCK_EVERY steps in): reading a thread's CPU
    # clock is a system call (measured 10-20 us on a loaded machine, per message when the
    # sender read it twice a render), and an ordinary message takes fewer steps than that.
    deadline: float | None
    steps: int = 0
    chars: int = 0
    next_clock: int = _CLOCK_EVERY

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise OverBudget(
                f"over the render budget: more than {MAX_STEPS} steps"
                " (loop iterations, calls, operators, filtered items)"
            )
        if self.steps >= self.next_clock:
            self.next_clock = self.steps + _CLOCK_EVERY
            now = time.thread_time()
            if self.deadline is None:
                self.deadline = now + MAX_SECONDS
            elif now > self.deadline:
                raise OverBudget(f"over the render budget: more than {MAX_SECONDS} s of CPU")

    def build(self, chars: int) -> None:
        """Charge characters about to be built; called before the allocation."""
        self.chars += max(chars, 0)
        if self.chars > MAX_CHARS:
            raise OverBudget(f"over the render budget: more than {MAX_CHARS} characters built")
        self.step()


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _current() -> _Budget:
    # Outside a render (constant evaluation while compiling) every operation gets a fresh
    # budget: single operations stay bounded.
    return _budget.get() or _Budget(None)


def _number(value: Any) -> int:
    """An int argument that sizes an allocation (a width, a count); a huge one is refused."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 9:
        return int(value)
    return 0


def _charge_input(budget: _Budget, value: Any) -> None:
    if isinstance(value, (str, bytes)):
        budget.build(len(value))
    elif isinstance(value, _CONTAINERS):
        budget.step(1 + len(value))
    else:
        budget.step()


def _charge_result(budget: _Budget, value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        budget.build(len(value))
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        budget.step(len(value))
    return _shown(value)


class _Named:
    """A function or method as a template holds it: callable, printed without its address."""

    __slots__ = ("_func", "_name")

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self._func = func
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<callable {self._name}>"


class _Items:
    """An iterator as a template holds it: each item costs a step; printed without address."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return _each_a_step(self._items)

    def __repr__(self) -> str:
        return "<iterator>"


class _Cycler(Cycler):
    def __repr__(self) -> str:
        return "<cycler>"


class _Joiner(Joiner):
    def __repr__(self) -> str:
        return "<joiner>"


def _shown(value: Any) -> Any:
    """What a template may hold of a value: nothing that prints a memory address."""
    if isinstance(value, (*_PLAIN, Undefined, _Named, _Items)):
        return value
    if isinstance(value, Iterator):
        return _Items(value)
    if callable(value) and not isinstance(value, (type, Macro, LoopContext)):
        return _Named(value, str(getattr(value, "__qualname__", "function")))
    return value


def _each_a_step(items: Iterable[Any]) -> Iterator[Any]:
    budget = _current()
    for item in items:
        budget.step()
        yield item


def _range(*args: int) -> range:
    numbers = safe_range(*args)
    _current().step(len(numbers))
    return numbers


def _check_percent(budget: _Budget, fmt: str) -> None:
    """Widths and precisions of a %-format are charged before it runs; `*` is refused."""
    for width, precision in _PERCENT_SPEC.findall(fmt):
        if "*" in (width, precision):
            raise SecurityError("a %-format may not take its width from an argument")
        budget.build(_width(width) + _width(precision))


def _width(digits: str) -> int:
    if len(digits) > 9:
        return MAX_CHARS + 1
    return int(digits) if digits else 0


def _check_format_spec(budget: _Budget, fmt: str) -> None:
    for _literal, _field, spec, _conversion in string.Formatter().parse(fmt):
        if not spec:
            continue
        if "{" in spec:
            raise SecurityError("a format spec may not take its width from an argument")
        budget.build(sum(_width(d) for d in re.findall(r"\d+", spec)))


def _check_method(
    budget: _Budget, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Charge what a str/bytes/int method is about to build; return the args it should get."""
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", "")
    if isinstance(owner, (str, bytes)):
        budget.build(len(owner))
        first = args[0] if args else None
        if name in ("ljust", "rjust", "center", "zfill"):
            budget.build(_number(first if first is not None else kwargs.get("width")))
        elif name == "expandtabs":
            tabs = _number(first if first is not None else kwargs.get("tabsize", 8))
            budget.build(len(owner) * tabs)
        elif name == "replace" and len(args) >= 2:
            budget.build(
                _replaced_length(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
            )
        elif name == "join" and args:
            items = args[0] if isinstance(args[0], Sized) else list(_each_a_step(args[0]))
            budget.build(len(owner) * len(items))
            args = (items, *args[1:])
        elif name == "translate" and isinstance(first, dict):
            longest = max((len(v) for v in first.values() if isinstance(v, str)), default=1)
            budget.build(len(owner) * longest)
    elif isinstance(owner, int) and name == "to_bytes":
        budget.build(_number(args[0] if args else kwargs.get("length", 1)))
    elif isinstance(owner, _CONTAINERS):
        budget.step(len(owner))
    return args


def _replaced_length(text: Any, old: Any, new: Any, count: Any) -> int:
    if not isinstance(old, type(text)) or not isinstance(new, type(text)):
        return 0
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


# Filters that build from their arguments more than their input: charged before they run.
def _check_filter(
    budget: _Budget, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    value = args[0] if args else None
    rest = args[1:]

    def arg(index: int, key: str, default: Any = None) -> Any:
        return rest[index] if len(rest) > index else kwargs.get(key, default)

    if name == "center":
        budget.build(_number(arg(0, "width", 80)))
    elif name == "indent":
        width = arg(0, "width", 4)
        size = len(width) if isinstance(width, str) else _number(width)
        budget.build(size * (str(value).count("\n") + 1))
    elif name == "format":
        _check_percent(budget, str(value))
    elif name == "wordwrap":
        wrap = arg(2, "wrapstring") or "\n"
        budget.build(len(wrap) * (len(str(value)) // max(_number(arg(0, "width", 79)), 1) + 1))
    elif name == "replace":
        budget.build(_replaced_length(str(value), arg(0, "old"), arg(1, "new"), arg(2, "count")))
    elif name == "join":
        items = value if isinstance(value, Sized) else list(_each_a_step(value or ()))
        budget.build(len(str(arg(0, "d", ""))) * len(items))
        args = (items, *rest)
    elif name == "batch":
        budget.step(_number(arg(0, "linecount")))
    elif name == "slice":
        budget.step(_number(arg(0, "slices")))
    elif name == "tojson":
        budget.build(_number(arg(0, "indent", 0)) * 64)
    return args


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0

    @wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _current()
        head, tail = args[:skip], args[skip:]
        if tail:
            _charge_input(budget, tail[0])
        tail = _check_filter(budget, name, tail, kwargs)
        return _charge_result(budget, func(*head, *tail, **kwargs))

    return bounded


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    """What `{{ }}` prints: no function, method or object that would show a memory address."""
    if type(value) is str or isinstance(value, Undefined):
        return value
    _current().step()
    if isinstance(value, _Named) or (callable(value) and not isinstance(value, _PLAIN)):
        raise SecurityError(f"cannot print {value!r}; call it or print a value instead")
    if not isinstance(value, (int, float)) and _ADDRESS.search(str(value)):
        raise SecurityError("cannot print an object that shows a memory address")
    return value


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `~` goes through the environment so that the characters it builds are charged.
        self.write("environment.concat_values(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox with every way to build something big or run for long charged to a budget."""

    code_generator_class = _BoundedCodeGenerator
    # Intercepted operators are never folded into constants at compile time either.
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            optimized=False,
            finalize=_finalize,
        )
        self.globals = {
            "range": _Named(_range, "range"),
            "dict": dict,
            "cycler": _Cycler,
            "joiner": _Joiner,
            "namespace": Namespace,
        }
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters["_each_a_step"] = _each_a_step

    def concat(self, pieces: Iterable[str]) -> str:
        collected, size = [], 0
        for piece in pieces:
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise OverBudget(
                    f"over the render budget: output longer than {MAX_OUTPUT_CHARS} characters"
                )
            collected.append(piece)
        _current().build(size)
        return "".join(collected)

    def concat_values(self, context: Context, values: tuple[Any, ...]) -> str:
        texts = [str(v) for v in values]
        _current().build(sum(map(len, texts)))
        if context.eval_ctx.autoescape:
            return str(markup_join(values))
        return "".join(texts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _current()
        budget.step()
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_product(budget, left, right)
        elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            budget.build(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_percent(budget, left)
            return _charge_result(budget, super().call_binop(context, operator, left, right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _current()
        budget.step()
        func = __obj._func if isinstance(__obj, _Named) else __obj
        if isinstance(func, LoopContext) and args:  # a recursive loop's next level
            args = (_each_a_step(args[0]), *args[1:])
        args = _check_method(budget, func, args, kwargs)
        return _charge_result(budget, super().call(__context, func, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _current().step()
        return _shown(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget = _current()
        budget.step()
        value = super().getitem(obj, argument)
        if isinstance(argument, slice):
            return _charge_result(budget, value)
        return _shown(value)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            budget = _current()
            _check_format_spec(budget, fmt)
            result = wrapped(*args, **kwargs)
            budget.build(len(result))
            return result

        return checked


def _check_power(left: Any, right: Any) -> None:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and (abs(left).bit_length() - 1) * right > MAX_INT_BITS
    ):
        raise OverBudget(f"over the render budget: a number over {MAX_INT_BITS} bits")


def _check_product(budget: _Budget, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise OverBudget(f"over the render budget: a number over {MAX_INT_BITS} bits")
    elif isinstance(left, _SEQUENCES) and isinstance(right, int):
        budget.build(len(left) * right)
    elif isinstance(right, _SEQUENCES) and isinstance(left, int):
        budget.build(len(right) * left)


_env = BoundedSandbox()


def context_for(contact: dict[str, Any]) -> dict[str, Any]:
    """What a template sees: attributes, then the contact's own fields (which win)."""
    attributes = dict(contact.get("attributes") or {})
    fields = {"external_id": contact["external_id"], "address": contact["address"]}
    return {**attributes, **fields, "contact": {**fields, "attributes": attributes}}


def with_provided(contact: dict[str, Any]) -> dict[str, Any]:
    """The contact as the sender renders it: with a sample of every variable it provides."""
    return {**contact, "attributes": {**(contact.get("attributes") or {}), **PROVIDED}}


@lru_cache(maxsize=256)
def _compiled(template: str) -> Template:
    tree = _env.parse(template)
    for loop in tree.find_all(nodes.For):
        # Every loop iteration is a step of the budget, whatever it iterates over.
        loop.iter = nodes.Filter(loop.iter, "_each_a_step", [], [], None, None, lineno=loop.lineno)
    return _env.from_string(tree)


# Text with only `{{ name }}` placeholders: no block, comment, filter or expression.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_JINJA_MARK = re.compile(r"\{[{%#]")


@lru_cache(maxsize=256)
def _plain_parts(template: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(texts, names) when `template` is text and plain placeholders only; else None.

    texts[i] comes before names[i]; texts has one more element than names."""
    texts, names, last = [], [], 0
    for match in _PLACEHOLDER.finditer(template):
        texts.append(template[last : match.start()])
        names.append(match.group(1))
        last = match.end()
    texts.append(template[last:])
    if any(_JINJA_MARK.search(text) for text in texts):
        return None
    if any(name in _env.globals or name in _KEYWORDS for name in names):
        return None
    return tuple(texts), tuple(names)


# Names a plain placeholder cannot resolve without Jinja: literals, and what the context
# itself defines (`contact` is the contact's own fields, winning over an attribute of that name).
_KEYWORDS = frozenset({"true", "false", "none", "True", "False", "None", "loop", "self", "contact"})


# A plain template this small compiles in a few milliseconds (about 0.1 ms a placeholder).
SMALL_PLAIN_CHARS = 20_000
SMALL_PLAIN_NAMES = 50


def is_small_plain(template: str) -> bool:
    """Text and at most SMALL_PLAIN_NAMES `{{ name }}` placeholders: nothing in it can
    compute, loop or grow, and it compiles in milliseconds, so checking it needs no process
    of its own (its output is bounded by the render budget as always)."""
    if len(template) > SMALL_PLAIN_CHARS:
        return False
    parts = _plain_parts(template)
    return parts is not None and len(parts[1]) <= SMALL_PLAIN_NAMES


def _render_plain(
    parts: tuple[tuple[str, ...], tuple[str, ...]], contact: dict[str, Any]
) -> str | None:
    """What Jinja renders for a plain template, without Jinja: values that are strings or
    numbers print as Jinja prints them; for anything else None (Jinja renders it)."""
    texts, names = parts
    attributes = contact.get("attributes") or {}
    pieces = [texts[0]]
    size = len(texts[0])
    for name, text in zip(names, texts[1:], strict=True):
        if name == "external_id" or name == "address":
            value = contact[name]
        elif name in attributes:
            value = attributes[name]
        else:
            return None  # undefined: Jinja says so in its words
        kind = type(value)
        if kind is not str and kind is not int and kind is not float:
            return None
        printed = str(value)
        pieces.append(printed)
        pieces.append(text)
        size += len(printed) + len(text)
    if size > MAX_OUTPUT_CHARS:
        return None  # the budget says so in its words
    return "".join(pieces)


def render(template: str, contact: dict[str, Any]) -> str:
    """Render for one contact within the budget; raises TemplateError (OverBudget,
    SecurityError, UndefinedError, ...) or the error of a filter on failure."""
    parts = _plain_parts(template)
    if parts is not None:
        text = _render_plain(parts, contact)
        if text is not None:
            return text
    compiled = _compiled(template)
    token = _budget.set(_Budget(None))
    try:
        return compiled.render(context_for(contact))
    finally:
        _budget.reset(token)


def preview(template: str, contact: dict[str, Any]) -> str:
    """Check, then render for `contact` as the sender would (with the variables it provides)."""
    check(template, "message", contact)
    return render(template, with_provided(contact))


def check(template: str, field: str = "message", sample: dict[str, Any] | None = None) -> None:
    """Refuse a template that does not parse, escapes the sandbox, goes over the render budget
    or fails for `sample`."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidInput(
            f"Field '{field}' is longer than {MAX_TEMPLATE_CHARS} characters.", field=field
        )
    try:
        names = meta.find_undeclared_variables(_env.parse(template))
        _compiled(template)
    except TemplateError as exc:
        raise InvalidInput(
            f"Field '{field}' is not a valid template: {str(exc.message).rstrip('.')}.",
            field=field,
            line=getattr(exc, "lineno", None),
        ) from None
    except Exception as exc:  # the parser or Python's compiler on a pathological template
        raise InvalidInput(
            f"Field '{field}' is not a valid template: {type(exc).__name__}: {exc}.",
            field=field,
        ) from None
    # Every variable bound to a harmless string: what fails now is the template's own doing.
    probe = {
        "external_id": "id",
        "address": "a@example.invalid",
        "attributes": dict.fromkeys(names, "x"),
    }
    _try(template, probe, field, "")
    if sample is not None:
        _try(template, with_provided(sample), field, f" for contact '{sample['external_id']}'")


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


def compile_sandboxed(template: str) -> Template:
    """The template compiled once in the bounded sandbox (loops charged per iteration);
    raises TemplateError for a syntax error or a sandbox escape found at compile time."""
    return _compiled(template)


def undeclared_names(template: str) -> set[str]:
    """The variables a template reads from its context."""
    return set(meta.find_undeclared_variables(_env.parse(template)))


def render_context(compiled: Template, context: dict[str, Any]) -> str:
    """Render a compiled template over any context, within the same budget as a message."""
    token = _budget.set(_Budget(time.thread_time() + MAX_SECONDS))
    try:
        return compiled.render(context)
    finally:
        _budget.reset(token)
