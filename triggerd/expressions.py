"""Expressions ``{{ ... }}`` inside node parameters, evaluated in Jinja2's immutable sandbox.

Expressions see ``input``, ``env``, ``secrets``, ``nodes`` (``nodes.<id>.output``),
``trigger`` and ``execution`` (see :func:`build_context`). They are never passed to
``eval``: Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` refuses private
attributes (``''.__class__``) and mutation (``input.update(...)``), and we additionally
refuse arithmetic that would exhaust CPU or memory (``10 ** 10 ** 10``, ``'x' * 10 ** 9``).

Rendering rules (:func:`render`):

* Strings inside dicts and lists are rendered recursively; dict keys stay literal.
* A string that is exactly one expression (``"{{ input.n + 1 }}"``, surrounding whitespace
  allowed) evaluates to the expression's native JSON value: number, bool, object, list or
  ``None``.
* Any other string containing ``{{`` or ``{%`` is a template and renders to a string.
  Values embedded in text are written as JSON (``true``, ``null``, ``{"a": 1}``), except
  strings and numbers, which are written as they are.
* Undefined names or attributes, syntax errors, sandbox violations and errors raised while
  evaluating (``1 / 0``) raise :class:`ExpressionError`, naming the expression and where
  in the parameters it is.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateRuntimeError,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    meta,
    pass_environment,
    pass_eval_context,
)
from jinja2 import filters as jinja_filters
from jinja2 import nodes as jinja_nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import consume, missing

from triggerd.errors import TriggerdError
from triggerd.jsonrules import too_many_digits
from triggerd.model import JSON
from triggerd.redaction import number_text

CONTEXT_NAMES: Final = ("input", "env", "secrets", "nodes", "trigger", "execution", "memory")

# Compiled templates are cached by source text: a workflow's params are rendered for
# every run, and compiling is far more expensive than evaluating.
CACHE_SIZE: Final = 4096

# Bounds on operations whose cost the sandbox does not limit by itself.
MAX_POWER_BITS: Final = 4096  # result size of ``a ** b`` on integers
MAX_REPEAT_LENGTH: Final = 1_000_000  # length of ``'x' * n`` / ``[x] * n``

# Steps one string's evaluation may take: a loop iteration is one, a call (a macro, a
# method, range) four, as it costs about that much more. A render runs on the event loop
# and no node timeout can interrupt it: two nested loops over range(3500) held the daemon
# for 12 s (its webhooks, heartbeats and schedules with it); now at most about 0.25 s.
MAX_STEPS: Final = 250_000
CALL_STEPS: Final = 4
# Characters one string's evaluation may build by joining (``~``, ``+``, join) and by the
# calls whose arguments choose their result's length (replace, center, a format width...):
# doubling a text in a loop, or a replace by a megabyte, built gigabytes on the event loop.
MAX_BUILT: Final = 50_000_000
# The name a template's loops are wrapped in (see _counted_loops).
_COUNTED: Final = "triggerd_counted_loop"

# Strings (after strip + lower-case) that :func:`evaluate_condition` reads as False.
FALSE_STRINGS: Final = frozenset({"", "false", "0", "no", "off", "null", "none"})


class ExpressionError(TriggerdError):
    """An expression in a node parameter cannot be evaluated.

    ``expression`` is the full text of the parameter string, ``detail`` what went wrong and
    ``path`` where the string sits inside the parameters (e.g. ``("headers", "Authorization")``).
    """

    def __init__(self, expression: str, detail: str, path: tuple[str | int, ...] = ()) -> None:
        self.expression = expression
        self.detail = detail
        self.path = path
        where = f" in {format_path(path)}" if path else ""
        super().__init__(f"expression {expression!r}{where}: {detail}")

    def within(self, key: str | int) -> ExpressionError:
        """The same error, one level further down (``key`` is prepended to ``path``)."""
        return ExpressionError(self.expression, self.detail, (key, *self.path))


def format_path(path: Iterable[str | int]) -> str:
    """``("headers", "Authorization")`` -> ``headers.Authorization``;
    ``("items", 2)`` -> ``items[2]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


class _NotJSON(ValueError):
    """A value produced by an expression has no JSON representation."""


class _Steps(threading.local):
    """What is left of the current evaluation's :data:`MAX_STEPS` and
    :data:`MAX_BUILT`."""

    left: int = MAX_STEPS
    built: int = MAX_BUILT


_STEPS: Final = _Steps()


def _step(count: int = 1) -> None:
    _STEPS.left -= count
    if _STEPS.left < 0:
        raise SecurityError(
            f"the expression took more than {MAX_STEPS:,} steps (a loop iteration is one,"
            f" a call {CALL_STEPS})")


def _counted(iterable: Any) -> Iterator[Any]:
    """A template loop's items, each counted against the evaluation's steps."""
    for item in iterable:
        _step()
        yield item


def _check_length(length: int, what: str) -> None:
    """Text about to be built, counted against the evaluation's :data:`MAX_BUILT`."""
    _STEPS.built -= length
    if _STEPS.built < 0:
        raise SecurityError(f"{what} would take the text the expression builds past"
                            f" {MAX_BUILT:,} characters")


def _joined(parts: Iterable[Any]) -> str:
    """``a ~ b``: Jinja2's str_join, counted (see _Codegen)."""
    texts = [str(part) for part in parts]
    _check_length(sum(map(len, texts)), "joining text")
    return "".join(texts)


