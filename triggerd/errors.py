"""The one error hierarchy of triggerd.

Every error a user can act on is a subclass of :class:`TriggerdError` and carries a
message a person understands. The command line maps ``exit_code`` to its exit status
(DESIGN §5b): 1 a waited-for run failed, 2 bad input, 3 not found, 4 not allowed in the
current state, 5 unavailable; an exception outside this hierarchy is 70.
"""

from __future__ import annotations

from typing import Any


class TriggerdError(Exception):
    """Root of every error triggerd raises on purpose."""

    # Bad input unless a subclass says otherwise (1 is reserved for a failed run).
    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(TriggerdError):
    """The configuration file or environment is invalid."""

    exit_code = 2


class UsageError(TriggerdError):
    """A command-line argument or a request's field is invalid.

    ``field`` names the input the problem is in, as the API spells it (``next``); the
    message then reads ``next: <problem>``, and the CLI names its option (``--next``).
    ``names``: inputs the message names in its own words, written ``{to}`` in it; the
    message says ``to`` and the CLI its option (``--to``)."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None,
                 names: tuple[str, ...] = ()) -> None:
        problem = name_inputs(message, {name: name for name in names})
        super().__init__(problem if field is None else f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.names = names
        self.template = message


def name_inputs(template: str, spelled: dict[str, str]) -> str:
    """``template`` with each ``{name}`` of ``spelled`` written as spelled there (a plain
    replace, not ``str.format``: the rest of the message may hold braces)."""
    for name, text in spelled.items():
        template = template.replace("{" + name + "}", text)
    return template


class DurationError(TriggerdError):
    """A duration string such as ``30s`` is malformed."""

    exit_code = 2


class CronError(TriggerdError):
    """A cron expression or time zone is invalid."""

    exit_code = 2


class DefinitionError(TriggerdError):
    """A definition file has one or more problems; ``problems`` lists every one."""

    exit_code = 2

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems: list[Problem] = problems or []


class Problem:
    """One problem in a definition file: where it is and what is wrong."""

    __slots__ = ("file", "message", "path")

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = file
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({self.file!r}, {self.path!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented
        return (self.file, self.path, self.message) == (other.file, other.path, other.message)

    def __hash__(self) -> int:
        return hash((self.file, self.path, self.message))


class DatabaseError(TriggerdError):
    """The database is unreachable or refused an operation."""

    exit_code = 5


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached right now (retry later)."""


class MigrationError(DatabaseError):
    """The schema is not one this triggerd works with: older than the code (a command that
    does not migrate), or an applied migration was edited."""

    # Reachable but in a state this triggerd refuses to work with: retrying will not help,
    # an operator must act (run `triggerd migrate`, restore the file); not "unavailable".
    exit_code = 4


class InputInvalid(TriggerdError):
    """A run's input does not match its workflow's ``parameter_schema``; ``errors`` lists
    each violation as ``{"path", "message"}`` (HTTP 422 ``input_invalid``)."""

    exit_code = 2

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


class NotFound(TriggerdError):
    """A named workflow, trigger or execution does not exist."""

    exit_code = 3


class Conflict(TriggerdError):
    """The operation conflicts with the current state (e.g. cancelling a finished run)."""

    exit_code = 4


class Unavailable(TriggerdError):
    """Something other than the database is unavailable right now (a port in use)."""

    exit_code = 5


class SecretError(TriggerdError):
    """A secret reference cannot be resolved."""


class LeaseLost(TriggerdError):
    """This process no longer holds a run's lease (another took the run up after it ran
    out): nothing of the run may be written, and nothing more of it run, here."""


class ResumeCopyError(TriggerdError):
    """The resume copy of a node output cannot be read back (another key, damaged or
    missing); ``code`` is the run's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def http_refusal(exc: TriggerdError) -> tuple[int, str, dict[str, Any]] | None:
    """How every route answers an operation's refusal: ``(status, error code, extra
    fields)``, or None for the route to decide (bad input is 400 on one, 422 on another)."""
    if isinstance(exc, NotFound):
        return 404, "not_found", {}
    if isinstance(exc, Conflict):
        return 409, "conflict", {}
    if isinstance(exc, InputInvalid):
        return 422, "input_invalid", {"errors": list(exc.errors)}
    return None
