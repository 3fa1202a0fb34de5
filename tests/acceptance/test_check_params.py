"""`triggerd check` and `apply` refuse definitions that could only fail at run time (issue
#15's examples), with exit 2 and one line per problem; nothing is stored."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from tests.acceptance.test_cli import triggerd

RUN_TIME_FAILURES = """\
workflows:
  - key: runtime-failures
    graph:
      nodes:
        - {id: a, type: log, params: {message: "{{ input.x > }}"}}
        - {id: b, type: http, params: {url: "ftp://x"}}
        - {id: c, type: http, params: {url: "https://example.test/", bogus: 1}}
        - id: d
          type: http
          params:
            url: https://example.test/
            method: POST
            body: {total: 3}
      edges:
        - {from: a, to: b}
        - {from: b, to: c}
        - {from: c, to: d}
"""


def expected_lines(path: Path) -> list[str]:
    node = f"{path}: $.workflows[0].graph.nodes"
    return [
        f"{node}[0].params.message: expression '{{{{ input.x > }}}}': syntax error:"
        " unexpected 'end of template'",
        f"{node}[1].params.url: 'ftp://x' is not an http(s) URL: it must start with http://"
        " or https:// and a host",
        f"{node}[2].params.bogus: http node: unknown parameter 'bogus' (known: accept,"
        " body, headers, json, method, query, timeout, url)",
        f'{node}[3].params.body: body must be a string, got {{"total": 3}}: to send an object'
        " or a list as JSON, use json: instead of body:",
    ]


async def test_check_and_apply_refuse_what_would_fail_at_run_time(
    dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "runtime-failures.yaml"
    path.write_text(RUN_TIME_FAILURES, encoding="utf-8")
    checked = triggerd("check", str(path))
    assert checked.returncode == 2, checked.stderr
    assert checked.stderr.splitlines() == [
        *expected_lines(path),
        "triggerd: 4 problem(s) found; nothing was changed",
    ]
    applied = triggerd("apply", str(path), dsn=dsn)
    assert applied.returncode == 2, applied.stderr
    assert applied.stderr.splitlines()[-1] == (
        f"triggerd: error: 4 problems in definitions: {expected_lines(path)[0]} (and 3 more)"
    )
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 0
    finally:
        await conn.close()
