"""Domain values back to JSON documents, in one canonical form.

The stored form uses the keys of the definition file (``from``/``to``, ``json`` for a dedupe
pointer, durations as strings such as ``"30s"``), so a stored document reads like the file
it came from and is validated by the same schema when it is read back. Values equal to
the file format's defaults are written for trigger configs (a config is self-describing)
and left out for graph details (a graph stays small); either way one value has exactly one
document, which is what :func:`canonical_json` comparisons rely on.
"""

from __future__ import annotations

import json
from typing import Any

from triggerd.durations import format_duration
from triggerd.model import (
    AuthConfig,
    CronConfig,
    DedupeConfig,
    Edge,
    EdgeOn,
    Graph,
    IntervalConfig,
    ManualConfig,
    Node,
    RetryPolicy,
    ScheduledConfig,
    TriggerConfig,
    WebhookConfig,
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: equal documents give equal text (used to decide whether
    a workflow version or a trigger changed)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


# --- graph ---------------------------------------------------------------------------


def graph_to_json(graph: Graph) -> dict[str, Any]:
    return {
        "nodes": [node_to_json(node) for node in graph.nodes],
        "edges": [edge_to_json(edge) for edge in graph.edges],
    }


def node_to_json(node: Node) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": node.id, "type": node.type, "params": node.params}
    if node.retry != RetryPolicy():
        doc["retry"] = retry_to_json(node.retry)
    if node.timeout is not None:
        doc["timeout"] = format_duration(node.timeout)
    return doc


def retry_to_json(retry: RetryPolicy) -> dict[str, Any]:
    return {
        "max_attempts": retry.max_attempts,
        "backoff": format_duration(retry.backoff),
        "max_backoff": format_duration(retry.max_backoff),
        "retry_on": list(retry.retry_on),
    }


def edge_to_json(edge: Edge) -> dict[str, Any]:
    doc: dict[str, Any] = {"from": edge.source, "to": edge.target}
    if edge.when is not None:
        doc["when"] = edge.when
    if edge.on is not EdgeOn.SUCCESS:
        doc["on"] = edge.on.value
    return doc


# --- trigger configs -----------------------------------------------------------------


def trigger_config_to_json(config: TriggerConfig) -> dict[str, Any]:
    """The ``workflow_triggers.config`` document: the file's keys for this trigger type,
    minus name/type/enabled/input/version."""
    if isinstance(config, CronConfig):
        return cron_to_json(config)
    if isinstance(config, IntervalConfig):
        return interval_to_json(config)
    if isinstance(config, WebhookConfig):
        return webhook_to_json(config)
    assert isinstance(config, ManualConfig)
    return {}


def cron_to_json(config: CronConfig) -> dict[str, Any]:
    cron = config.cron if isinstance(config.cron, str) else list(config.cron)
    return {"cron": cron, **_scheduled_to_json(config)}


def interval_to_json(config: IntervalConfig) -> dict[str, Any]:
    return {
        "every": format_duration(config.every),
        "offset": format_duration(config.offset),
        **_scheduled_to_json(config),
    }


def _scheduled_to_json(config: ScheduledConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "timezone": config.timezone,
        "misfire": config.misfire.value,
        "catchup_window": format_duration(config.catchup_window),
        "max_catchup": config.max_catchup,
        "overlap": config.overlap.value,
        "jitter": format_duration(config.jitter),
    }
    # Keys of the second round only when set: configs stored before them keep their text.
    if config.calendar is not None:
        ref = config.calendar
        doc["calendar"] = {ref.mode.value: ref.name, "shift": ref.shift.value,
                           "definition": ref.definition}
    if config.start_at is not None:
        doc["start_at"] = config.start_at.isoformat()
    if config.end_at is not None:
        doc["end_at"] = config.end_at.isoformat()
    if config.max_runs is not None:
        doc["max_runs"] = config.max_runs
    if config.catchup_rate is not None:
        doc["catchup_rate"] = config.catchup_rate.text
    if config.pause_after_failures is not None:
        doc["pause_after_failures"] = config.pause_after_failures
    if config.monitor:
        doc["monitor"] = True
    return doc


def webhook_to_json(config: WebhookConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "path": config.path,
        "methods": list(config.methods),
        "auth": auth_to_json(config.auth),
        "response": config.response.value,
        "timeout": format_duration(config.timeout),
        "expose_output": config.expose_output,
        "body": config.body,
    }
    if config.dedupe is not None:
        doc["dedupe"] = dedupe_to_json(config.dedupe)
    elif not config.provider_dedupe:
        doc["dedupe"] = "none"
    if config.max_body_bytes is not None:
        doc["max_body_bytes"] = config.max_body_bytes
    if config.rate is not None:
        doc["rate"] = config.rate
    if config.burst is not None:
        doc["burst"] = config.burst
    if config.debounce is not None:
        doc["debounce"] = {
            "key": config.debounce.key,
            "period": format_duration(config.debounce.period),
            "max_wait": format_duration(config.debounce.max_wait),
        }
    if config.concurrency is not None:
        doc["concurrency"] = {"key": config.concurrency.key, "limit": config.concurrency.limit}
    if config.filter is not None:
        doc["filter"] = config.filter
    if config.allow_from:
        doc["allow_from"] = list(config.allow_from)
    return doc


def auth_to_json(auth: AuthConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {"scheme": auth.scheme}
    if isinstance(auth.secret, tuple):
        doc["secret"] = [ref.to_json() for ref in auth.secret]
    elif auth.secret is not None:
        doc["secret"] = auth.secret.to_json()
    if auth.header is not None:
        doc["header"] = auth.header
    if auth.prefix is not None:
        doc["prefix"] = auth.prefix
    if auth.scheme == "hmac":
        # Only hmac lets the file choose these; for other schemes they are not meaningful.
        doc["algorithm"] = auth.algorithm
        doc["encoding"] = auth.encoding
    if auth.username is not None:
        doc["username"] = auth.username
    if auth.tolerance is not None:
        doc["tolerance"] = format_duration(auth.tolerance)
    return doc


def dedupe_to_json(dedupe: DedupeConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if dedupe.header is not None:
        doc["header"] = dedupe.header
    if dedupe.json_pointer is not None:
        doc["json"] = dedupe.json_pointer
    if dedupe.body_hash:
        doc["body_hash"] = True
    doc["ttl"] = format_duration(dedupe.ttl)
    return doc
