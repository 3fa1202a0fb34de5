"""The command line's options as the parser takes them: each valued option once, and a
filter's value that cannot be what it filters on refused as bad input."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import pytest

from triggerd.cli import _StoreOnce, build_parser, checked_filter, repeated_option
from triggerd.errors import UsageError
from triggerd.model import audit_target_problem, key_filter_problem, trigger_filter_problem

# A value each option's type takes (the options' own checks run after parsing).
_VALUE_BY_TYPE = {int: "1", float: "1"}


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def _valued_options() -> list[tuple[tuple[str, ...], str, str]]:
    found = []
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and not isinstance(
                    action, argparse._HelpAction | argparse._VersionAction):
                value = _VALUE_BY_TYPE.get(action.type, "acme")  # type: ignore[call-overload]
                found.append((path, action.option_strings[-1], value))
    return found


VALUED = _valued_options()


def test_every_valued_option_of_every_command_is_taken_once() -> None:
    # No command documents an option that takes a list: each is one value.
    assert len(VALUED) > 60
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and not isinstance(
                    action, argparse._HelpAction | argparse._VersionAction):
                assert isinstance(action, _StoreOnce), (path, action.option_strings)


@pytest.mark.parametrize(("path", "option", "value"), VALUED,
                         ids=[" ".join((*p, o)) for p, o, _ in VALUED])
def test_a_valued_option_given_twice_is_refused_naming_it(
    path: tuple[str, ...], option: str, value: str
) -> None:
    prog = " ".join(("triggerd", *path))
    with pytest.raises(UsageError) as caught:
        build_parser().parse_args([*path, option, value, option, value])
    assert caught.value.message == f"{option} given twice; it takes one value (see '{prog} --help')"
    assert caught.value.message == repeated_option(option, prog)
    assert caught.value.exit_code == 2


def test_the_same_option_before_and_after_a_command_is_not_a_repeat() -> None:
    # --tenant after the command wins over the one before it (documented in its help).
    args = build_parser().parse_args(["--tenant", "acme", "executions", "list", "--tenant",
                                      "globex"])
    assert args.tenant == "globex"


def test_an_option_once_in_each_of_two_parses_is_no_repeat() -> None:
    parser = build_parser()
    for status in ("SUCCESS", "ERROR"):
        assert parser.parse_args(["executions", "list", "--status", status]).status == status


def test_flags_given_twice_stay_accepted() -> None:
    args = build_parser().parse_args(["executions", "list", "--json", "--json"])
    assert args.json is True


_KEY_WORDS = "is not a workflow key (1-100 lowercase letters, digits, '-' and '_')"
FILTERS: list[tuple[str, str, Callable[[str], str | None], str | None]] = [
    ("workflow", "billing", key_filter_problem, None),
    ("workflow", "Bad!", key_filter_problem, f"--workflow: 'Bad!' {_KEY_WORDS}"),
    ("workflow", "", key_filter_problem, f"--workflow: '' {_KEY_WORDS}"),
    ("workflow", "a" * 101, key_filter_problem, f"--workflow: {'a' * 40!r} {_KEY_WORDS}"),
    ("trigger", "billing/hourly", trigger_filter_problem, None),
    ("trigger", "billing", trigger_filter_problem,
     "--trigger: 'billing' is not workflow_key/trigger_name"),
    ("trigger", "Bad!/x", trigger_filter_problem,
     "--trigger: 'Bad!/x' is not workflow_key/trigger_name"),
    ("trigger", "a/b/c", trigger_filter_problem,
     "--trigger: 'a/b/c' is not workflow_key/trigger_name"),
    ("target", "billing/hourly", audit_target_problem, None),
    ("target", "x" * 300, audit_target_problem, None),
    ("target", "x" * 301, audit_target_problem, "--target: must be 1-300 characters"),
]


@pytest.mark.parametrize(("field", "value", "problem_of", "message"), FILTERS)
def test_a_filter_that_cannot_name_anything_is_bad_input(
    field: str, value: str, problem_of: Callable[[str], str | None], message: str | None
) -> None:
    if message is None:
        assert checked_filter(field, value, problem_of) == value
        return
    with pytest.raises(UsageError) as caught:
        checked_filter(field, value, problem_of)
    assert caught.value.exit_code == 2
    # As the CLI prints it: the field spelled as the option.
    assert f"--{field}: {caught.value.problem}" == message
    assert checked_filter(field, None, problem_of) is None
