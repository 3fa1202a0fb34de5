"""What a CLI command imports before it does anything: aiohttp (its client builds TLS
contexts on import) cost 0.15 s of every command that serves nothing, such as ``apply``."""

from __future__ import annotations

import subprocess
import sys


def test_the_command_line_does_not_import_aiohttp_until_a_command_serves() -> None:
    # The parser too: every command builds it, with every subcommand's module.
    code = ("import sys, triggerd.cli; triggerd.cli.build_parser();"
            " print(sorted(m for m in sys.modules if 'aiohttp' in m))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_the_log_setup_recognises_aiohttp_errors_once_aiohttp_is_loaded() -> None:
    import logging

    from aiohttp import http_exceptions

    from triggerd.logs import ProtocolErrorFilter

    record = logging.LogRecord("aiohttp.server", logging.ERROR, "", 0, "Error handling request",
                               ("127.0.0.1",), None)
    try:
        raise http_exceptions.LineTooLong("x" * 10, "8190")
    except http_exceptions.LineTooLong:
        record.exc_info = sys.exc_info()
    server = logging.getLogger("aiohttp.server")
    level = server.level
    server.setLevel(logging.INFO)  # the rewritten record is an info line
    try:
        assert ProtocolErrorFilter().filter(record)
    finally:
        server.setLevel(level)
    assert record.__dict__["reason"] == "line_too_long"
    assert record.exc_info is None
