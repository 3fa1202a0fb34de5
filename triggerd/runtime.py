"""The event loop the daemon and commands run on: uvloop when it is installed (it roughly
doubles aiohttp's request rate on a small machine), else asyncio's own."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

# Here for the callers that have the loop's module at hand (the daemon, its workers).
from triggerd.early_reload import defer_early_reload, take_early_reload

__all__ = ["defer_early_reload", "loop_name", "reserve_standard_fds", "run",
           "take_early_reload"]

T = TypeVar("T")


def reserve_standard_fds() -> None:
    """Put /dev/null on stdin, stdout or stderr when the process was started with one
    closed (``triggerd ... >&-``, some supervisors and cron setups). Else the loop's own
    descriptors take those numbers, and uvloop aborts the process (SIGABRT) when it
    closes one of them, after the command may have changed the database."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free number: often ``fd``
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
    # Python made no stream for a closed one; print(file=None) would then write an
    # error on stdout, mixed into the output a caller reads.
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's stream
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - the process's stream


def run(main: Coroutine[Any, Any, T]) -> T:
    reserve_standard_fds()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return type(loop).__module__.split(".")[0]
