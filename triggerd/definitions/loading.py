"""Reading definition files: YAML or JSON text into plain JSON values, with located problems.

YAML is read with two deliberate departures from PyYAML's YAML 1.1 defaults, because both
silently corrupt definition files:

* only ``true``/``false`` are booleans: in YAML 1.1 the edge key ``on:`` (and ``yes``,
  ``no``, ``off``) would become a boolean;
* dates and times stay strings (``day: 2024-01-01`` is not turned into a ``date``, which is
  not a JSON value).

Duplicate mapping keys, which PyYAML and ``json`` silently resolve to the last one, are
reported with their line, as are non-string keys and values JSON cannot hold.

Nesting is bounded (:data:`MAX_DEPTH` levels, aliases expanded) and so are the values YAML
aliases expand to: both are refused while reading, with their line, before any later pass
walks the document (each would otherwise hang or run out of stack).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import yaml
from yaml.events import AliasEvent, Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from triggerd.definitions.problems import JsonPath, Report, described
from triggerd.jsonrules import JsonRefusal, finite_float, refuse_constant, too_many_digits
from triggerd.storable import MAX_JSON_DEPTH

YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)

_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


# The deepest a value may sit below the document (the API's and --input's limit too).
MAX_DEPTH = MAX_JSON_DEPTH


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Loader(yaml.SafeLoader):
    """SafeLoader whose implicit booleans are only true/false, which keeps dates as text, and
    which stops composing at :attr:`max_depth` levels, aliases expanded.

    PyYAML's composer recurses once per level, so the bound also keeps it from running out
    of stack; an alias is measured by the height of the node it names, known because an
    anchor is always composed before its aliases."""

    max_depth = MAX_DEPTH

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._heights: dict[int, int] = {}  # id(node) -> levels below it

    def _next_line(self) -> int:
        event: Event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark
        return 0 if mark is None else int(mark.line) + 1

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            line = self._next_line()
            node = super().compose_node(parent, index)
            # A recursive alias has no height yet: the builder reports it.
            if node is not None and self._depth + self._heights.get(id(node), 0) > self.max_depth:
                raise _TooDeep(line)
            return node
        if self._depth > self.max_depth:
            raise _TooDeep(self._next_line())
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            return node
        if children:
            self._heights[id(node)] = 1 + max(self._heights.get(id(c), 0) for c in children)
        return node


# YAML 1.2's plain scalars rather than YAML 1.1's (PyYAML's): only true/false are
# booleans, no timestamps, and numbers as JSON writes them. YAML 1.1 read 12:30 as 750
# (base 60), 01234 as 668 (octal) and 1_000 as 1000, and left 1e3 a string: a trigger's
# input changed without a word. Now 12:30, 01234 and 1_000 are strings, 1e3 is 1000.0, and
# 0x1F is still 31. (.inf and .nan still resolve, to be refused as not JSON values.)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in (_BOOL_TAG, _TIMESTAMP_TAG, _INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(r"^(?:[-+]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
               r"|[0-9]+[eE][-+]?[0-9]+)"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)


# libyaml (PyYAML's C extension) reads a large file many times faster than the pure-Python
# reader. It is used only where it gives exactly what _Loader gives: the same resolvers and
# constructor; depth and aliases are measured on its event stream first (cheap, and its
# composer recurses per level in C, which a very deep file would crash); and on any
# error, or anything the pass does not expect, the file is read again by _Loader, so that
# every message stays the pure reader's.
_CParser: Any
try:
    from yaml import _yaml

    _CParser = _yaml.CParser
except ImportError:  # PyYAML built without libyaml
    _CParser = None

LIBYAML = _CParser is not None

# libyaml 0.2.5 and later refuse more than 1,000 levels of nesting themselves, so their
# composer's recursion stays bounded without the event pass measuring the file first.
_NESTING_BOUNDED = _CParser is not None and _yaml.get_version() >= (0, 2, 5)


if _CParser is not None:

    class _CLoader(_CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        """libyaml's parser and composer with _Loader's resolvers and constructor."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            # libyaml's composer calls these around every node; without path resolvers
            # (there are none) they do nothing, and builtins do nothing faster than a
            # Python method: a large file is a million nodes.
            self.descend_resolver = _IGNORE_TWO  # type: ignore[method-assign, assignment]
            self.ascend_resolver = tuple  # type: ignore[method-assign, assignment]

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            # Resolver.resolve less its generality: without path resolvers a collection's tag
            # is the default one, and a scalar's depends on its text only (there is no
            # resolver for any first character); only a plain scalar is resolved.
            if kind is not ScalarNode:
                return _MAP_TAG if kind is MappingNode else _SEQ_TAG
            if implicit[0]:
                for tag, regexp in _FIRST_CHARACTER_RESOLVERS.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR_TAG

    _CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    assert None not in _Loader.yaml_implicit_resolvers  # resolve() looks only by first character
    _FIRST_CHARACTER_RESOLVERS = {
        first: tuple(resolvers) for first, resolvers in _Loader.yaml_implicit_resolvers.items()
    }
    _IGNORE_TWO: Callable[[Any, Any], Any] = {}.get  # (parent, index): any hashable two


