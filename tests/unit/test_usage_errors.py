"""A usage error's message as the API says it, and what the CLI needs to name options."""

from __future__ import annotations

from triggerd.errors import UsageError, name_inputs


def test_named_inputs_read_as_plain_words_in_the_message() -> None:
    exc = UsageError("the range is empty: {to} (b) must be after {from} (a)",
                     names=("to", "from"))
    assert exc.message == exc.problem == "the range is empty: to (b) must be after from (a)"
    assert name_inputs(exc.template, {"to": "--to", "from": "--from"}) == (
        "the range is empty: --to (b) must be after --from (a)")


def test_a_field_prefixes_the_message_and_other_braces_stay() -> None:
    exc = UsageError("{note} {x} is not {}", field="note", names=("note",))
    assert exc.message == "note: note {x} is not {}"
    assert exc.problem == "note {x} is not {}"
