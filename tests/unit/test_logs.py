"""Log lines: JSON with stable event names and fields; secrets masked."""

from __future__ import annotations

import io
import json
import logging

from triggerd.logs import SECRETS_FILTER, setup_logging
from triggerd.redaction import Redactor


def test_json_lines_with_event_and_fields_and_no_secret() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream=stream)
    SECRETS_FILTER.set_redactor(Redactor(["hunter2-secret"]))
    try:
        log = logging.getLogger("triggerd.test")
        log.info("calling with token hunter2-secret",
                 extra={"event": "node_started", "execution_id": "e1", "node_id": "n1",
                        "headers": {"Authorization": "Bearer hunter2-secret"}})
        try:
            raise ValueError("bad token hunter2-secret")
        except ValueError:
            log.exception("failed", extra={"event": "node_failed"})
    finally:
        SECRETS_FILTER.set_redactor(Redactor())
        setup_logging("warning", "text")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["node_started", "node_failed"]
    assert lines[0]["execution_id"] == "e1" and lines[0]["node_id"] == "n1"
    assert lines[0]["msg"] == "calling with token ***"
    assert lines[0]["headers"] == {"Authorization": "Bearer ***"}
    assert "ValueError: bad token ***" in lines[1]["exc"]
    assert "hunter2" not in stream.getvalue()


def test_text_format_for_people() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream=stream)
    try:
        logging.getLogger("triggerd.test").info("hello", extra={"event": "x", "trigger": "a/b"})
    finally:
        setup_logging("warning", "text")
    line = stream.getvalue().strip()
    assert line.endswith("INFO    hello  trigger=a/b")


def test_the_pools_reconnect_warnings_are_one_line_each() -> None:
    """During a database outage asyncpg logged a whole traceback a few times a minute."""
    stream = io.StringIO()
    setup_logging("info", "json", stream=stream)
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        except ConnectionRefusedError:
            logging.getLogger("asyncpg.pool").warning(
                "Failed to restore the pool connection floor; retrying", exc_info=True)
    finally:
        setup_logging("warning", "text")
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["event"] == "database_pool_retry"
    assert line["error"] == (
        "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 5432)")
    assert "exc" not in line


def test_a_lone_surrogate_is_written_as_its_json_escape() -> None:
    """An expression (``{{ 'a\\ud800b' }}``) or an http response can make a lone surrogate,
    which a log node then logs: the stream's UTF-8 encoder refused the whole line (logging
    printed a traceback to stderr and the line was lost)."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    log = logging.getLogger("triggerd.test")
    for fmt in ("json", "text"):
        setup_logging("info", fmt, stream=stream)
        try:
            log.info("%s", "a\ud800b é", extra={"event": "workflow_log", "path": "\\\udcff"})
        finally:
            setup_logging("warning", "text")
    json_line, text_line = raw.getvalue().decode("utf-8").splitlines()
    line = json.loads(json_line)
    assert (line["msg"], line["path"]) == ("a\ud800b é", "\\\udcff")
    assert text_line.endswith("a\\ud800b é  path=\\\\udcff")