class _Fallback(Exception):
    """The event pass met something only the pure-Python reader reports exactly."""


def _check_events(text: str, max_depth: int) -> bool:
    """Raise :class:`_TooDeep` where _Loader would, from libyaml's events: a node at
    ``max_depth + 1`` levels, or an alias whose anchored node, put at the alias, reaches
    past ``max_depth``. Raises :class:`_Fallback` on a syntax error, an unknown or repeated
    anchor, or a second document. Returns whether the text has any alias."""
    heights: dict[str, int] = {}  # anchor -> levels below its node (0 while it is open)
    # One frame per open collection: [its anchor, the greatest height among its children,
    # whether it has any].
    stack: list[list[Any]] = []
    documents = 0
    aliases = False
    try:
        for event in yaml.parse(text, Loader=cast(Any, _CLoader)):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _Fallback
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, tallest, any_child = stack.pop()
                height = 1 + tallest if any_child else 0
                if anchor is not None:
                    heights[anchor] = height
                _child(stack, height)
                continue
            if isinstance(event, yaml.AliasEvent):
                aliases = True
                if event.anchor not in heights:
                    raise _Fallback  # undefined: _Loader says so in its words
                height = heights[event.anchor]
                if len(stack) + height > max_depth:
                    raise _TooDeep(_event_line(event))
                _child(stack, height)
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            if len(stack) > max_depth:
                raise _TooDeep(_event_line(event))
            anchor = event.anchor
            if anchor is not None:
                if anchor in heights:
                    raise _Fallback
                heights[anchor] = 0
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([anchor, 0, False])
            else:
                _child(stack, 0)
    except yaml.YAMLError:
        raise _Fallback from None
    return aliases


def _event_line(event: Event) -> int:
    mark = event.start_mark
    return 0 if mark is None else int(mark.line) + 1


def _child(stack: list[list[Any]], height: int) -> None:
    if stack:
        frame = stack[-1]
        frame[1] = max(frame[1], height)
        frame[2] = True


def expand_paths(paths: Sequence[str | Path]) -> list[str | Path]:
    """``paths`` with each directory replaced by the definition files directly in it
    (``.yaml``, ``.yml``, ``.json``; by name; hidden files and subdirectories are not
    read), each file once. A directory with none stays: reading it says so (an empty
    directory applied with ``--prune`` must not mean "delete every workflow")."""
    expanded: list[str | Path] = []
    seen: set[str] = set()
    for path in paths:
        folder = Path(path)
        files: list[str | Path] = [path]
        if folder.is_dir():
            try:
                found = sorted(
                    child for child in folder.iterdir()
                    if child.suffix.lower() in YAML_SUFFIXES + JSON_SUFFIXES
                    and not child.name.startswith(".")
                    # A link that leads nowhere is read (and says so), not skipped.
                    and (child.is_file() or (child.is_symlink() and not child.exists()))
                )
            except OSError:  # reading it says why
                found = []
            files = [str(child) for child in found] or files
        for file in files:
            # One file named twice (f/a.yaml and ./f/a.yaml, or by a directory and by
            # name) is read once: else its workflows were "defined twice".
            try:
                identity = os.path.realpath(file)
            except ValueError:  # a NUL in the name: reading it says so
                identity = str(file)
            if identity not in seen:
                seen.add(identity)
                expanded.append(file)
    return expanded


