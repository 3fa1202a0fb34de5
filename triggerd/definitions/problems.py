"""Collecting problems with their location, and showing values and paths to a person."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from triggerd.errors import DefinitionError, Problem

# A location inside a document: mapping keys and list indexes, outermost first.
JsonPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Iterable[str | int]) -> str:
    """``("workflows", 0, "graph")`` -> ``$.workflows[0].graph``; odd keys are quoted."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _PLAIN_KEY.match(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(parts)


def show(value: Any, *, limit: int = 60) -> str:
    """A short, YAML/JSON-flavoured rendering of a value for messages."""
    if isinstance(value, str):
        text = repr(value)
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float) and not (
        isinstance(value, float) and not math.isfinite(value)
    ):
        text = str(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
        except ValueError:  # NaN or a circular structure
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind(value: Any) -> str:
    """The JSON/YAML kind of a value, with an article: 'a string', 'a list', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def described(value: Any) -> str:
    """``8080 (an integer)``, ``a list``, ``null``: what a wrong value was."""
    if isinstance(value, dict | list | tuple) or value is None:
        return kind(value)
    return f"{show(value)} ({kind(value)})"


def suggestion(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'retry'?)`` when ``word`` looks like a typo of one of ``choices``."""
    options = list(choices)
    same_letters = [c for c in options if c.lower() == word.lower() and c != word]
    close = same_letters or difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(kw_only=True)
class Report:
    """The problems found in one file (or one stored document), in discovery order."""

    file: str
    items: list[tuple[JsonPath, str]] = field(default_factory=list)
    # Where the reader put null in place of a value JSON cannot hold (.inf, !!binary): what
    # the later checks find there is about that null, not about the file ("expected a
    # duration, got null" beside "'.inf' is not a JSON value"), so it is not reported.
    stand_ins: list[JsonPath] = field(default_factory=list)

    def add(self, path: JsonPath, message: str, *, about: JsonPath | None = None) -> None:
        """Add a problem at ``path`` about the value at ``about`` (default: ``path``; an
        unknown key is a problem at the key, about the mapping that has it)."""
        if self.stand_ins:
            value = path if about is None else about
            if any(value[:len(p)] == p for p in self.stand_ins):
                return
        if (path, message) not in self.items:
            self.items.append((path, message))

    def add_stand_in(self, path: JsonPath, message: str) -> None:
        """Report a value the reader could not read (``message``), replaced by null."""
        self.add(path, message)
        if path:  # the whole document is never checked further
            self.stand_ins.append(path)

    def take(self, other: Report) -> None:
        """Add ``other``'s problems and stand-ins (a reader's scratch report)."""
        for path, message in other.items:
            self.add(path, message)
        self.stand_ins.extend(other.stand_ins)

    def problems(self, document: Any = None) -> list[Problem]:
        """The problems as :class:`Problem` values, in document order when ``document`` is
        given (so a person reads them top to bottom), else in discovery order."""
        # Only problems need the document's order (numbering every path of a large valid
        # file took most of a second).
        positions = _preorder(document) if document is not None and self.items else {}
        indexed = list(enumerate(self.items))

        def position(entry: tuple[int, tuple[JsonPath, str]]) -> tuple[int, int]:
            seq, (path, _) = entry
            for end in range(len(path), -1, -1):
                found = positions.get(path[:end])
                if found is not None:
                    return (found, seq)
            return (-1, seq)

        if positions:
            indexed.sort(key=position)
        return [Problem(self.file, format_path(path), message) for _, (path, message) in indexed]


def _preorder(document: Any) -> dict[JsonPath, int]:
    """Every path in ``document`` numbered in reading order."""
    positions: dict[JsonPath, int] = {}
    stack: list[tuple[JsonPath, Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if path in positions:
            continue
        positions[path] = len(positions)
        if isinstance(value, dict):
            children = [((*path, k), v) for k, v in value.items() if isinstance(k, str)]
        elif isinstance(value, list):
            children = [((*path, i), v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(children))
    return positions


def definition_error(problems: list[Problem]) -> DefinitionError:
    """One error carrying every problem; its message names the first and counts the rest."""
    count = len(problems)
    first = str(problems[0])
    more = f" (and {count - 1} more)" if count > 1 else ""
    noun = "problem" if count == 1 else "problems"
    return DefinitionError(f"{count} {noun} in definitions: {first}{more}", problems)
