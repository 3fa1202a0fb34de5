"""Every part the daemon runs implements the whole :class:`Component` protocol, so the
daemon calls its members directly (no ``getattr`` probing that a typo would silently
skip)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from triggerd.api.metrics import LoopLagMonitor
from triggerd.backfill import BackfillRunner
from triggerd.component import BaseComponent, Component
from triggerd.config import Settings
from triggerd.embedded import EmbeddedServerWatch
from triggerd.executor.service import Executor
from triggerd.notifications.hub import NotificationHub
from triggerd.scheduler.service import CronScheduler
from triggerd.serving.workers import HttpWorkers
from triggerd.table_statistics import TableStatisticsKeeper
from triggerd.webhooks.ingress import WebhookIngress

COMPONENTS = (LoopLagMonitor, EmbeddedServerWatch, Executor, CronScheduler, HttpWorkers,
              WebhookIngress, NotificationHub, BackfillRunner, TableStatisticsKeeper)
MEMBERS = ("start", "stop", "readiness", "apply_settings", "reload", "trigger_count")


@pytest.mark.parametrize("kind", COMPONENTS, ids=lambda kind: kind.__name__)
def test_each_component_has_every_member_of_the_protocol(kind: type) -> None:
    missing = [member for member in MEMBERS if not hasattr(kind, member)]
    assert missing == []
    assert issubclass(kind, BaseComponent)


def test_the_protocol_names_every_member_the_daemon_calls() -> None:
    declared = {name for name in vars(Component) if not name.startswith("_")}
    assert declared >= set(MEMBERS)
    assert "name" in Component.__annotations__


def test_the_defaults_are_ready_with_nothing_to_reload() -> None:
    class Minimal(BaseComponent):
        name = "minimal"

        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

    part = Minimal()
    assert isinstance(part, Component)
    assert asyncio.run(part.readiness()) is None
    assert asyncio.run(part.reload()) is None
    part.apply_settings(Settings())  # accepted, changes nothing
    assert part.trigger_count == 0


def test_the_daemon_does_not_probe_components_with_getattr() -> None:
    source = Path(__file__).resolve().parents[2] / "triggerd" / "daemon.py"
    probed = [
        node.lineno
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"getattr", "hasattr"}
        and node.args
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == "component"
    ]
    assert probed == []