def read_file(path: str | Path, report: Report, data: bytes | None = None) -> tuple[bool, Any]:
    """Read and parse one file (or its bytes ``data``, already read); ``(False, None)`` when
    it could not be parsed at all."""
    file = Path(path)
    if data is None and file.is_dir():
        try:
            next(file.iterdir(), None)
        except OSError as exc:
            report.add((), f"cannot read directory: {exc.strerror or exc}")
        else:
            report.add((), "a directory with no definition files (.yaml, .yml or .json) in it")
        return False, None
    suffix = file.suffix.lower()
    if suffix not in YAML_SUFFIXES + JSON_SUFFIXES:
        if data is None and not file.exists() and not file.is_symlink():
            # A directory or a file that is not there (a typo, not made yet): said as a
            # missing .yaml file is, not as a file of the wrong type.
            report.add((), "cannot read file: No such file or directory")
        else:
            report.add((), "unknown file type: definition files end in .yaml, .yml or .json")
        return False, None
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the text.
        if data is None:
            text = file.read_text(encoding="utf-8-sig")
        else:  # decoded as read_text decodes (universal newlines)
            text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig").read()
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
    max_depth: int = MAX_DEPTH,
    libyaml: bool = True,
) -> tuple[bool, Any]:
    """Parse YAML text; syntax errors become one problem with the line and column, and a
    file whose aliases expand it beyond the limit, or nested deeper than ``max_depth``
    levels, is refused before anything is built. ``libyaml=False`` reads with the
    pure-Python reader only (the results are the same)."""
    with paused_gc():
        return _parse_yaml(text, report, max_values, max_factor, max_depth, libyaml)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: reading a large file creates millions of objects
    that all stay alive, and each collection would walk them again for nothing (it took
    three quarters of the time libyaml takes for a 10 MB file)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_yaml(
    text: str, report: Report, max_values: int, max_factor: int, max_depth: int, libyaml: bool
) -> tuple[bool, Any]:
    if libyaml and _CParser is not None and _NESTING_BOUNDED:
        one_pass = _parse_yaml_once(text, report, max_depth)
        if one_pass is not None:
            return one_pass
    if libyaml and _CParser is not None:
        try:
            aliases = _check_events(text, max_depth)
        except _TooDeep as exc:
            report.add((), _too_deep(max_depth, exc.line))
            return False, None
        except _Fallback:
            pass
        else:
            checked = Report(file=report.file)
            # Without aliases a file stands for as many values as it has: never too many.
            sizes = aliases or max_factor < 1
            result = _parse_yaml_with(
                _CLoader(text), text, checked, max_values, max_factor, max_depth, sizes=sizes
            )
            if result is not None:
                report.take(checked)
                return result
    try:
        loader = _Loader(text)  # the reader checks the characters here already
    except yaml.reader.ReaderError as exc:  # a control character such as \x07
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        report.add((), f"YAML syntax error at line {line}, column {column}: the character"
                       f" U+{code:04X} is not allowed in YAML (write it as an escape in a"
                       f' double-quoted string, e.g. "\\x07")')
        return False, None
    loader.max_depth = max_depth
    parsed = _parse_yaml_with(loader, text, report, max_values, max_factor, max_depth)
    assert parsed is not None
    return parsed


