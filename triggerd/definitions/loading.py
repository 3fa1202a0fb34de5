"""Reading definition files: YAML or JSON text into plain JSON values, with located problems.

YAML is read with two deliberate departures from PyYAML's YAML 1.1 defaults, because both
silently corrupt definition files:

* only ``true``/``false`` are booleans: in YAML 1.1 the edge key ``on:`` (and ``yes``,
  ``no``, ``off``) would become a boolean;
* dates and times stay strings (``day: 2024-01-01`` is not turned into a ``date``, which is
  not a JSON value).

Duplicate mapping keys, which PyYAML and ``json`` silently resolve to the last one, are
reported with their line, as are non-string keys and values JSON cannot hold.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from triggerd.definitions.problems import JsonPath, Report, described

YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)

_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader whose implicit booleans are only true/false and which keeps dates as text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_file(path: str | Path, report: Report) -> tuple[bool, Any]:
    """Read and parse one file; ``(False, None)`` when it could not be parsed at all."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in YAML_SUFFIXES + JSON_SUFFIXES:
        report.add((), "unknown file type: definition files end in .yaml, .yml or .json")
        return False, None
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        report.add((), "cannot read file: it is not UTF-8 text")
        return False, None
    except OSError as exc:
        report.add((), f"cannot read file: {exc.strerror or exc}")
        return False, None
    if suffix in JSON_SUFFIXES:
        return parse_json(text, report)
    return parse_yaml(text, report)


# Aliases may repeat parts of a file, but not blow it up: the values a file expands to
# are bounded by this floor or this many times its own distinct values, whichever is
# larger (an "alias bomb" of ten levels of nine aliases expands to 9^10 values).
MAX_YAML_VALUES = 1_000_000
MAX_YAML_EXPANSION = 10


def parse_yaml(
    text: str,
    report: Report,
    *,
    max_values: int = MAX_YAML_VALUES,
    max_factor: int = MAX_YAML_EXPANSION,
) -> tuple[bool, Any]:
    """Parse YAML text; syntax errors become one problem with the line and column, and a
    file whose aliases expand it beyond the limit is refused before anything is built."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return True, None
        sizes = _ExpandedSize()
        total = sizes.of(node)
        limit = max(max_values, max_factor * len(sizes.memo))
        if total > limit:
            over = sizes.first_over(limit) or node
            report.add(
                (),
                f"YAML aliases expand this file to more than {limit:,} values (at line"
                f" {_line(over)}): write the repeated parts out, or use fewer aliases",
            )
            return False, None
        return True, _YamlBuilder(loader, report).build(node, ())
    except yaml.MarkedYAMLError as exc:
        report.add((), f"YAML syntax error{_where(exc)}: {_yaml_reason(exc)}")
    except yaml.YAMLError as exc:
        report.add((), f"YAML syntax error: {exc}")
    except RecursionError:
        report.add((), "the document is nested too deeply")
    finally:
        loader.dispose()
    return False, None


def _where(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}"


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    reason = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem and exc.context != exc.problem:
        return f"{exc.problem} ({exc.context})"
    return reason


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _ExpandedSize:
    """How many values each node stands for once aliases are expanded, computed once per
    distinct node (so the count itself stays linear in the file)."""

    def __init__(self) -> None:
        self.memo: dict[int, tuple[int, Node]] = {}
        self._active: set[int] = set()

    def of(self, node: Node) -> int:
        key = id(node)
        known = self.memo.get(key)
        if known is not None:
            return known[0]
        if key in self._active:
            return 1  # a recursive alias: the builder reports it
        self._active.add(key)
        try:
            if isinstance(node, MappingNode):
                total = 1 + sum(self.of(k) + self.of(v) for k, v in node.value)
            elif isinstance(node, SequenceNode):
                total = 1 + sum(self.of(item) for item in node.value)
            else:
                total = 1
        finally:
            self._active.discard(key)
        self.memo[key] = (total, node)
        return total

    def first_over(self, limit: int) -> Node | None:
        """The first node (in the order sizes were computed) whose size passes ``limit``."""
        for total, node in self.memo.values():
            if total > limit:
                return node
        return None


def expanded_yaml_size(text: str) -> int:
    """The number of values ``text`` stands for with every alias expanded."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return 0 if node is None else _ExpandedSize().of(node)
    finally:
        loader.dispose()


