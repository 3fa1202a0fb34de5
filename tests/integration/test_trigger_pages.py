"""Trigger list pages cost about a page of index reads however many triggers there are
(issue 14.1): counted from the server's EXPLAIN ANALYZE, never timed."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc
from tests.integration.test_history_lists import _rows_read
from triggerd.store.workflows import list_triggers

WORKFLOWS = 40
PER_WORKFLOW = 50  # 2,000 triggers
PAGE = 51
MAX_READ = 3 * PAGE + 10


class Recorder:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.last: tuple[str, tuple[Any, ...]] | None = None

    async def fetch(self, query: str, *args: Any) -> Any:
        self.last = (query, args)
        return await self.pool.fetch(query, *args)


@pytest.fixture
async def many(pool: asyncpg.Pool) -> asyncpg.Pool:
    await apply_doc(pool, {"workflows": [
        {"key": f"wf{w:02d}", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
         "triggers": [{"name": f"t{n:03d}", "type": "cron" if n % 5 == 0 else "manual",
                       **({"cron": "0 * * * *"} if n % 5 == 0 else {})}
                      for n in range(PER_WORKFLOW)]}
        for w in range(WORKFLOWS)
    ]})
    await pool.execute("ANALYZE workflows; ANALYZE workflow_triggers")
    return pool


async def _read(pool: asyncpg.Pool, recorder: Recorder) -> int:
    assert recorder.last is not None
    query, args = recorder.last
    text = await pool.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
    doc = json.loads(text) if isinstance(text, str) else text
    return _rows_read(doc[0]["Plan"], "workflow_triggers")


async def test_pages_walk_every_trigger_once_in_order(many: asyncpg.Pool) -> None:
    everything = await list_triggers(many)
    names = [t.full_name for t in everything]
    assert len(names) == WORKFLOWS * PER_WORKFLOW
    assert names == sorted(names)
    paged: list[str] = []
    after = None
    while True:
        page = await list_triggers(many, after=after, limit=PAGE)
        paged += [t.full_name for t in page]
        if len(page) < PAGE:
            break
        after = (page[-1].workflow_key, page[-1].name, page[-1].id)
    assert paged == names
    crons = await list_triggers(many, trigger_type="cron", limit=PAGE)
    assert [t.full_name for t in crons] == [n for n, t in zip(names, everything, strict=True)
                                               if t.type == "cron"][:PAGE]


async def test_a_page_reads_about_a_page_of_triggers(many: asyncpg.Pool) -> None:
    recorder = Recorder(many)
    first = await list_triggers(recorder, limit=PAGE)
    assert await _read(many, recorder) <= MAX_READ
    middle = await list_triggers(recorder, after=("wf20", "t017", first[0].id),
                                 limit=PAGE)
    assert middle
    assert await _read(many, recorder) <= MAX_READ
    await list_triggers(recorder, workflow_key="wf07", limit=PAGE)
    assert await _read(many, recorder) <= MAX_READ


async def test_a_page_after_a_deleted_trigger_goes_on_after_its_name(
    many: asyncpg.Pool,
) -> None:
    page = await list_triggers(many, limit=PAGE)
    last = page[-1]
    await many.execute("DELETE FROM workflow_triggers WHERE id = $1", last.id)
    following = await list_triggers(many, after=(last.workflow_key, last.name, last.id),
                                    limit=3)
    assert [t.full_name for t in following] == ["wf01/t001", "wf01/t002", "wf01/t003"]
