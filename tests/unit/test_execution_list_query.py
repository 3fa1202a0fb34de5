"""The execution list statement names only the conditions that were asked for (each
combination is its own prepared statement, so its plan can use the index that fits)."""

from __future__ import annotations

from datetime import UTC, datetime

from triggerd.store.executions import ExecutionScope, execution_list_query

AT = datetime(2026, 12, 1, tzinfo=UTC)
ID = "01937a5e-0000-7000-8000-000000000001"


def test_no_filter_has_no_where_clause() -> None:
    query, args = execution_list_query(limit=51)
    assert " WHERE " not in query
    assert query.endswith(" ORDER BY e.created_at DESC, e.id DESC LIMIT $1")
    assert args == [51]


def test_only_the_given_conditions_are_written_in_order() -> None:
    query, args = execution_list_query(status="ERROR", workflow_id=ID, after=(AT, ID), limit=5)
    where = query.split(" WHERE ", 1)[1].split(" ORDER BY ", 1)[0]
    # The status is written in (one statement, one cached plan, per status).
    assert where == (
        "e.status = 'ERROR' AND e.workflow_id = $1::uuid"
        " AND (e.created_at, e.id) < ($2::timestamptz, $3::uuid)"
    )
    assert args == [ID, AT, ID, 5]
    assert "IS NULL" not in query


def test_the_cli_order_and_its_filters() -> None:
    query, args = execution_list_query(
        trigger_id=ID, workflow_id=ID, before=AT, limit=50
    )
    # The workflow is checked on the trigger's row, not on every run's.
    assert ("e.trigger_id = $1::uuid AND EXISTS (SELECT 1 FROM workflow_triggers t"
            " WHERE t.id = $1::uuid AND t.workflow_id = $2::uuid)") in query
    assert "e.created_at < $3::timestamptz" in query
    assert query.endswith(" ORDER BY e.created_at DESC, e.id DESC LIMIT $4")
    assert args == [ID, ID, AT, 50]


def test_a_scope_filters_by_tenant_and_correlation_ids() -> None:
    query, args = execution_list_query(
        scope=ExecutionScope(tenant="acme", session_id="s-1"), workflow_id=ID, limit=10)
    assert "e.workflow_id = $1::uuid" in query
    assert "e.tenant_id = $2 AND e.session_id = $3" in query
    assert "agent_id =" not in query and "conversation_id =" not in query
    assert args == [ID, "acme", "s-1", 10]


def test_the_failure_summary_keys_are_the_ones_the_statement_builds() -> None:
    """check and apply test error workflows' schemas against FAILURE_SUMMARY_KEYS and two
    sample summaries: they must be what the statement that records a failure writes."""
    import re

    from triggerd.inputs import _SUMMARY_FULL, _SUMMARY_SPARE
    from triggerd.model import FAILURE_SUMMARY_KEYS
    from triggerd.store import executions

    source = executions._ACCOUNT
    built = source[source.index("error_runs AS"):]
    built = built[built.index("jsonb_build_object("):built.index("jsonb_build_object('trigger'")]
    keys = re.findall(r"'([a-z_]+)', ", built)
    assert tuple(keys) == FAILURE_SUMMARY_KEYS
    assert tuple(_SUMMARY_FULL) == FAILURE_SUMMARY_KEYS == tuple(_SUMMARY_SPARE)
