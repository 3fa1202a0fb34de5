"""The main process's side of [http] processes > 1, against real worker processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for
from triggerd.config import load_settings
from triggerd.serving.workers import HttpWorkers


async def test_a_worker_that_cannot_start_is_retried_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(environ={"TRIGGERD_HTTP_PROCESSES": "2"})
    workers = HttpWorkers(
        settings=settings,
        port=free_port(),
        upstream=str(tmp_path / "main.sock"),
        dsn="postgresql://triggerd@127.0.0.1:1/nowhere",  # nothing listens on port 1
        restart_delay=0.2,
    )
    caplog.set_level(logging.ERROR, logger="triggerd.serving.workers")
    await workers.start()
    try:

        async def retried() -> bool:
            return workers._workers[0].starts >= 2

        await wait_for(retried, timeout=60)
        assert await workers.readiness() == "http worker 1 is not serving"
    finally:
        await workers.stop()
    exits = [r for r in caplog.records if getattr(r, "event", None) == "http_worker_exited"]
    assert exits and {getattr(r, "returncode", None) for r in exits} == {1}
    process = workers._workers[0].process
    assert process is not None and process.returncode is not None  # nothing left running


def test_the_worker_started_by_hand_refuses_with_a_clear_message() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERD_")}
    done = subprocess.run(
        [sys.executable, "-m", "triggerd.serving.worker"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "triggerd http worker: started without its daemon's environment"
        " ('TRIGGERD_WORKER_PORT')\n"
    )
