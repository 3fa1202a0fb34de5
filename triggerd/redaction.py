"""Secret redaction for everything triggerd stores or logs.

A :class:`Redactor` replaces every occurrence of a secret value with ``***``, also inside
longer strings (``"Bearer s3cr3t"`` -> ``"Bearer ***"``) and in dict keys. Besides the raw
value it also matches the forms a secret commonly takes on its way into a URL or a JSON
document (percent-encoded, JSON-escaped), since a node's params and outputs hold both.

:class:`RedactingFilter` applies a redactor to log records; attach it to the *handlers*
(a filter on a logger does not see records propagated from child loggers).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, quote_plus

from triggerd.model import JSON

MASK: Final = "***"

# Names that carry credentials (a header, a query parameter, a parameter): a value under
# one is masked where it is stored or shown, though it is no secret of the workflow (a
# sender's own API key sent along to a webhook, a literal token in a dry run's record).
CREDENTIAL_WORDS: Final = (
    r"authorization|token|secret|password|passwd|api[-_]?key|cookie|credential"
)
_CREDENTIAL_NAME = re.compile(CREDENTIAL_WORDS, re.IGNORECASE)


# Answers by name: every webhook request asks for each of its headers (a dict lookup is
# what the hot path can afford; the regex, a tenth of a request's header handling, is not).
_CREDENTIAL_ANSWERS: dict[str, bool] = {}
_CREDENTIAL_ANSWERS_MAX = 4096


def is_credential_name(name: str) -> bool:
    """Whether ``name`` (a header, a query parameter) names a credential."""
    known = _CREDENTIAL_ANSWERS.get(name)
    if known is None:
        known = _CREDENTIAL_NAME.search(name) is not None
        if len(_CREDENTIAL_ANSWERS) < _CREDENTIAL_ANSWERS_MAX:  # senders invent names
            _CREDENTIAL_ANSWERS[name] = known
    return known


def _query_forms(secret: str) -> tuple[str, ...]:
    from yarl import URL  # aiohttp's, which the http node's URLs go through

    in_params = URL("http://h/").with_query({"k": secret}).raw_query_string[2:]
    if "#" in secret:
        return (in_params,)  # a fragment would cut the written query short
    written = URL(f"http://h/?k={secret}").raw_query_string[2:]
    return in_params, written


# The shortest form of a secret that is masked, unless the secret itself is shorter.
MIN_FORM: Final = 8


@functools.lru_cache(maxsize=4096)
def _forms(secret: str) -> frozenset[str]:
    """The raw secret, the encodings it may appear in, and its upper and lower case (code
    outside templates changes case too: an http node's method, a header name)."""
    forms = {
        secret,
        secret.upper(),
        secret.lower(),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        # As a URL's path writes it (yarl leaves RFC 3986's path characters alone): an http
        # node's error message names its URL.
        quote(secret, safe="/:@!$&'()*+,;=~"),
        # As a URL's query writes it: an http node's `query` value (space as "+", "/" and
        # "?" left alone), and a value written into the URL's own query string. A service
        # that echoes its URL back puts these in the node's output.
        *_query_forms(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    # None very short: a URL's query drops tabs and line breaks and decodes %41 to A, so
    # a secret of tabs had an empty form (matched everywhere: every stored string of the
    # run masked between each character) and "%41%42" masked every "AB". A long secret's
    # shorter form is kept: "p%4Fss..." is sent as "pOss...".
    # Cached: a run's redactor is built again for each node that derives secrets.
    shortest = min(len(secret), MIN_FORM)
    return frozenset(form for form in forms if len(form) >= shortest)


@dataclass(frozen=True, init=False, repr=False, eq=False)
class Redactor:
    """Replaces secret values with ``***``. Empty secrets are ignored.

    All secrets are matched by one compiled regular expression, longest first, so a secret
    that contains another one is masked whole.
    """

    secrets: frozenset[str]
    # Regular expressions of values masked whatever they are (a resume link's token: the
    # run knows only the one it issued last, and earlier ones still decide it).
    patterns: tuple[str, ...]
    _pattern: re.Pattern[str] | None = field(compare=False)

    def __init__(self, secrets: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        values = frozenset(s for s in secrets if s)
        forms = sorted({form for s in values for form in _forms(s)}, key=lambda f: (-len(f), f))
        extra = tuple(dict.fromkeys(patterns))
        alternatives = [*map(re.escape, forms), *extra]
        pattern = re.compile("|".join(alternatives)) if alternatives else None
        object.__setattr__(self, "secrets", values)
        object.__setattr__(self, "patterns", extra)
        object.__setattr__(self, "_pattern", pattern)

    def __repr__(self) -> str:
        # Never show the values themselves.
        return f"Redactor(<{len(self.secrets)} secrets>)"

    def __bool__(self) -> bool:
        return self._pattern is not None

    def with_secrets(self, more: Iterable[str]) -> Redactor:
        """A redactor for these secrets and ``more``."""
        return Redactor((*self.secrets, *more), self.patterns)

    def with_patterns(self, more: Iterable[str]) -> Redactor:
        """A redactor that also masks what the regular expressions ``more`` match."""
        return Redactor(self.secrets, (*self.patterns, *more))

    def redact_text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def finds(self, text: str) -> bool:
        """Whether ``text`` holds a secret (a search: no new string when it does not)."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def redact(self, value: JSON) -> JSON:
        """``value`` with every secret masked in every string, keys included (a new value;
        the argument is not modified). Tuples come back as lists."""
        if self._pattern is None:
            return value
        return self._redact(value)

    def _redact(self, value: JSON) -> JSON:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {
                (self.redact_text(k) if isinstance(k, str) else k): self._redact(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._redact(item) for item in value]
        if isinstance(value, int | float) and not isinstance(value, bool) \
                and number_text(value) in self.secrets:
            # A secret made a number (``| int``): JSON writes its digits as they are.
            return MASK
        return value


def number_text(value: int | float) -> str:
    """How JSON writes the number ``value`` (``str`` of an int, ``repr`` of a float); ""
    for an int with more digits than Python writes (no secret is that long)."""
    if isinstance(value, float):
        return repr(value)
    try:
        return str(int(value))
    except ValueError:
        return ""


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime"}


# The values the execution running in this context derived from its secrets (set by the
# executor's runner), masked in its log lines as well. Not in the daemon-wide filter: a
# template that mixes a secret with per-run text derives a new value every run, and that
# filter would keep each one, and scan every line for it, until the process ends. Lines
# that other tasks write about the run (the progress writer's) have the secrets masked,
# not what the run derived from them.
RUN_LOG_REDACTOR: ContextVar[Callable[[], Redactor] | None] = ContextVar(
    "RUN_LOG_REDACTOR", default=None)


# The shortest secret the daemon-wide log filter masks (see RedactingFilter.add_secrets).
MIN_LOG_SECRET: Final = 4


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, ``extra`` fields, exception and stack text.

    The redactor can be replaced at any time (:meth:`set_redactor`) as secrets are loaded.
    When an exception's traceback contains a secret, the masked text is put in
    ``record.exc_text`` and ``record.exc_info`` is cleared, so that no formatter can render
    the original; formatters should use ``exc_text`` when it is set (the standard one does).
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self._redactor = redactor or Redactor()

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    def set_redactor(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def add_secrets(self, secrets: Iterable[str]) -> None:
        # Called for every run that has secrets: rebuild the pattern only for new values.
        # The daemon's log holds every run's lines: a secret shorter than MIN_LOG_SECRET
        # ("x") masked those characters in every line, event names too. The rows of the
        # runs that use it still mask it.
        fresh = {s for s in secrets if len(s) >= MIN_LOG_SECRET} - self._redactor.secrets
        if fresh:
            self._redactor = self._redactor.with_secrets(fresh)

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self._redactor  # one consistent redactor for the whole record
        if redactor:
            self._apply(record, redactor)
        running = RUN_LOG_REDACTOR.get()
        if running is not None and (derived := running()):
            self._apply(record, derived)
        return True

    def _apply(self, record: logging.LogRecord, redactor: Redactor) -> None:
        self._redact_message(record, redactor)
        # Only what came from ``extra=`` (a set difference, not a test of every attribute:
        # this runs for every line, a line per finished run).
        attributes = vars(record)
        for key in attributes.keys() - _RECORD_ATTRIBUTES:
            value = attributes[key]
            if isinstance(value, str):
                if redactor.finds(value):
                    setattr(record, key, redactor.redact_text(value))
            elif isinstance(value, dict | list | tuple):
                redacted = redactor.redact(value)
                if redacted != value:
                    setattr(record, key, redacted)
        self._redact_exception(record, redactor)
        if record.stack_info:
            record.stack_info = redactor.redact_text(record.stack_info)

    @staticmethod
    def _redact_message(record: logging.LogRecord, redactor: Redactor) -> None:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: logging reports it later; mask what we have
            message = str(record.msg)
        if redactor.finds(message):
            record.msg = redactor.redact_text(message)
            record.args = None

    @staticmethod
    def _redact_exception(record: logging.LogRecord, redactor: Redactor) -> None:
        text = record.exc_text
        if not text and record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
        if not text:
            return
        redacted = redactor.redact_text(text)
        if redacted != text:
            record.exc_text = redacted
            record.exc_info = None


# Derived values shorter than this are not masked: masking every "ab" or "32" in a run's
# rows and logs would hide far more than it protects.
MIN_DERIVED_LENGTH: Final = 4


def derived_secrets(
    renderings: Iterable[tuple[str, str]], redactor: Redactor
) -> set[str]:
    """The values derived from secrets that ``redactor`` does not mask yet, from ``(template
    source, rendered text)`` pairs of templates that read ``secrets``.

    A rendered text that only embeds secrets in the template's own literal text
    (``"Bearer {{ secrets.T }}"``) is masked in place by the secrets themselves. Any other
    text a secret flowed into (``| upper``, a slice, a join, text mixed with other values)
    is itself a secret for the rest of the run."""
    found: set[str] = set()
    for source, text in renderings:
        if len(text) < MIN_DERIVED_LENGTH or text in redactor.secrets:
            continue
        masked = redactor.redact_text(text)
        if masked != text and all(part in source for part in masked.split(MASK)):
            continue
        found.add(text)
    return found


# A redactor without secrets (most runs): immutable, so shared rather than built per run.
NO_SECRETS: Final = Redactor()