class _Codegen(CodeGenerator):
    """Jinja2's code generator, with ``~`` (Concat) counted against MAX_BUILT: it joins
    through a runtime helper no environment hook reaches otherwise."""

    def visit_Concat(self, node: jinja_nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus limits on ``**`` and ``*``.

    Intercepting these operators also stops Jinja2 from folding them at compile time, so a
    template such as ``{{ 10 ** 10 ** 10 }}`` cannot hang the compiler either.
    """

    intercepted_binops = frozenset({"**", "*", "%", "+"})
    code_generator_class = _Codegen
    checked_join = staticmethod(_joined)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # JSON data first: ``input.items`` is the key "items", not the dict method (Jinja2
        # looks attributes up before items). Methods stay reachable when no key matches.
        if isinstance(obj, dict):
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def call(__self, __context: Context, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        # Every call counts (a macro calling itself twice grows exponentially).
        _step(CALL_STEPS)
        if args and getattr(__obj, "__name__", "") == "join":
            args = (_listed(args[0]), *args[1:])
        _check_str_call(__obj, args)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        elif operator == "+" and isinstance(left, str | list | tuple) \
                and isinstance(right, str | list | tuple):
            _check_length(len(left) + len(right), "+")
        return super().call_binop(context, operator, left, right)


def _check_power(base: Any, exponent: Any) -> None:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and exponent > 0
        and base.bit_length() * exponent > MAX_POWER_BITS
    ):
        raise SecurityError(f"the result of {base} ** {exponent} is too large")


def _check_repeat(sequence: Any, count: Any) -> None:
    if (
        isinstance(sequence, str | list | tuple)
        and isinstance(count, int)
        and len(sequence) * count > MAX_REPEAT_LENGTH
    ):
        raise SecurityError(
            f"repeating a sequence {count} times would exceed {MAX_REPEAT_LENGTH} items"
        )


# Calls that build text of a length their arguments choose, in one step: bounded like
# ``'x' * n`` before the text is built (a replace by a megabyte, center(2000000000) and a
# format width of 1500000000 each built gigabytes on the event loop).
_STR_WIDTH_METHODS: Final = frozenset({"center", "ljust", "rjust", "zfill"})
_PERCENT_SPEC: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d+))?")
_BRACE_SPEC: Final = re.compile(r"\{[^{}]*?:([^{}]*)\}")


def _check_format(text: str) -> None:
    """The widths and precisions of a %- or {}-format string."""
    for spec in (*_PERCENT_SPEC.findall(text), *_BRACE_SPEC.findall(text)):
        for number in re.findall(r"\d+", "|".join(spec) if isinstance(spec, tuple) else spec):
            _check_length(int(number), "a format width")


def _check_replace(text: str, old: str, new: str, count: Any = None) -> None:
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    _check_length(len(text) + times * (len(new) - len(old)), "replace")


def _check_join(separator: str, items: Any) -> None:
    """A join's text, before it is built: an empty separator builds the items' text too
    (60 items of a megabyte joined by '' built 60 MB), and items that are not text are
    joined as their str (``join`` filter). Counted an item at a time, stopping once past
    what is left, so a long list of large items is not all turned to text to refuse it."""
    if isinstance(items, str):
        # Each character is an item.
        _check_length(len(separator) * max(len(items) - 1, 0) + len(items), "join")
        return
    if not isinstance(items, list | tuple):
        return
    total = len(separator) * max(len(items) - 1, 0)
    for item in items:
        if total > _STEPS.built:
            break
        total += len(item) if isinstance(item, str) else len(str(item))
    _check_length(total, "join")


def _listed(items: Any) -> Any:
    """The items to join, as a list when they are neither one nor a text (``map``,
    ``select``, a dict, a set): a join counts only the text of items it can see, and
    joined lazily, 200 items by a megabyte built 200 MB past MAX_BUILT."""
    if isinstance(items, list | tuple | str) or not isinstance(items, Iterable):
        return items
    return list(items)


def _check_str_call(method: Any, args: tuple[Any, ...]) -> None:
    """A str method called in a template (``'x'.center(n)``), before it runs."""
    # The sandbox hands out a str's format method wrapped (in its own formatter).
    method = getattr(method, "__wrapped__", method)
    text, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    if not isinstance(text, str):
        return
    if name in ("format", "format_map"):
        _check_format(text)
    elif not args:
        return
    elif name in _STR_WIDTH_METHODS and isinstance(args[0], int):
        _check_length(args[0], name)
    elif name == "expandtabs" and isinstance(args[0], int):
        _check_length(len(text) * max(args[0], 1), name)
    elif name == "replace" and isinstance(args[0], str) and len(args) > 1 \
            and isinstance(args[1], str):
        _check_replace(text, args[0], args[1], args[2] if len(args) > 2 else None)
    elif name == "join":
        _check_join(text, args[0])


@pass_eval_context
def _replace_filter(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        _check_replace(s, old, new, count)
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


def _center_filter(value: Any, width: Any = 80) -> Any:
    if isinstance(width, int):
        _check_length(width, "center")
    return jinja_filters.do_center(value, width)


def _indent_filter(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
    lines = str(s).count("\n") + 1
    pad = width if isinstance(width, int) else len(str(width))
    _check_length(len(str(s)) + lines * pad, "indent")
    return jinja_filters.do_indent(s, width, first, blank)


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(value, str):
        _check_format(value)
    return jinja_filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
    value = _listed(value)
    if attribute is not None:
        # What is joined is each item's attribute: taken first, so it is what is counted.
        value = list(map(jinja_filters.make_attrgetter(eval_ctx.environment, attribute),
                         value))
    _check_join(str(d), value)
    return jinja_filters.sync_do_join(eval_ctx, value, d)


@pass_environment
def _wordwrap_filter(environment: Any, s: Any, width: Any = 79, break_long_words: bool = True,
                     wrapstring: Any = None, break_on_hyphens: bool = True) -> Any:
    if isinstance(width, float) and not isinstance(width, bool):
        # textwrap never ends with a NaN width (the loop held for ever) and slices by a
        # fractional one (a TypeError): a float wraps as the whole characters it allows.
        if not math.isfinite(width):
            raise ValueError(f"invalid width {width!r} (must be a finite number)")
        width = max(1, int(width)) if width > 0 else int(width)
    if isinstance(s, str) and isinstance(width, int) and width > 0:
        separator = environment.newline_sequence if wrapstring is None else wrapstring
        _check_wordwrap(s, width, break_long_words, len(str(separator)), break_on_hyphens)
    return jinja_filters.do_wordwrap(environment, s, width, break_long_words, wrapstring,
                                     break_on_hyphens)


def _check_wordwrap(text: str, width: int, break_long_words: bool, separator: int,
                    break_on_hyphens: bool) -> None:
    """``wordwrap``'s cost, before it runs: textwrap handles each word and each line in
    Python (a step each), and cuts a word longer than ``width`` one line at a time, copying
    what is left of it each time (a 1 MB word wrapped at 1 held the loop for 25 s)."""
    words = text.count(" ") + text.count("\t") + text.count("\n") + 1
    pieces = words + (text.count("-") if break_on_hyphens else 0)
    # Lines cut out of long words (none when they are kept whole).
    cuts = len(text) // width if break_long_words else 0
    _step(pieces + cuts)
    lines = min(len(text), pieces + cuts)
    built = len(text) + lines * separator
    if break_long_words:
        # At most MAX_STEPS words here: the steps above are left.
        built += sum(len(word) * (len(word) // width) // 2 for word in text.split()
                     if len(word) > width)
    _check_length(built, "wordwrap")


def to_json(value: Any) -> JSON:
    """Convert what an expression produced into a plain JSON value.

    Tuples, generators and other iterables (e.g. the result of ``| map(...)``) become lists;
    a Markup string becomes a plain string. Raises on undefined values and on values JSON
    cannot represent (NaN, bytes, functions, ...).
    """
    if value is None or type(value) in (bool, str):
        return value
    if type(value) is int:
        return _json_int(value)
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError/SecurityError with the reason
        raise _NotJSON("the value is undefined")
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return _json_int(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(f"{value} is not a JSON number")
        return float(value)
    if isinstance(value, Mapping):
        return {_json_key(k): to_json(v) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        raise _NotJSON("bytes are not a JSON value")
    if isinstance(value, Iterable):
        return [to_json(item) for item in value]
    raise _NotJSON(f"a {type(value).__name__} is not a JSON value")


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)  # what json.dumps does with such keys
    raise _NotJSON(f"a {type(key).__name__} cannot be an object key")


def to_text(value: Any) -> Any:
    """How a value embedded in a mixed string is written (Jinja2 ``finalize``)."""
    if isinstance(value, str | Undefined) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    ):
        return value  # Jinja2 writes these (and raises for StrictUndefined)
    return json.dumps(to_json(value), ensure_ascii=False)


def _json_int(value: int) -> int:
    """``value``, unless it has more digits than JSON text of it may (Python's limit, the
    one a request body's numbers are held to): such an int cannot be written as JSON, so
    the webhook's correlation or key computed from it failed with a ValueError (500)."""
    limit = sys.get_int_max_str_digits()
    # Below 3 bits a digit it cannot reach 10 ** limit (about 3.32 bits a digit).
    if limit and value.bit_length() > 3 * limit and abs(value) >= 10**limit:
        raise _NotJSON(too_many_digits())
    return value


def _tojson_filter(value: Any) -> str:
    # Jinja2's own tojson escapes <, >, & and ' for HTML; our payloads are not HTML.
    return json.dumps(to_json(value), ensure_ascii=False)


def _fromjson_filter(value: str) -> JSON:
    return json.loads(value)


class _Undefined(StrictUndefined):
    """StrictUndefined whose message calls the context's views (:class:`InputView`) what
    expressions see, a 'dict object', as before the views."""

    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None,
                 exc: type[TemplateRuntimeError] = UndefinedError) -> None:
        if isinstance(obj, dict) and type(obj) is not dict:
            obj = {}
        super().__init__(hint, obj, name, exc)


_ENV: Final = _Sandbox(
    undefined=_Undefined,
    autoescape=False,
    keep_trailing_newline=True,
    finalize=to_text,
    cache_size=0,  # we cache compiled templates ourselves, keyed by source
)
# Filters that work through their value an item at a time in Python (a key or a test
# called per item): a 10 MB webhook body's list through `map`, `select` or `sort` held the
# event loop for 4-11 s, where a `{% for %}` over it stops at MAX_STEPS.
_PER_ITEM_FILTERS: Final = ("map", "select", "reject", "selectattr", "rejectattr", "batch",
                            "slice", "unique", "groupby", "sort", "dictsort", "sum", "min",
                            "max")


def _items_counted(filter_: Any) -> Any:
    """``filter_`` with the items of its value counted against the evaluation's steps, as
    a loop's are: all at once when the value has a length, else as they are taken."""
    at = 0 if getattr(filter_, "jinja_pass_arg", None) is None else 1

    @functools.wraps(filter_)  # keeps jinja_pass_arg: Jinja passes the context as before
    def counted(*args: Any, **kwargs: Any) -> Any:
        if len(args) > at and not isinstance(args[at], Undefined):
            value = args[at]
            if isinstance(value, Sized):
                _step(len(value))
            elif isinstance(value, Iterable):
                args = (*args[:at], _counted(value), *args[at + 1:])
        return filter_(*args, **kwargs)

    return counted


_ENV.filters.update({name: _items_counted(_ENV.filters[name]) for name in _PER_ITEM_FILTERS})
_ENV.filters["tojson"] = _tojson_filter
_ENV.filters["fromjson"] = _fromjson_filter
_ENV.filters.update(replace=_replace_filter, center=_center_filter, indent=_indent_filter,
                    format=_format_filter, join=_join_filter, wordwrap=_wordwrap_filter)
_ENV.globals[_COUNTED] = _counted


def _counted_loops(source: str) -> jinja_nodes.Template:
    """``source`` parsed, each ``{% for %}`` iterating through :func:`_counted`."""
    tree = _ENV.parse(source)
    for loop in tree.find_all(jinja_nodes.For):
        loop.iter = jinja_nodes.Call(jinja_nodes.Name(_COUNTED, "load"), [loop.iter], [],
                                     None, None, lineno=loop.lineno)
    return tree


@dataclass(frozen=True, slots=True)
class _Compiled:
    native: TemplateExpression | None = None  # the string is exactly one expression
    template: Template | None = None
    # The template behind either and its globals as one plain dict: Jinja2 builds each
    # call's context by walking a ChainMap of globals twice, most of a small expression's
    # cost. The context built here from these holds exactly the same names.
    inner: Template | None = None
    globals: dict[str, Any] = field(default_factory=dict)

    def context(self, names: Mapping[str, Any]) -> Context:
        inner = self.inner
        assert inner is not None
        return _ENV.context_class(
            _ENV, {**self.globals, **names}, inner.name, inner.blocks, globals=self.globals
        )


def _single_expression(source: str) -> str | None:
    """The inner text when ``source`` is exactly one ``{{ ... }}``, else None.

    Decided with Jinja2's own lexer, so braces inside the expression (``{{ {'a': {}} }}``,
    ``{{ '}}' }}``) are handled the way Jinja2 handles them.
    """
    stripped = source.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return None
    try:
        kinds = [kind for _, kind, _ in _ENV.lex(stripped)]
    except TemplateSyntaxError:
        return None  # compiled as a template below, which reports the error
    if kinds[0] != "variable_begin" or kinds[-1] != "variable_end":
        return None
    if kinds.count("variable_begin") != 1:
        return None
    inner = stripped[2:-2]
    # Whitespace control markers ({{- ... -}}) mean nothing for a lone expression.
    if inner[:1] in ("-", "+"):
        inner = inner[1:]
    if inner[-1:] in ("-", "+"):
        inner = inner[:-1]
    return inner


@lru_cache(maxsize=CACHE_SIZE)
def _compile(source: str) -> _Compiled:
    inner = _single_expression(source)
    if inner is not None:
        native = _ENV.compile_expression(inner, undefined_to_none=False)
        # Jinja2 keeps the template in a private attribute: without it, the plain call.
        template: Template | None = getattr(native, "_template", None)
        if not isinstance(template, Template):
            return _Compiled(native=native)
        return _Compiled(native=native, inner=template, globals=dict(template.globals))
    template = _ENV.from_string(_counted_loops(source))
    return _Compiled(template=template, inner=template, globals=dict(template.globals))


@lru_cache(maxsize=CACHE_SIZE)
def reads_secrets(source: str) -> bool:
    """Whether the template ``source`` reads the ``secrets`` name at all."""
    try:
        return "secrets" in meta.find_undeclared_variables(_ENV.parse(source))
    except TemplateSyntaxError:
        return False


def secret_renderings(template: JSON, rendered: JSON) -> Iterator[tuple[str, str]]:
    """``(source, text)`` for every string ``text`` that a template reading ``secrets``
    rendered, walking the parameters and their rendered value side by side."""
    if isinstance(template, str):
        if is_template(template) and reads_secrets(template):
            for text in _strings(rendered):
                yield template, text
    elif isinstance(template, dict) and isinstance(rendered, dict):
        for key, item in template.items():
            if key in rendered:
                yield from secret_renderings(item, rendered[key])
    elif isinstance(template, list | tuple) and isinstance(rendered, list | tuple):
        for item, out in zip(template, rendered, strict=False):
            yield from secret_renderings(item, out)


def _strings(value: JSON) -> Iterator[str]:
    """The strings in ``value``, and its numbers as JSON writes them: ``secrets.PIN | int``
    is the secret as a number."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield number_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def is_template(text: str) -> bool:
    """Whether ``text`` contains expression syntax (and so is rendered, not kept)."""
    return "{{" in text or "{%" in text


def has_template(value: Any) -> bool:
    """Whether a run renders anything in ``value`` (keys are not rendered)."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return False


def render_string(source: str, context: Mapping[str, Any]) -> JSON:
    """Render one string: its native value when it is exactly one expression, else a str."""
    return _render(source, context, MAX_STEPS, MAX_BUILT)


def _render(source: str, context: Mapping[str, Any], steps: int, built: int) -> JSON:
    """:func:`render_string` within ``steps`` and ``built`` (at most the run's limits)."""
    if not is_template(source):
        return source
    _STEPS.left = steps
    _STEPS.built = built
    try:
        compiled = _compile(source)
        if compiled.inner is None:
            assert compiled.native is not None
            return to_json(compiled.native(context))
        names = compiled.context(context)
        if compiled.native is not None:
            # TemplateExpression.__call__ with the context built above.
            consume(compiled.inner.root_render_func(names))
            return to_json(names.vars["result"])
        # Template.render with the context built above.
        try:
            text: str = _ENV.concat(compiled.inner.root_render_func(names))
        except Exception:
            _ENV.handle_exception()
        return text
    except ExpressionError:
        raise
    except TemplateSyntaxError as exc:
        raise ExpressionError(source, f"syntax error: {exc.message}") from exc
    except SecurityError as exc:
        raise ExpressionError(source, f"not allowed in the sandbox: {exc}") from exc
    except UndefinedError as exc:
        raise ExpressionError(source, f"undefined: {exc.message}") from exc
    except _NotJSON as exc:
        raise ExpressionError(source, str(exc)) from exc
    except Exception as exc:  # errors of the evaluated code: TypeError, ZeroDivisionError, ...
        if isinstance(exc, NameError) and exc.name in ("nan", "inf"):
            # Jinja2 folds a constant like "nan" | float into the code it compiles, as the
            # float's repr, which is no Python name: the value is no JSON number either.
            raise ExpressionError(source, f"{exc.name} is not a JSON number") from exc
        raise ExpressionError(source, f"{type(exc).__name__}: {exc}") from exc


def render(value: JSON, context: Mapping[str, Any]) -> JSON:
    """Render every expression inside ``value`` (see the module documentation).

    Returns a new value; ``value`` itself is not modified. Raises :class:`ExpressionError`.
    """
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, dict):
        rendered: dict[str, JSON] = {}
        for key, item in value.items():
            try:
                rendered[key] = render(item, context)
            except ExpressionError as exc:
                raise exc.within(key) from exc.__cause__
        return rendered
    if isinstance(value, list | tuple):
        items: list[JSON] = []
        for index, item in enumerate(value):
            try:
                items.append(render(item, context))
            except ExpressionError as exc:
                raise exc.within(index) from exc.__cause__
        return items
    return value


