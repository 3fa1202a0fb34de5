"""The difference of two workflow versions as the workflow page shows it. Pure.

difflib's work grows with the product of the two texts' lengths (13,000 lines a side took
4 s), so only the first lines of large versions are compared, and the page says so."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass

from triggerd.store.records import VersionRecord

# Compared at most, of each version's text: about 0.1 s of difflib at worst.
DIFF_MAX_LINES = 2_000
DIFF_MAX_CHARS = 256 * 1024


@dataclass(frozen=True, kw_only=True)
class VersionDiff:
    lines: tuple[tuple[str, str], ...]  # (kind, line): kind is add, remove, hunk or same
    cut: bool  # only the first lines of each version were compared
    compared_lines: int  # the most lines of either version compared


def version_text(version: VersionRecord, dumps: Callable[[object], str]) -> list[str]:
    """A version as stable, diffable lines (``dumps``: the page's JSON writer)."""
    document = {"graph": version.graph, "parameter_schema": version.parameter_schema,
                "env_config": version.env_config, "timeout_ms": version.timeout_ms}
    return dumps(document).splitlines()


def first_lines(lines: list[str], max_lines: int, max_chars: int) -> tuple[list[str], bool]:
    """The first lines of ``lines`` within both limits (at least one line, cut to
    ``max_chars``), and whether any were left off."""
    kept: list[str] = []
    chars = 0
    for line in lines[:max_lines]:
        if chars + len(line) > max_chars:
            if not kept:
                kept.append(line[:max_chars])
            return kept, True
        kept.append(line)
        chars += len(line)
    return kept, len(lines) > max_lines


def version_diff(old: VersionRecord, new: VersionRecord, *,
                 dumps: Callable[[object], str] = lambda v: json.dumps(v, indent=2,
                                                                        sort_keys=True),
                 max_lines: int = DIFF_MAX_LINES, max_chars: int = DIFF_MAX_CHARS
                 ) -> VersionDiff:
    """A unified diff of two versions, of at most their first ``max_lines`` lines (and
    ``max_chars`` characters) each."""
    old_lines, old_cut = first_lines(version_text(old, dumps), max_lines, max_chars)
    new_lines, new_cut = first_lines(version_text(new, dumps), max_lines, max_chars)
    out: list[tuple[str, str]] = []
    for line in difflib.unified_diff(old_lines, new_lines, fromfile=f"version {old.version}",
                                     tofile=f"version {new.version}", lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        kind = ("hunk" if line.startswith("@@") else "add" if line.startswith("+")
                else "remove" if line.startswith("-") else "same")
        out.append((kind, line))
    return VersionDiff(lines=tuple(out), cut=old_cut or new_cut,
                       compared_lines=max(len(old_lines), len(new_lines)))