class _YamlBuilder:
    """Turns a composed YAML node tree into JSON values, reporting what JSON cannot hold."""

    def __init__(self, loader: _Loader, report: Report) -> None:
        self._loader = loader
        self._report = report
        # Aliases share nodes: build each node once (so `*alias` fan-out stays linear) and
        # refuse an alias that contains itself.
        self._built: dict[int, Any] = {}
        self._active: set[int] = set()

    def build(self, node: Node, path: JsonPath) -> Any:
        key = id(node)
        if key in self._built:
            return self._built[key]
        if key in self._active:
            self._report.add(path, f"recursive YAML alias (line {_line(node)})")
            return None
        self._active.add(key)
        try:
            if isinstance(node, MappingNode):
                value: Any = self._mapping(node, path)
            elif isinstance(node, SequenceNode):
                value = self._sequence(node, path)
            else:
                assert isinstance(node, ScalarNode)
                value = self._scalar(node, path)
        finally:
            self._active.discard(key)
        self._built[key] = value
        return value

    def _scalar(self, node: ScalarNode, path: JsonPath) -> Any:
        try:
            value = self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self._report.add(path, f"{exc.problem} (line {_line(node)})")
            return None
        if value is None or isinstance(value, str | bool | int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        self._report.add(path, f"{node.value!r} ({tag}) is not a JSON value (line {_line(node)})")
        return None

    def _sequence(self, node: SequenceNode, path: JsonPath) -> list[Any]:
        if node.tag != _SEQ_TAG:
            self._report.add(path, f"unsupported YAML tag {node.tag!r} (line {_line(node)})")
        return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]

    def _mapping(self, node: MappingNode, path: JsonPath) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self._report.add(path, f"unsupported YAML tag {node.tag!r} (line {_line(node)})")
        # Duplicates among the mapping's own keys are mistakes; keys brought in by a merge
        # (`<<: *defaults`) are meant to be overridden, so look before flattening.
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                key = self._key(key_node)
                if isinstance(key, str):
                    if key in first_line:
                        self._report.add(
                            (*path, key),
                            f"duplicate key {key!r} (line {_line(key_node)};"
                            f" first at line {first_line[key]})",
                        )
                    else:
                        first_line[key] = _line(key_node)
        try:
            self._loader.flatten_mapping(node)
        except yaml.constructor.ConstructorError as exc:
            self._report.add(path, f"{exc.problem} (line {_line(node)})")
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node) if isinstance(key_node, ScalarNode) else key_node
            if not isinstance(key, str):
                self._report.add(
                    path,
                    f"mapping keys must be strings, got {described(key)} (line {_line(key_node)})"
                    if isinstance(key_node, ScalarNode)
                    else f"mapping keys must be strings (line {_line(key_node)})",
                )
                continue
            result[key] = self.build(value_node, (*path, key))
        return result

    def _key(self, node: ScalarNode) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            return None


class _Pairs(dict[str, Any]):
    """A JSON object that remembers the keys it saw more than once."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    result = _Pairs()
    result.duplicates = []
    for key, value in pairs:
        if key in result:
            result.duplicates.append(key)
        result[key] = value
    return result


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def parse_json(text: str, report: Report) -> tuple[bool, Any]:
    """Parse JSON text; syntax errors become one problem with the line and column."""
    try:
        raw = json.loads(text, object_pairs_hook=_pairs, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        report.add((), f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return False, None
    except _NotJson as exc:
        report.add((), f"JSON syntax error: {exc}")
        return False, None
    except RecursionError:
        report.add((), "the document is nested too deeply")
        return False, None
    return True, _plain(raw, (), report)


def _plain(value: Any, path: JsonPath, report: Report) -> Any:
    """Plain dicts instead of :class:`_Pairs`, reporting duplicate keys where they are."""
    if isinstance(value, _Pairs):
        for key in value.duplicates:
            report.add((*path, key), f"duplicate key {key!r}")
        return {k: _plain(v, (*path, k), report) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, (*path, i), report) for i, v in enumerate(value)]
    return value
