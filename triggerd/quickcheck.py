"""A fast validity check of a run's input for common parameter schemas: the webhook
ingress decides most requests with it, and the executor most runs, before (and instead of)
jsonschema's validator. Pure: schemas in, closures out."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import Draft202012Validator

ValidityCheck = Callable[[Any], bool]


# jsonschema is thorough but slow (tens of microseconds for a small object), and on the hot
# path almost every input is valid. For schemas made only of the keywords below, a
# compiled closure answers "valid?" with the exact semantics of Draft 2020-12 as jsonschema
# implements them (integers include 1.0, booleans are not numbers, keywords apply only to
# their instance type, enum/const compare without bool == 1). Any other keyword, or a
# schema this module does not understand, gets no quick check: the validator decides.
# A False answer always goes to the validator, which lists the errors.

_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$comment", "$id",
     "deprecated", "readOnly", "writeOnly"}
)
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


class _Unsupported(Exception):
    pass


def compile_quick_check(schema: Any) -> ValidityCheck | None:
    """A closure deciding validity for schemas in the supported subset, else None."""
    try:
        return _compile(schema)
    except (_Unsupported, re.error, TypeError, ValueError):
        return None


def _json_equal(one: Any, two: Any) -> bool:
    """JSON equality as jsonschema's ``equal``: 1 == 1.0, but True is not 1."""
    if isinstance(one, bool) or isinstance(two, bool):
        return isinstance(one, bool) and isinstance(two, bool) and one == two
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(map(_json_equal, one, two))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(_json_equal(one[k], two[k]) for k in one)
    if isinstance(one, list | dict) or isinstance(two, list | dict):
        return False
    return bool(one == two)


def _compile(schema: Any) -> ValidityCheck:
    if schema is True:
        return lambda _value: True
    if schema is False:
        return lambda _value: False
    if not isinstance(schema, dict):
        raise _Unsupported
    checks: list[ValidityCheck] = []
    for key, arg in schema.items():
        if key in _ANNOTATIONS:
            continue
        checks.append(_keyword(key, arg, schema))
    if not checks:
        return lambda _value: True
    if len(checks) == 1:
        return checks[0]
    # Plain loops, not all() over generators: this runs for every request.
    every = tuple(checks)

    def check_all(value: Any) -> bool:
        for check in every:  # noqa: SIM110 - all() over a generator is slower here
            if not check(value):
                return False
        return True

    return check_all


def _count(arg: Any) -> int:
    if not _is_number(arg) or arg < 0 or not float(arg).is_integer():
        raise _Unsupported
    return int(arg)


def _keyword(key: str, arg: Any, schema: Mapping[str, Any]) -> ValidityCheck:
    if key == "type":
        names = [arg] if isinstance(arg, str) else arg
        if not isinstance(names, list) or not names or any(n not in _TYPES for n in names):
            raise _Unsupported
        tests = [_TYPES[n] for n in names]
        if len(tests) == 1:
            return tests[0]
        return lambda v: any(test(v) for test in tests)
    if key == "properties":
        if not isinstance(arg, dict):
            raise _Unsupported
        subs = tuple((name, _compile(sub)) for name, sub in arg.items())

        def check_properties(v: Any) -> bool:
            if isinstance(v, dict):
                for name, check in subs:
                    if name in v and not check(v[name]):
                        return False
            return True

        return check_properties
    if key == "required":
        if not isinstance(arg, list) or not all(isinstance(n, str) for n in arg):
            raise _Unsupported
        names = frozenset(arg)
        return lambda v: not isinstance(v, dict) or names <= v.keys()
    if key == "additionalProperties":
        if "patternProperties" in schema:
            raise _Unsupported
        known = frozenset(schema.get("properties", {}))
        extra = _compile(arg)
        return lambda v: not isinstance(v, dict) or all(
            extra(item) for name, item in v.items() if name not in known
        )
    if key == "items":
        if "prefixItems" in schema:
            raise _Unsupported
        each = _compile(arg)
        return lambda v: not isinstance(v, list) or all(each(item) for item in v)
    if key in ("minLength", "maxLength", "minItems", "maxItems",
               "minProperties", "maxProperties"):
        limit = _count(arg)
        kind: type[Any] = str if key.endswith("Length") else list if key.endswith("Items") else dict
        if key.startswith("min"):
            return lambda v: not isinstance(v, kind) or len(v) >= limit
        return lambda v: not isinstance(v, kind) or len(v) <= limit
    if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if not _is_number(arg):
            raise _Unsupported
        bound = arg
        compare: Callable[[Any], bool] = {
            "minimum": lambda v: v >= bound,
            "maximum": lambda v: v <= bound,
            "exclusiveMinimum": lambda v: v > bound,
            "exclusiveMaximum": lambda v: v < bound,
        }[key]
        return lambda v: not _is_number(v) or compare(v)
    if key == "pattern":
        if not isinstance(arg, str):
            raise _Unsupported
        regex = re.compile(arg)
        return lambda v: not isinstance(v, str) or regex.search(v) is not None
    if key == "format":
        if not isinstance(arg, str):
            raise _Unsupported
        checker = Draft202012Validator.FORMAT_CHECKER
        return lambda v: checker.conforms(v, arg)
    if key == "enum":
        if not isinstance(arg, list):
            raise _Unsupported
        options = list(arg)
        return lambda v: any(_json_equal(v, option) for option in options)
    if key == "const":
        wanted = arg
        return lambda v: _json_equal(v, wanted)
    raise _Unsupported
