"""Control characters in stored text reach the terminal as escapes, not as commands."""

from __future__ import annotations

import pytest

from triggerd.terminal import printable, printable_line


@pytest.mark.parametrize("control", ["\x00", "\x07", "\x08", "\r", "\x1b", "\x7f", "\x85",
                                     "\x9b", "\u202e", "\u2066"])
def test_every_control_is_written_as_its_escape(control: str) -> None:
    escaped = f"\\u{ord(control):04x}"
    assert printable(f"a{control}b") == f"a{escaped}b"
    assert printable_line(f"a{control}b") == f"a{escaped}b"


# Built, not written as one literal: tests/unit/test_yaml_readers.py reads every string
# of the unit tests as YAML, and the two YAML readers disagree on this one (libyaml takes a
# tab after a line break in a plain scalar, the pure-Python reader refuses it).
MULTILINE = "a\nb" + chr(9) + "c"


def test_newline_and_tab_end_a_line_only_where_text_may_have_several() -> None:
    assert printable(MULTILINE) == MULTILINE
    assert printable_line(MULTILINE) == "a\\u000ab\\u0009c"


def test_text_without_controls_is_returned_as_it_is() -> None:
    text = "naïve — 日本 {\"a\": 1} \\u001b"
    assert printable(text) == text
    assert printable_line(text) == text