def evaluate_condition(value: JSON) -> bool:
    """Truth of an ``if`` node's condition, for values that come from JSON or text.

    * ``bool``: itself.
    * ``None``: False.
    * numbers: False for ``0`` / ``0.0``, True otherwise.
    * strings, ignoring surrounding whitespace and case: False for ``""``, ``"false"``,
      ``"0"``, ``"no"``, ``"off"``, ``"null"``, ``"none"`` (so a condition rendered inside
      text, ``"{{ x }} "``, reads the same as the native value); True for any other string.
    * lists and objects: True when non-empty.
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_STRINGS
    if isinstance(value, dict | list | tuple):
        return len(value) > 0
    return bool(value)


def build_context(
    *,
    input: JSON,
    input_properties: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    node_outputs: Mapping[str, JSON] | None = None,
    trigger: Mapping[str, JSON] | None = None,
    execution: Mapping[str, JSON] | None = None,
    memory: Mapping[str, JSON] | None = None,
) -> dict[str, Any]:
    """The names an expression sees. ``node_outputs`` maps node id -> that node's output
    (only nodes that finished); expressions read it as ``nodes.<id>.output``.
    ``input_properties``: the keys the parameter schema names (see :class:`InputView`)."""
    return {
        "input": InputView(input, input_properties) if isinstance(input, dict) else input,
        "env": dict(env or {}),
        "secrets": dict(secrets or {}),
        "nodes": {node_id: {"output": output} for node_id, output in (node_outputs or {}).items()},
        "trigger": dict(trigger or {}),
        "execution": dict(execution or {}),
        "memory": MemoryView(memory or {}),
    }


class _Absent(_Undefined):
    """An input property the parameter schema names and this run's input leaves out: false
    and unequal to any value, so ``input.t or 'x'``, ``input.t | default('x')`` and
    ``{% if input.t == 'a' %}`` work; any other use of it fails as an unknown name does."""

    __slots__ = ()

    # Undefined's own: false, equal only to another absent value, hashable. (Jinja types
    # StrictUndefined's as functions that never return, hence the ignores.)
    __bool__ = Undefined.__bool__  # type: ignore[assignment]
    __eq__ = Undefined.__eq__  # type: ignore[assignment]
    __ne__ = Undefined.__ne__  # type: ignore[assignment]
    __hash__ = Undefined.__hash__  # type: ignore[assignment]


class InputView(dict[str, Any]):
    """The run's input in expressions. A property the parameter schema names but the input
    leaves out is absent (:class:`_Absent`), as a memory key nobody stored is null; any
    other missing key is an error, so a typo still fails the run."""

    def __init__(self, value: Mapping[str, Any], properties: Iterable[str]) -> None:
        super().__init__(value)
        self._properties = frozenset(properties)

    def __missing__(self, key: str) -> Any:
        if key in self._properties:
            return _Absent(obj=self, name=key)
        raise KeyError(key)


class MemoryView(dict[str, Any]):
    """The workflow's memory in expressions: a key nobody stored (or that expired) reads
    as null, so ``{{ memory.cursor or 0 }}`` works on the first run."""

    def __missing__(self, key: str) -> None:
        return None


# --- static inspection (definition checks) -------------------------------------------

# Names an expression may read: the run's context plus Jinja2's globals (range, dict, ...).
KNOWN_NAMES: Final = frozenset(CONTEXT_NAMES) | frozenset(_ENV.globals)
# The context names whose keys a definition declares, so a reference can be checked.
_KEYED_NAMES: Final = frozenset({"nodes", "env", "secrets", "input", "execution", "trigger"})
# The keys of ``execution`` in every run (the executor's context); ``resume_url`` only in
# runs of workflows with an approval node.
EXECUTION_KEYS: Final = ("id", "attempt", "workflow_id", "version", "created_at", "tenant",
                         "correlation")
# Every key ``trigger`` has in some run: the runner's type, name and scheduled_for; a
# scheduled fire's and a backfill's fired_at (backfill: its id); a webhook's request and a
# replay's replay_of, replayed_by and actor; a manual fire's fired_by, actor and reason; a
# child run's node, parent_execution_id and depth; an error run's failed_execution. Which
# of them a run has depends on what started it (store/slots.py, store/backfills.py,
# store/webhooks.py, store/keyed.py, operations/, store/subworkflows.py,
# store/executions.py).
TRIGGER_KEYS: Final = ("type", "name", "scheduled_for", "fired_at", "backfill", "request",
                       "replay_of", "replayed_by", "actor", "fired_by", "reason", "node",
                       "parent_execution_id", "depth", "failed_execution")


@dataclass(frozen=True, slots=True)
class TemplateFacts:
    """What can be known about a template before any run: its syntax error (as a run would
    report it), the names it reads, and the literal keys it reads under ``nodes``, ``env``,
    ``secrets``, ``input``, ``execution`` and ``trigger`` (``nodes.fetch`` or
    ``nodes['fetch']``), in reading order."""

    error: str | None = None
    names: frozenset[str] = frozenset()
    keys: tuple[tuple[str, str], ...] = ()  # (context name, key)
    # (node id, attribute) of ``nodes.X.Y``: a node's entry has only ``output``.
    node_attributes: tuple[tuple[str, str], ...] = ()
    # Whether it asks if a value is there (``is defined``, ``default``, ``in``): then a
    # node that may have been skipped can be read behind that guard.
    guarded: bool = False
    # Whether it may draw a value anew each time it is evaluated: the ``random`` filter,
    # ``lipsum``, or a filter or test that ``map``, ``select``... are given by a name not
    # written out (``map('ran' ~ 'dom')``).
    random: bool = False


# ``{{ input.day }}``: a known name and attributes; most templates are made of these.
_PLAIN_REFERENCE: Final = re.compile(r"\{\{ *([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*) *\}\}")


def _plain_facts(source: str) -> TemplateFacts | None:
    """The facts of a template made only of plain references to known names in plain text
    (``Bearer {{ secrets.T }}``), without Jinja2's lexer; None for anything else."""
    if "{" in _PLAIN_REFERENCE.sub("", source).replace("}", "{"):
        return None  # other syntax, or braces that Jinja2 might read otherwise
    names: set[str] = set()
    keys: list[tuple[str, str]] = []
    node_attributes: list[tuple[str, str]] = []
    for match in _PLAIN_REFERENCE.finditer(source):
        name, attributes = match.groups()
        if name not in KNOWN_NAMES or "__" in attributes:
            # a keyword (true, none, not...), an unknown name, or perhaps one of Python's
            # own attributes: parse it
            return None
        names.add(name)
        first, _, rest = attributes[1:].partition(".")
        if (
            name in _KEYED_NAMES
            and first
            and not hasattr(dict, first)
            and (name, first) not in keys
        ):
            keys.append((name, first))
        second = rest.split(".", 1)[0]
        if name == "nodes" and first and second and not hasattr(dict, second) \
                and (first, second) not in node_attributes:
            node_attributes.append((first, second))
    return TemplateFacts(names=frozenset(names), keys=tuple(keys),
                         node_attributes=tuple(node_attributes), random="lipsum" in names)


