"""Bidi controls on the console's pages are written as escapes in text, nowhere else."""

from __future__ import annotations

import pytest

from triggerd.console.bidi import escape_controls, show_controls


@pytest.mark.parametrize("control", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
                                     "\u2066", "\u2067", "\u2068", "\u2069", "\u200e",
                                     "\u200f", "\u061c"])
def test_every_control_in_text_is_written_as_its_escape(control: str) -> None:
    escaped = f"\\u{ord(control):04x}"
    assert show_controls(f"<td>a{control}b</td>") == f"<td>a{escaped}b</td>"
    assert escape_controls(control) == escaped


def test_tags_and_a_textarea_keep_their_values() -> None:
    # A link's target and a field's value are the value itself (sent back as it is); a
    # tooltip is text the operator reads.
    page = ('<a href="/ui/x?t=a\u202eb" title="n\u202e">n\u202eo</a>'
            '<textarea name="input">{"a": "\u202e"}</textarea><p>\u202e</p>'
            '<TEXTAREA>\u2066</TEXTAREA>x\u2069')
    assert show_controls(page) == (
        '<a href="/ui/x?t=a\u202eb" title="n\\u202e">n\\u202eo</a>'
        '<textarea name="input">{"a": "\u202e"}</textarea><p>\\u202e</p>'
        '<TEXTAREA>\u2066</TEXTAREA>x\\u2069')


def test_a_page_without_any_is_returned_as_it_is() -> None:
    page = "<p>مرحبا &lt;b&gt; שלום</p>"
    assert show_controls(page) is page


def test_attributes_a_browser_shows_are_written_as_escapes() -> None:
    # A skip note is a recorded slot's tooltip: "invoice\u202efdp.exe" read invoiceexe.pdf.
    page = ('<li class="slot" title="skipped by x: invoice\u202efdp.exe">'
            '<svg aria-label="a\u2067b"><img alt="c\u200fd" src="/i?\u202e">'
            '<input placeholder="e\u2066f" value="g\u2066h" data-title="i\u202ej">')
    assert show_controls(page) == (
        '<li class="slot" title="skipped by x: invoice\\u202efdp.exe">'
        '<svg aria-label="a\\u2067b"><img alt="c\\u200fd" src="/i?\u202e">'
        '<input placeholder="e\\u2066f" value="g\u2066h" data-title="i\u202ej">')
