"""The JSON Schema of definition files and the translation of its errors into problems.

The schema (``triggerd/schemas/definitions.schema.json``) is the structural contract: types,
required and unknown keys, enums, duration and name syntax. Where jsonschema's own wording
would be obscure, a subschema carries an ``errorMessage`` (the convention of ajv-errors):
either one string, or a mapping from keyword to message; ``{value}`` stands for the
offending value.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from triggerd.definitions.problems import JsonPath, Report, described, show, suggestion
from triggerd.model import TriggerType

SCHEMA_RESOURCE = ("schemas", "definitions.schema.json")

# Keys every trigger has, whatever its type; the rest is the type's config.
TRIGGER_COMMON_KEYS = ("name", "type", "enabled", "input", "version")

# How a JSON Schema type reads in a message (also used for node parameters).
TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@functools.cache
def definitions_schema() -> dict[str, Any]:
    """The definition file's JSON Schema (draft 2020-12), as shipped in the package."""
    text = resources.files("triggerd").joinpath(*SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(definition: str | None) -> Draft202012Validator:
    """A validator for the whole file (``None``) or for one ``$defs`` entry."""
    schema = definitions_schema()
    if definition is not None:
        schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(schema)


@functools.cache
def _config_validator(trigger_type: TriggerType) -> Draft202012Validator:
    """A validator for a stored trigger config: the type's trigger keys minus the common ones."""
    defs = definitions_schema()["$defs"]
    trigger = dict(defs[f"{trigger_type.value}Trigger"])
    trigger["properties"] = {
        k: v for k, v in trigger["properties"].items() if k not in TRIGGER_COMMON_KEYS
    }
    return Draft202012Validator({"$defs": defs, **trigger})


@functools.cache
def _shallow_validator(level: str) -> Draft202012Validator:
    """A validator for the file or one workflow that leaves the items of its list below
    (workflows, triggers) alone: :func:`validate_file` validates those one by one."""
    schema = definitions_schema()
    defs = schema["$defs"]
    if level == "file":
        top = {k: v for k, v in schema.items() if k != "$defs"}
        child = "workflows"
    else:
        top = dict(defs["workflow"])
        child = "triggers"
    properties = dict(top["properties"])
    properties[child] = {**properties[child], "items": {}}
    return Draft202012Validator({**top, "properties": properties, "$defs": defs})


@functools.cache
def _trigger_type_validator(trigger_type: str) -> Draft202012Validator:
    defs = definitions_schema()["$defs"]
    return Draft202012Validator({"$defs": defs, **_inlined(defs[f"{trigger_type}Trigger"])})


@functools.cache
def _quick_workflow_validator() -> Draft202012Validator:
    """Accepts exactly what ``_shallow_validator("workflow")`` accepts, faster."""
    schema = dict(cast(dict[str, Any], _shallow_validator("workflow").schema))
    defs = schema.pop("$defs")
    return Draft202012Validator({"$defs": defs, **_inlined(schema)})


def _inlined(schema: Any, seen: tuple[str, ...] = ()) -> Any:
    """``schema`` with each ``{"$ref": "#/$defs/NAME", ...}`` replaced by NAME's keywords
    where that means the same (no keyword on both sides, no recursion): jsonschema resolves
    a reference on every use, which was half the cost of validating a trigger. Only for
    deciding validity; errors are explained with the schema as written."""
    if isinstance(schema, list):
        return [_inlined(item, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _inlined(value, seen) for key, value in schema.items()}
    ref = result.get("$ref")
    prefix = "#/$defs/"
    if isinstance(ref, str) and ref.startswith(prefix):
        name = ref[len(prefix) :]
        target = definitions_schema()["$defs"].get(name)
        rest = {k: v for k, v in result.items() if k not in ("$ref", "description")}
        if isinstance(target, dict) and name not in seen and not set(rest) & set(target):
            return {**rest, **_inlined(target, (*seen, name))}
    return result


_TRIGGER_TYPES = frozenset(t.value for t in TriggerType)


# The keywords a schema of one string may use to be checked by _string_check.
_STRING_KEYWORDS = frozenset({"type", "minLength", "maxLength", "pattern", "description",
                              "errorMessage"})


def _string_check(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """A predicate equal to ``Draft202012Validator(schema).is_valid`` for a schema of a
    string with length bounds and a pattern (as jsonschema checks them: ``len`` in code
    points, ``re.search``); other schemas get the validator itself. A name is checked
    100,000 times in a large file, and jsonschema's own walk cost most of that."""
    if set(schema) - _STRING_KEYWORDS or schema.get("type") != "string":
        return Draft202012Validator(schema).is_valid
    shortest = int(schema.get("minLength", 0))
    longest = schema.get("maxLength")
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None

    def check(value: Any) -> bool:
        return (
            isinstance(value, str)
            and len(value) >= shortest
            and (longest is None or len(value) <= longest)
            and (pattern is None or pattern.search(value) is not None)
        )

    return check


@functools.cache
def _trigger_name_check(trigger_type: str) -> Callable[[Any], bool]:
    defs = definitions_schema()["$defs"]
    return _string_check(_inlined(defs[f"{trigger_type}Trigger"]["properties"]["name"]))


@functools.cache
def _workflow_key_check() -> Callable[[Any], bool]:
    return _string_check(_inlined(definitions_schema()["$defs"]["workflow"]["properties"]["key"]))


# Stands in for every trigger name and workflow key while the rest is validated (it is
# valid).
_SOME_NAME = "n"


def _shape(value: dict[str, Any]) -> str:
    """One text per JSON value, cheaply: ``repr`` tells 1, 1.0 and True apart, as JSON
    does (two orders of the same keys are two texts: only a second validation)."""
    return repr(value)


def _valid_once(validator: Draft202012Validator, value: dict[str, Any],
                seen: dict[str, bool]) -> bool:
    """``validator.is_valid(value)``, computed once per distinct text of ``value`` in
    ``seen``."""
    key = _shape(value)
    valid = seen.get(key)
    if valid is None:
        valid = seen[key] = bool(validator.is_valid(value))
    return valid


def _trigger_is_valid(trigger: Any, seen: dict[str, bool]) -> bool:
    """Whether a trigger is valid, cheaply: the ``trigger`` schema requires name and type,
    and then applies the one branch its type names (``allOf`` of ``if``/``then``).

    The name is checked on its own (only ``properties.name`` looks at its value), so the
    rest is validated once per distinct text in ``seen``, with the values of free string
    keys standing for one another: 100,000 triggers of a file are a few distinct shapes."""
    if not isinstance(trigger, dict) or "name" not in trigger:
        return False
    kind = trigger.get("type")
    if not isinstance(kind, str) or kind not in _TRIGGER_TYPES:
        return False
    if not _trigger_name_check(kind)(trigger["name"]):
        return False
    # The schedule's expression and zone too (see _config_is_valid): the whole mix of a
    # large file is then one shape, not one per schedule.
    rest = _with_free_strings_alike(trigger, _free_trigger_keys(kind))
    rest["name"] = _SOME_NAME
    return _valid_once(_trigger_type_validator(kind), rest, seen)


def _workflow_is_valid(workflow: Any, seen: dict[str, bool]) -> bool:
    """Whether a workflow (its triggers aside) is valid, once per distinct text of it
    without its key and triggers: only ``properties.key`` looks at the key, and the
    triggers' items are left to :func:`_trigger_is_valid` (a list of anything is valid)."""
    if not isinstance(workflow, dict):
        return bool(_quick_workflow_validator().is_valid(workflow))
    rest = dict(workflow)
    if "key" in rest:
        if not _workflow_key_check()(rest["key"]):
            return False
        rest["key"] = _SOME_NAME
    if isinstance(rest.get("triggers"), list):
        rest["triggers"] = []
    return _valid_once(_quick_workflow_validator(), rest, seen)


def validate_file(document: Any, report: Report) -> None:
    """Add a problem for every schema violation in a whole definition document.

    The same problems, in the same order, as validating the document as a whole, but
    checked a workflow and a trigger at a time: a valid trigger costs one validation of its
    own type's keys instead of the ``allOf`` over every type (a 100,000-trigger file took
    12 s); an invalid one is explained by the full ``trigger`` schema."""
    _collect(_shallow_validator("file").iter_errors(document), (), report)
    workflows = document.get("workflows") if isinstance(document, dict) else None
    if not isinstance(workflows, list):
        return
    seen: dict[str, bool] = {}
    seen_workflows: dict[str, bool] = {}
    for index, workflow in enumerate(workflows):
        base: JsonPath = ("workflows", index)
        if not _workflow_is_valid(workflow, seen_workflows):
            _collect(_shallow_validator("workflow").iter_errors(workflow), base, report)
        triggers = workflow.get("triggers") if isinstance(workflow, dict) else None
        if not isinstance(triggers, list):
            continue
        for number, trigger in enumerate(triggers):
            if not _trigger_is_valid(trigger, seen):
                errors = _validator("trigger").iter_errors(trigger)
                _collect(errors, (*base, "triggers", number), report)


def validate_definition(definition: str, value: Any, base: JsonPath, report: Report) -> None:
    """Add a problem for every violation of one ``$defs`` entry (e.g. ``graph``)."""
    _collect(_validator(definition).iter_errors(value), base, report)


def validate_trigger_config(
    trigger_type: TriggerType, config: Any, base: JsonPath, report: Report
) -> None:
    """Add a problem for every violation in a stored trigger config of the given type."""
    if isinstance(config, dict) and _config_is_valid(trigger_type, config):
        return
    _collect(_config_validator(trigger_type).iter_errors(config), base, report)


# Keywords of a property's schema that any non-empty string satisfies (``items`` and an
# array type apply to lists only).
_FREE_STRING_KEYWORDS = frozenset({"type", "minLength", "items", "description"})
# Keywords of a config schema that look at no property's value beyond ``properties``.
_PLAIN_OBJECT_KEYWORDS = frozenset(
    {"type", "required", "additionalProperties", "properties", "description"}
)
# Distinct config shapes remembered per trigger type (a few per schedule mix; bounded for
# a long-lived process that sees configs come and go).
_SHAPE_MEMO_LIMIT = 10_000
_valid_shapes: dict[TriggerType, dict[str, bool]] = {}


@functools.cache
def _free_string_keys(trigger_type: TriggerType) -> frozenset[str]:
    """The config keys whose value, when a non-empty string, cannot make the config invalid
    (``cron``, ``timezone``, ``start_at``...; their meaning is checked by the checks)."""
    return _free_keys(_config_validator(trigger_type).schema)


@functools.cache
def _free_trigger_keys(trigger_type: str) -> frozenset[str]:
    """:func:`_free_string_keys` of a trigger as a file writes it."""
    return _free_keys(_trigger_type_validator(trigger_type).schema)


def _free_keys(schema: Any) -> frozenset[str]:
    """The properties of an object schema that any non-empty string satisfies; empty when
    the schema has keywords that might look at such a value."""
    if not isinstance(schema, dict) or set(schema) - _PLAIN_OBJECT_KEYWORDS - {"$defs"}:
        return frozenset()
    free: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        if not isinstance(sub, dict) or set(sub) - _FREE_STRING_KEYWORDS:
            continue
        types = sub.get("type")
        accepts_strings = types == "string" or (isinstance(types, list) and "string" in types)
        if accepts_strings and int(sub.get("minLength", 0)) <= 1:
            free.add(key)
    return frozenset(free)


def _config_is_valid(trigger_type: TriggerType, config: dict[str, Any]) -> bool:
    """Whether a stored config is valid, cheaply: a start parses thousands of distinct
    configs that differ only in their expression and zone, so those values (any non-empty
    string is valid there) stand for one another and the rest is validated once per
    distinct shape."""
    rest = _with_free_strings_alike(config, _free_string_keys(trigger_type))
    seen = _valid_shapes.setdefault(trigger_type, {})
    if len(seen) >= _SHAPE_MEMO_LIMIT:
        seen.clear()
    return _valid_once(_config_validator(trigger_type), rest, seen)


def _with_free_strings_alike(value: dict[str, Any], free: frozenset[str]) -> dict[str, Any]:
    """A copy of ``value`` whose non-empty strings under the ``free`` keys are all one."""
    rest = dict(value)
    for key in free:
        item = rest.get(key)
        if isinstance(item, str) and item:
            rest[key] = _SOME_NAME
    return rest


def _collect(errors: Iterator[ValidationError], base: JsonPath, report: Report) -> None:
    for error in errors:
        for path, message in explain(error):
            report.add(base + path, message, about=base + tuple(error.absolute_path))


def explain(error: ValidationError) -> list[tuple[JsonPath, str]]:
    """One or more located, readable problems for one jsonschema error."""
    path: JsonPath = tuple(error.absolute_path)
    instance = error.instance
    value: Any = error.validator_value
    custom = _custom_message(error)
    if custom is not None:
        return [(path, custom)]
    match error.validator:
        case "additionalProperties" if isinstance(instance, dict):
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            return [
                ((*path, key), _unknown_key(key, known)) for key in instance if key not in known
            ]
        case "required" if isinstance(instance, dict):
            for key in value:
                if key not in instance and error.message.startswith(repr(key)):
                    return [(path, f"missing required key {key!r}")]
        case "type":
            wanted = [value] if isinstance(value, str) else list(value)
            names = [TYPE_WORDS.get(w, w) for w in wanted]
            words = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            return [(path, f"expected {words}, got {described(instance)}")]
        case "enum":
            choices = ", ".join(str(v) for v in value)
            hint = (
                suggestion(instance, [str(v) for v in value]) if isinstance(instance, str) else ""
            )
            return [(path, f"{show(instance)} is not one of {choices}{hint}")]
        case "const":
            return [(path, f"expected {show(value)}, got {show(instance)}")]
        case "minimum":
            return [(path, f"must be at least {value}, got {show(instance)}")]
        case "maximum":
            return [(path, f"must be at most {value}, got {show(instance)}")]
        case "exclusiveMinimum":
            return [(path, f"must be greater than {value}, got {show(instance)}")]
        case "minLength" | "minItems" if value == 1:
            return [(path, "must not be empty")]
        case "minLength":
            return [(path, f"must be at least {value} characters long")]
        case "maxLength":
            return [(path, f"must be at most {value} characters long")]
        case "uniqueItems":
            return [(path, "must not contain duplicates")]
    return [(path, error.message)]


def _unknown_key(key: str, known: dict[str, Any]) -> str:
    # In a trigger, a key of another trigger type is a likelier mistake than a typo.
    trigger_type = (
        known.get("type", {}).get("const") if isinstance(known.get("type"), dict) else None
    )
    if isinstance(trigger_type, str):
        for other, keys in _trigger_keys().items():
            if other != trigger_type and key in keys:
                return f"{key!r} applies to {other} triggers, not to {trigger_type} ones"
    return f"unknown key {key!r}{suggestion(key, known)}"


@functools.cache
def _trigger_keys() -> dict[str, frozenset[str]]:
    defs = definitions_schema()["$defs"]
    return {t.value: frozenset(defs[f"{t.value}Trigger"]["properties"]) for t in TriggerType}


def _custom_message(error: ValidationError) -> str | None:
    schema = error.schema
    if not isinstance(schema, dict):
        return None
    custom = schema.get("errorMessage")
    if isinstance(custom, dict):
        custom = custom.get(str(error.validator))
    if not isinstance(custom, str):
        return None
    return custom.replace("{value}", show(error.instance))
