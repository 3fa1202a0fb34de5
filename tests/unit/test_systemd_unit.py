"""The systemd unit: required directives, and its security exposure score."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "triggerd.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def test_unit_has_the_operational_directives() -> None:
    d = directives()
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]
    assert d["StateDirectory"] == ["triggerd"]
    assert d["ConfigurationDirectory"] == ["triggerd"]
    for key in ("WatchdogSec", "TimeoutStopSec"):
        assert key in d
    assert "# LoadCredential=api-token:" in UNIT.read_text()


def test_the_stop_timeout_covers_every_bound_of_a_stop() -> None:
    # systemd's SIGKILL at TimeoutStopSec cuts a stop short: the sum of the steps' bounds
    # under the default settings (whatever the database does) must fit in it.
    from triggerd.backfill import RELEASE_TIMEOUT
    from triggerd.config import ExecutorSettings
    from triggerd.daemon import POOL_CLOSE_TIMEOUT
    from triggerd.executor.service import HAND_BACK_TIMEOUT
    from triggerd.scheduler.service import DRAIN_TIMEOUT
    from triggerd.serving.drain import HTTP_DRAIN_TIMEOUT
    from triggerd.serving.sockets import RUNNER_SHUTDOWN_TIMEOUT

    [value] = directives()["TimeoutStopSec"]
    assert value.endswith("s"), value
    steps = (HTTP_DRAIN_TIMEOUT, RUNNER_SHUTDOWN_TIMEOUT, DRAIN_TIMEOUT,
             ExecutorSettings().drain.total_seconds(), HAND_BACK_TIMEOUT + 1.0,
             POOL_CLOSE_TIMEOUT, RELEASE_TIMEOUT)
    assert sum(steps) + 5 <= float(value[:-1]), (steps, value)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_security_exposure_is_at_most_2_5() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    score, verdict = float(match.group(1)), match.group(2)
    print(f"systemd-analyze security: {score} {verdict}")
    assert score <= 2.5
    assert verdict == "OK"
