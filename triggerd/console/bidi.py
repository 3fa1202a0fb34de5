"""Bidirectional formatting characters on the console's pages.

Shown raw, one in a name, a note or an error turned the rest of its line around
(``"invoice\\u202efdp.exe"`` read ``invoiceexe.pdf``, and the quote after it moved). Pages
show each as its escape, as JSON writes it: the text around it keeps its order and the
operator sees that the value holds one.
"""

from __future__ import annotations

import re

from triggerd.terminal import BIDI_CLASS

BIDI_CONTROLS = re.compile(f"[{BIDI_CLASS}]")

# What a page's text is split at: its tags (autoescaping writes every '<' and '>' of a
# value as an entity, so a '<' in the output always opens one of the templates' own tags).
_TAG = re.compile(r"(<[^>]*>)")
# The text of these elements is a form field's value (sent back as typed) or no text at
# all: left as it is.
_RAW_TEXT = re.compile(r"<(textarea|script|style)\b", re.IGNORECASE)
# The attributes a browser shows as text (a tooltip, what a screen reader says): escaped
# as text is. Every other value (a link's target, a field's value) is used as it is.
_SHOWN_ATTRIBUTE = re.compile(r'(\s(?:title|aria-label|alt|placeholder)=")([^"]*)(")',
                              re.IGNORECASE)


def escape_controls(text: str) -> str:
    """``text`` with each bidi control written as ``\\uXXXX``."""
    return BIDI_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def show_controls(page: str) -> str:
    """A rendered page with the bidi controls of its text and of the attributes shown as
    text (a tooltip) written as escapes; other attribute values (a link's target, a
    field's value) and a textarea's value unchanged."""
    if BIDI_CONTROLS.search(page) is None:
        return page  # almost every page: one scan
    parts = _TAG.split(page)
    raw_until: str | None = None  # the closing tag of the raw-text element we are in
    for index, part in enumerate(parts):
        if index % 2 == 1:  # a tag
            parts[index] = _SHOWN_ATTRIBUTE.sub(
                lambda m: m.group(1) + escape_controls(m.group(2)) + m.group(3), part)
            if raw_until is not None:
                if part.lower().startswith(raw_until):
                    raw_until = None
            else:
                opened = _RAW_TEXT.match(part)
                if opened is not None and not part.endswith("/>"):
                    raw_until = f"</{opened.group(1).lower()}"
        elif raw_until is None and part:
            parts[index] = escape_controls(part)
    return "".join(parts)