def inspect_template(source: str) -> TemplateFacts:
    """The :class:`TemplateFacts` of ``source`` (a string for which :func:`is_template`)."""
    return _plain_facts(source) or _parsed_facts(source)


# Jinja2's globals (range, dict, ...): readable by every expression, the same in every run.
GLOBAL_NAMES: Final = KNOWN_NAMES - frozenset(CONTEXT_NAMES)


# What one check may spend on evaluating constant expressions, all of them together: a
# few runs' worth of steps and text. A definition of 40 nested loops over range(1000)
# (3.5 KB) took 5 s, ten joins by a megabyte 500 MB, on the event loop of an admin API
# apply. Past it, what is left is not evaluated (nor refused): its runs will tell.
CHECK_STEPS: Final = 4 * MAX_STEPS
CHECK_BUILT: Final = 2 * MAX_BUILT
# What one evaluation costs besides its steps and its length: compiling a small expression
# takes about a millisecond, some 2000 loop iterations.
COMPILE_STEPS: Final = 2000
# And per character compiled: 7-33 us (loops, ifs, list and dict literals), where a loop
# iteration takes 0.5-1.3 us. Charged at one step a character, 150 distinct 4 KB constants
# took 10 s within the budget; at 25, CHECK_STEPS is about a second of compiling.
COMPILE_CHARACTER_STEPS: Final = 25
# A constant's value larger than this (characters, about as JSON) is not kept: the
# parameter is checked as written, its template.
MAX_CONSTANT_SIZE: Final = 10_000

