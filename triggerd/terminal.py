"""Stored text as the command line prints it.

Error messages, notes, webhook bodies and names come from webhook senders, workflows and
other tenants' admins. Printed raw, their control characters would drive the operator's
terminal (ESC/CSI sequences clear it or set its title, CR and backspace overwrite what it
shows, bidi controls reorder it); they are written as ``\\uXXXX`` escapes instead, as the
console writes bidi controls.
"""

from __future__ import annotations

import re

# The bidi controls: embeddings, overrides, isolates and the marks (U+061C ARABIC LETTER
# MARK included). The console escapes these on its pages (triggerd/console/bidi.py).
BIDI_CLASS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# C0 (but newline and tab, which multi-line text keeps), DEL, C1 and the bidi controls.
_CONTROLS = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{BIDI_CLASS}]")
# One line of a table or a list: newline and tab too.
_LINE_CONTROLS = re.compile("[\t\n]|" + _CONTROLS.pattern)


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def printable(text: str) -> str:
    """``text`` with each control character but newline and tab written as its escape."""
    return _CONTROLS.sub(_escape, text)


def printable_line(text: str) -> str:
    """``text`` as one line (a table cell): every control character written as its
    escape, newline and tab too."""
    return _LINE_CONTROLS.sub(_escape, text)