def _parse_yaml_once(text: str, report: Report, max_depth: int) -> tuple[bool, Any] | None:
    """Compose with libyaml and build, measuring depth on the way, without the event pass
    (a second reading of the whole file, a third of the time of a large one). ``None`` when
    the file needs that pass or the pure reader: any alias (their expansion is measured
    over the whole file first), a merge key or a collection as a key (either changes the
    order the builder meets nodes in), or anything libyaml refuses."""
    checked = Report(file=report.file)
    loader = _CLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return True, None
        # Without an anchor there can be no alias (libyaml refuses an undefined one).
        if "&" in text:
            _measure(node, max_depth)
        else:
            _measure_unaliased(node, max_depth)
        value = _YamlBuilder(loader, checked).build(node, ())
    except _TooDeep as exc:
        report.add((), _too_deep(max_depth, exc.line))
        return False, None
    except (_Fallback, yaml.YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()
    report.take(checked)
    return True, value


def _measure_unaliased(root: Node, max_depth: int) -> None:
    """:func:`_measure` for a tree without aliases, cheaply: a level at a time, over the
    collections only (a tenth of the nodes of a definition file); the ordered walk runs
    only to name the line of a node found too deep."""
    level: list[Node] = [root] if isinstance(root, MappingNode | SequenceNode) else []
    depth = 0
    while level:
        if depth >= max_depth and any(node.value for node in level):
            _measure(root, max_depth)  # raises at the first such node in document order
        below: list[Node] = []
        for node in level:
            if isinstance(node, MappingNode):
                for key, value in node.value:
                    if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                        raise _Fallback
                    if not isinstance(value, ScalarNode):
                        below.append(value)
            else:
                below.extend(item for item in node.value if not isinstance(item, ScalarNode))
        level = below
        depth += 1


def _measure(root: Node, max_depth: int) -> None:
    """Raise :class:`_TooDeep` at the first node (in document order, as _Loader) deeper
    than ``max_depth`` levels, before anything is built; :class:`_Fallback` at the first
    alias (a node met twice), merge key or collection used as a key, which the event pass
    and the builder's own order handle."""
    met: set[int] = set()
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:  # preorder: children are pushed last first
        node, depth = stack.pop()
        if id(node) in met:
            raise _Fallback
        met.add(id(node))
        if isinstance(node, ScalarNode) or not node.value:
            continue
        children: list[Node]
        if isinstance(node, MappingNode):
            children = []
            for key, value in node.value:
                if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                    raise _Fallback
                children += (key, value)
        else:
            children = list(node.value)
        if depth >= max_depth:
            raise _TooDeep(_line(children[0]))
        stack.extend((child, depth + 1) for child in reversed(children))


def _parse_yaml_with(
    loader: Any,
    text: str,
    report: Report,
    max_values: int,
    max_factor: int,
    max_depth: int,
    *,
    sizes: bool = True,
) -> tuple[bool, Any] | None:
    """Compose with ``loader`` and build; ``None`` when the libyaml loader met a syntax
    error (the caller reads the text again with _Loader for its exact message)."""
    pure = isinstance(loader, _Loader)
    try:
        node = loader.get_single_node()
        if node is None:
            return True, None
        expanded = _ExpandedSize()
        total = expanded.of(node) if sizes else 0
        limit = max(max_values, max_factor * len(expanded.memo))
        if total > limit:
            over = expanded.first_over(limit) or node
            report.add(
                (),
                f"YAML aliases expand this file to more than {limit:,} values (at line"
                f" {_line(over)}): write the repeated parts out, or use fewer aliases",
            )
            return False, None
        return True, _YamlBuilder(loader, report).build(node, ())
    except yaml.MarkedYAMLError as exc:
        if not pure:
            return None
        report.add((), f"YAML syntax error{_where(exc)}: {_yaml_reason(exc)}")
    except yaml.YAMLError as exc:
        if not pure:
            return None
        report.add((), f"YAML syntax error: {exc}")
    except _TooDeep as exc:
        report.add((), _too_deep(max_depth, exc.line))
    except RecursionError:
        report.add((), "the document is nested too deeply")
    finally:
        loader.dispose()
    return False, None


def _too_deep(limit: int, line: int) -> str:
    return f"nested deeper than {limit} levels (at line {line})"


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
        if node.tag == _STR_TAG and isinstance(node, ScalarNode):
            return node.value  # what the constructor returns for it, without its detour
        key = id(node)
        if key in self._built:
            return self._built[key]
        if key in self._active:
            self._report.add_stand_in(path, f"recursive YAML alias (line {_line(node)})")
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
            self._report.add_stand_in(path, f"{exc.problem} (line {_line(node)})")
            return None
        except ValueError:  # int() of more digits than Python reads
            self._report.add_stand_in(path, f"{too_many_digits()} (line {_line(node)})")
            return None
        if value is None or isinstance(value, str | bool | int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        self._report.add_stand_in(
            path, f"{node.value!r} ({tag}) is not a JSON value (line {_line(node)})")
        return None

    def _sequence(self, node: SequenceNode, path: JsonPath) -> list[Any]:
        if node.tag != _SEQ_TAG:
            self._report.add(path, f"unsupported YAML tag {node.tag!r} (line {_line(node)})")
        return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]

    def _mapping(self, node: MappingNode, path: JsonPath) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self._report.add(path, f"unsupported YAML tag {node.tag!r} (line {_line(node)})")
        pairs = node.value
        # The common case, every key a plain string and none twice: no merge to flatten, no
        # key to construct and no line to look up (a large file is 100,000s of mappings).
        if all(type(key) is ScalarNode and key.tag == _STR_TAG for key, _ in pairs):
            keys = [key.value for key, _ in pairs]
            if len(set(keys)) == len(keys):
                # A string value is itself (see build), without a path made for it.
                return {key: value.value if type(value) is ScalarNode and value.tag == _STR_TAG
                        else self.build(value, (*path, key))
                        for key, (_, value) in zip(keys, pairs, strict=True)}
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
            self._report.add_stand_in(path, f"{exc.problem} (line {_line(node)})")
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
        if node.tag == _STR_TAG:
            return node.value
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


# A JSON string (skipped whole, so brackets inside it do not count) or a bracket.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def json_too_deep(text: str, limit: int = MAX_DEPTH) -> int | None:
    """The line of the first bracket of ``text`` nested deeper than ``limit`` levels below
    the document, or ``None``. Looked for before parsing: the parser itself, and every pass
    after it, recurse once per level."""
    depth = -1  # the document's own bracket is level 0
    for match in _JSON_NESTING.finditer(text):
        first = text[match.start()]
        if first in "[{":
            depth += 1
            if depth > limit:
                return text.count("\n", 0, match.start()) + 1
        elif first in "]}":
            depth -= 1
    return None


def parse_json(text: str, report: Report, *, max_depth: int = MAX_DEPTH) -> tuple[bool, Any]:
    """Parse JSON text; syntax errors become one problem with the line and column, and
    nesting deeper than ``max_depth`` levels one problem with its line."""
    line = json_too_deep(text, max_depth)
    if line is not None:
        report.add((), _too_deep(max_depth, line))
        return False, None
    try:
        raw = json.loads(text, object_pairs_hook=_pairs, parse_constant=refuse_constant,
                         parse_float=finite_float)
    except json.JSONDecodeError as exc:
        report.add((), f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return False, None
    except JsonRefusal as exc:
        report.add((), f"JSON syntax error: {exc}")
        return False, None
    except RecursionError:
        report.add((), "the document is nested too deeply")
        return False, None
    except ValueError as exc:  # int() of more digits than Python reads
        digits = re.search(rf"[0-9]{{{sys.get_int_max_str_digits() + 1},}}", text)
        if digits is None:
            report.add((), f"JSON syntax error: {exc}")
        else:
            line = text.count("\n", 0, digits.start()) + 1
            report.add((), f"{too_many_digits()} (line {line})")
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