Constant = tuple[JSON, str | None] | None  # see constant_value


class ConstantBudget:
    """One check's evaluations of constant expressions: each distinct one evaluated once
    (``known``, by source and the context it reads), all within :data:`CHECK_STEPS` and
    :data:`CHECK_BUILT`."""

    def __init__(self) -> None:
        self.steps = CHECK_STEPS
        self.built = CHECK_BUILT
        self.evaluations = 0
        self.known: dict[tuple[str, str], Constant] = {}
        # Sources whose value was too large to keep (a key past its length fails on that).
        self.oversized: set[str] = set()
        # id -> (the context, its text): kept, so an id is never another context's.
        self._contexts: dict[int, tuple[Mapping[str, Any], str]] = {}

    def value(self, source: str, context: Mapping[str, Any], reads: frozenset[str]
              ) -> Constant:
        key = (source, self._context_key(context) if reads & set(context) else "")
        if key not in self.known:
            self.known[key] = self._evaluate(source, context)
        return self.known[key]

    def _context_key(self, context: Mapping[str, Any]) -> str:
        kept = self._contexts.get(id(context))
        if kept is None or kept[0] is not context:
            kept = (context, json.dumps(context, sort_keys=True, default=str))
            self._contexts[id(context)] = kept
        return kept[1]

    def _evaluate(self, source: str, context: Mapping[str, Any]) -> Constant:
        if self.steps <= 0 or self.built <= 0:
            return None  # spent
        steps, built = min(MAX_STEPS, self.steps), min(MAX_BUILT, self.built)
        self.evaluations += 1
        try:
            rendered: JSON = _render(source, context, steps, built)
        except ExpressionError as exc:
            failure: str | None = exc.detail
        else:
            failure = None
        finally:
            # Compiling costs more than most expressions' steps: charged too, or a thousand
            # distinct small ones would cost what no one large one may.
            self.steps -= (steps - max(_STEPS.left, 0) + COMPILE_STEPS
                           + COMPILE_CHARACTER_STEPS * len(source))
            self.built -= built - max(_STEPS.built, 0)
        if failure is not None:
            if (_STEPS.left < 0 and steps < MAX_STEPS) or (_STEPS.built < 0 and built < MAX_BUILT):
                return None  # past what was left of the budget, not past a run's limits
            return None, failure
        size = _size(rendered, MAX_CONSTANT_SIZE)
        self.built -= size
        if size > MAX_CONSTANT_SIZE:
            self.oversized.add(source)
            return None
        return rendered, None


