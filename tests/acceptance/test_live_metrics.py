"""The running daemon's /metrics reflect what its parts did: webhooks, cron fires,
executions and nodes, with bounded labels."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import asyncpg

from tests.acceptance.conftest import Daemons
from tests.helpers import wait_for

DEFINITIONS = """\
workflows:
  - key: metered
    name: Metered
    graph:
      nodes:
        - {id: a, type: set, params: {value: 1}}
    triggers:
      - {name: tick, type: cron, cron: "* * * * * *"}
      - {name: hook, type: webhook, path: metered/hook}
"""


async def test_metrics_follow_the_work(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    definitions = tmp_path / "metered.yaml"
    definitions.write_text(DEFINITIONS)
    daemon = await daemons.start(
        database_url=dsn, sections={"daemon": {"definitions": [str(definitions)]}}
    )
    async with aiohttp.ClientSession() as session:
        for path in ("/hooks/metered/hook", "/hooks/nope/unknown", "/hooks/nope/other"):
            async with session.post(daemon.base_url + path, json={"x": 1}) as response:
                await response.read()

    async def fired_twice() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM workflow_executions WHERE trigger_type = 'cron'"
            " AND status = 'SUCCESS'")
        return bool(n >= 2)

    await wait_for(fired_twice, timeout=20)
    await asyncio.sleep(0.2)
    status, text = await daemon.get("/metrics")
    assert status == 200
    assert isinstance(text, str)
    lines = text.splitlines()

    def value(prefix: str) -> float:
        found = [line for line in lines if line.startswith(prefix)]
        assert found, f"no sample {prefix}"
        return float(found[0].rsplit(" ", 1)[1])

    assert value('triggerd_webhook_requests_total{status="202",trigger="metered/hook"}') == 1
    # Unknown paths share one label value: no label per path a client invents.
    assert value('triggerd_webhook_requests_total{status="404",trigger="_unknown"}') == 2
    assert value('triggerd_cron_fires_total{outcome="fired",trigger="metered/tick"}') >= 2
    assert value('triggerd_executions_total{status="SUCCESS",workflow="metered"}') >= 3
    assert value('triggerd_node_seconds_count{node_type="set"}') >= 3
    assert value("triggerd_cron_fire_lateness_seconds_count") >= 1  # catch-up fires have none
    assert await daemon.stop(signal.SIGTERM) == 0