class _Budgets(threading.local):
    current: ConstantBudget | None = None


_BUDGETS: Final = _Budgets()


@contextmanager
def constant_budget() -> Iterator[ConstantBudget]:
    """The budget of the constant expressions :func:`constant_value` evaluates in this
    thread until the block ends (one check); within another such block, that one's."""
    if _BUDGETS.current is not None:
        yield _BUDGETS.current
        return
    _BUDGETS.current = ConstantBudget()
    try:
        yield _BUDGETS.current
    finally:
        _BUDGETS.current = None


@contextmanager
def constants_not_evaluated() -> Iterator[None]:
    """Within the block :func:`constant_value` evaluates nothing in this thread: a stored
    definition read back (a route built, a schedule loaded) was checked when it was
    applied, and a release that refuses more must not drop what an older one stored, nor
    spend the event loop's time evaluating it again."""
    outer = _BUDGETS.current
    spent = ConstantBudget()
    spent.steps = 0
    _BUDGETS.current = spent
    try:
        yield
    finally:
        _BUDGETS.current = outer


def _size(value: JSON, limit: int) -> int:
    """About the characters of ``value`` as JSON; any number past ``limit`` once it is
    past (a long list is not walked through)."""
    total = 0
    pending: list[JSON] = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2 + sum(len(key) + 4 for key in itertools.islice(item, limit))
            pending.extend(itertools.islice(item.values(), limit))
        elif isinstance(item, list | tuple):
            total += 2 + min(len(item), limit + 1)
            pending.extend(item[:limit])
        else:
            total += 5  # a number, true, false or null: about that
    return total


def constant_value(source: str, context: Mapping[str, Any]) -> Constant:
    """What ``source`` renders to in every evaluation, when it reads nothing but the names
    of ``context`` (values that are the same in every evaluation) and Jinja2's globals:
    ``(value, None)``, or ``(None, why)`` when it fails every time; ``None`` when what it
    reads is known only when it runs, when its value is larger than
    :data:`MAX_CONSTANT_SIZE`, or when the check's :func:`constant_budget` is spent."""
    facts = inspect_template(source)
    if facts.error is not None or not facts.names <= GLOBAL_NAMES | set(context):
        return None
    if facts.random:
        return None  # a value drawn anew each time may fail one time and not the next
    if any(key not in context[name] for name, key in facts.keys if name in context):
        return None  # a key nobody provides: reported as such by the caller's checks
    with constant_budget() as budget:
        return budget.value(source, context, facts.names)


def constant_oversized(source: str) -> bool:
    """Whether :func:`constant_value` found ``source``'s value larger than
    :data:`MAX_CONSTANT_SIZE` in this check (and so kept nothing of it)."""
    with constant_budget() as budget:
        return source in budget.oversized


def constant_failure(source: str, context: Mapping[str, Any]) -> str | None:
    """Why ``source`` fails every time it is evaluated (see :func:`constant_value`); else
    ``None`` (it succeeds, or what it reads is known only when it runs)."""
    found = constant_value(source, context)
    return None if found is None else found[1]


# Statements that load another template (a run has none to load).
_LOADING_NODES: Final = (jinja_nodes.Include, jinja_nodes.Extends, jinja_nodes.Import,
                         jinja_nodes.FromImport)


@lru_cache(maxsize=CACHE_SIZE)
def _parsed_facts(source: str) -> TemplateFacts:
    """The :class:`TemplateFacts` of any template, from its syntax tree.

    Parsed the way a run compiles it (a lone expression as an expression), so a syntax
    error reads as the run's would; but not compiled to code, which costs ten times the
    parse: unknown filters and tests, the one compile-time error expressions can make, are
    looked up here instead.
    """
    try:
        tree = _parse(source)
    except TemplateSyntaxError as exc:
        return TemplateFacts(error=f"syntax error: {exc.message}")
    for call in tree.find_all((jinja_nodes.Filter, jinja_nodes.Test)):
        is_filter = isinstance(call, jinja_nodes.Filter)
        kind = "filter" if is_filter else "test"
        if call.name not in (_ENV.filters if is_filter else _ENV.tests):
            # The message Jinja2's compiler gives, as a run would report it.
            return TemplateFacts(error=f"syntax error: No {kind} named {call.name!r}.")
    for attribute in tree.find_all(jinja_nodes.Getattr):
        if attribute.attr.startswith("__") and attribute.attr.endswith("__"):
            # Python's own attributes: the sandbox refuses each one (every value has them,
            # so a JSON key of that name is never what is read).
            return TemplateFacts(error=f"not allowed in the sandbox: attribute"
                                       f" {attribute.attr!r}")
    if any(tree.find(kind) is not None for kind in _LOADING_NODES):
        # A run has no other templates to load: each such run failed ("no loader").
        return TemplateFacts(error="an expression cannot include, extend or import another"
                                   " template")
    loaded: set[str] = set()
    declared: set[str] = set()
    for name in tree.find_all(jinja_nodes.Name):
        (loaded if name.ctx == "load" else declared).add(name.name)
    declared.update(macro.name for macro in tree.find_all(jinja_nodes.Macro))
    if tree.find(jinja_nodes.For) is not None:
        declared.add("loop")
    if tree.find(jinja_nodes.Macro) is not None or tree.find(jinja_nodes.CallBlock) is not None:
        # What Jinja gives a macro's body: the {% call %} block's caller, and the
        # arguments past its own parameters.
        declared.update(("caller", "varargs", "kwargs"))
    names = frozenset((loaded - declared) | _scoped_away(tree, declared))
    keys: list[tuple[str, str]] = []
    node_attributes: list[tuple[str, str]] = []
    for found in tree.find_all((jinja_nodes.Getattr, jinja_nodes.Getitem)):
        target, key = _literal_key(found)
        if (
            isinstance(key, str)
            and isinstance(target, jinja_nodes.Name)
            and target.ctx == "load"
            and target.name in _KEYED_NAMES & names  # not shadowed by a {% set %}
            and (target.name, key) not in keys
        ):
            keys.append((target.name, key))
        # nodes.X.Y: the node's entry, then its attribute
        inner, node_id = _literal_key(target) if target is not None else (None, None)
        if (
            isinstance(key, str)
            and isinstance(node_id, str)
            and isinstance(inner, jinja_nodes.Name)
            and inner.ctx == "load"
            and inner.name == "nodes"
            and "nodes" in names
            and (node_id, key) not in node_attributes
        ):
            node_attributes.append((node_id, key))
    return TemplateFacts(names=names, keys=tuple(keys), node_attributes=tuple(node_attributes),
                         guarded=_is_guarded(tree), random=_draws_anew(tree))


# The filters that call a filter or test named by an argument, and that argument's position.
_NAMING_FILTERS: Final = {"map": 0, "select": 0, "reject": 0, "selectattr": 1, "rejectattr": 1}


def _draws_anew(tree: jinja_nodes.Node) -> bool:
    """Whether the template may draw a value anew each time (see TemplateFacts.random):
    decided from its syntax tree, as words in its text say nothing ({{ 'random' }})."""
    for call in tree.find_all(jinja_nodes.Filter):
        if call.name == "random":
            return True
        at = _NAMING_FILTERS.get(call.name)
        if at is None:
            continue
        if call.dyn_args is not None:
            return True  # map(*names): a name known only when it runs
        if len(call.args) > at:
            named = call.args[at]
            if not isinstance(named, jinja_nodes.Const) or not isinstance(named.value, str) \
                    or (call.name == "map" and named.value == "random"):
                return True
    return any(name.name == "lipsum" for name in tree.find_all(jinja_nodes.Name))


# The tests, filters and operators by which a template asks whether a value is there.
_GUARD_TESTS: Final = frozenset({"defined", "undefined"})
_GUARD_FILTERS: Final = frozenset({"default", "d"})
_GUARD_OPERATORS: Final = frozenset({"in", "notin"})


def _is_guarded(tree: jinja_nodes.Node) -> bool:
    """Whether the template asks anywhere if a value is there (where it asks is not
    followed: a guard anywhere is taken as the author's, so no guarded read is refused).
    ``default`` guards only a node's entry itself: ``nodes.x.output | default(0)`` fails
    on the missing entry before the filter runs."""
    return (any(test.name in _GUARD_TESTS for test in tree.find_all(jinja_nodes.Test))
            or any(f.name in _GUARD_FILTERS and _is_node_entry(f.node)
                   for f in tree.find_all(jinja_nodes.Filter))
            or any(op.op in _GUARD_OPERATORS for op in tree.find_all(jinja_nodes.Operand)))


def _is_node_entry(found: jinja_nodes.Node | None) -> bool:
    """Whether ``found`` is ``nodes.X`` or ``nodes['X']``."""
    target = _literal_key(found)[0] if found is not None else None
    return isinstance(target, jinja_nodes.Name) and target.name == "nodes"


# Statements whose names stay inside them: a name set in a loop's body, a macro, a
# {% call %} or {% filter %} block, a {% with %} or an {% autoescape %} block is gone after
# it ({% if %} is no scope).
_SCOPES: Final = (jinja_nodes.For, jinja_nodes.Macro, jinja_nodes.CallBlock,
                  jinja_nodes.FilterBlock, jinja_nodes.With,
                  jinja_nodes.ScopedEvalContextModifier)
# What Jinja sets in each scope besides what the template names.
_GIVEN: Final = {jinja_nodes.For: ("loop",), jinja_nodes.Macro: ("caller", "varargs", "kwargs"),
                 jinja_nodes.CallBlock: ("caller", "varargs", "kwargs")}


def _scoped_away(tree: jinja_nodes.Node, declared: set[str]) -> set[str]:
    """Names read only outside every scope that sets them, and set nowhere outside all
    scopes: ``{% for x in a %}{% set y = x %}{% endfor %}{{ y }}`` fails every run ('y' is
    undefined). A read inside a scope that sets the name is never refused, whichever
    ``{% if %}`` branch sets it: only what cannot work is."""
    if not declared or not isinstance(tree, jinja_nodes.Template) \
            or next(tree.find_all(_SCOPES), None) is None:
        return set()
    # Where each name is set: the innermost scope around the assignment (None: outside
    # every scope); and each read with the scopes around it.
    sets: dict[str, list[jinja_nodes.Node | None]] = {}
    reads: list[tuple[str, tuple[jinja_nodes.Node, ...]]] = []

    def visit(node: jinja_nodes.Node, scopes: tuple[jinja_nodes.Node, ...]) -> None:
        for child in node.iter_child_nodes():
            if isinstance(child, jinja_nodes.Macro):
                # The macro's own name is set where it stands.
                sets.setdefault(child.name, []).append(scopes[-1] if scopes else None)
            inner = scopes
            if isinstance(child, _SCOPES):
                inner = (*scopes, child)
                for name in _GIVEN.get(type(child), ()):
                    sets.setdefault(name, []).append(child)
            if isinstance(child, jinja_nodes.Name):
                if child.ctx == "load":
                    reads.append((child.name, scopes))
                else:
                    sets.setdefault(child.name, []).append(scopes[-1] if scopes else None)
            visit(child, inner)

    visit(tree, ())
    gone: set[str] = set()
    for name, around in reads:
        where = sets.get(name)
        if where is None or None in where or name in KNOWN_NAMES:
            continue
        if not any(scope is open_scope for scope in where for open_scope in around):
            gone.add(name)
    return gone


def _literal_key(found: jinja_nodes.Node) -> tuple[jinja_nodes.Node | None, object]:
    """For ``a.b`` or ``a['b']``: ``a`` and ``'b'`` (None for a computed key or a method of
    a mapping: ``env.get('X', ...)`` calls a method, it reads no key)."""
    if isinstance(found, jinja_nodes.Getattr):
        return found.node, None if hasattr(dict, found.attr) else found.attr
    if isinstance(found, jinja_nodes.Getitem):
        if isinstance(found.arg, jinja_nodes.Const):
            return found.node, found.arg.value  # a computed key is known at run time only
        return found.node, None
    return None, None


def _parse(source: str) -> jinja_nodes.Node:
    """The syntax tree of ``source`` as :func:`_compile` parses it (raises
    TemplateSyntaxError with the same message)."""
    inner = _single_expression(source)
    if inner is None:
        return _ENV.parse(source)
    # What Environment.compile_expression does before it generates code.
    parser = Parser(_ENV, inner, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    return jinja_nodes.Template([jinja_nodes.Output([expression])])  # so find_all sees it
