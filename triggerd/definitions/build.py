"""Building the domain values of :mod:`triggerd.model` from validated documents.

Everything here runs only after the schema and the semantic checks found no problem, so it
reads keys directly and applies the defaults of the definition file format.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from triggerd.definitions.schema import TRIGGER_COMMON_KEYS
from triggerd.durations import parse_duration
from triggerd.model import (
    DEFAULT_TENANT,
    AuthConfig,
    CalendarMode,
    CalendarRef,
    CalendarShift,
    CatchupRate,
    ConcurrencyConfig,
    CronConfig,
    DebounceConfig,
    DedupeConfig,
    Edge,
    EdgeOn,
    Graph,
    IntervalConfig,
    ManualConfig,
    MisfirePolicy,
    Node,
    OverlapPolicy,
    ResponseMode,
    RetryPolicy,
    SecretRef,
    TriggerConfig,
    TriggerSpec,
    TriggerType,
    WebhookConfig,
    WorkflowSpec,
    WorkflowStatus,
    normalize_webhook_path,
)
from triggerd.walker import branch_label

WORKFLOW_TIMEOUT = timedelta(hours=1)


def _json(value: Any) -> Any:
    """A private copy, so a spec never shares mutable state with the caller's document."""
    if not value and (type(value) is dict or type(value) is list):
        return type(value)()  # most inputs and params are empty: no deepcopy's bookkeeping
    return copy.deepcopy(value)


def _duration(config: Mapping[str, Any], key: str, default: timedelta) -> timedelta:
    value = config.get(key)
    return default if value is None else parse_duration(value, what=key)


def _optional_duration(config: Mapping[str, Any], key: str) -> timedelta | None:
    value = config.get(key)
    return None if value is None else parse_duration(value, what=key)


def document_tenant(document: Any) -> str:
    """The tenant a (checked) definition document names, else the default one."""
    tenant = document.get("tenant") if isinstance(document, dict) else None
    return tenant if isinstance(tenant, str) else DEFAULT_TENANT


def build_workflow(
    doc: Mapping[str, Any], built: dict[tuple[str, str], TriggerConfig] | None = None,
    *, tenant: str = DEFAULT_TENANT, origin: tuple[str, str] | None = None,
) -> WorkflowSpec:
    """The workflow of a checked document (``built``: see :func:`build_trigger`) of
    ``tenant`` (the document's ``tenant:``)."""
    return WorkflowSpec(
        tenant_id=tenant,
        key=doc["key"],
        name=doc.get("name", doc["key"]),
        description=doc.get("description", ""),
        status=WorkflowStatus(doc.get("status", WorkflowStatus.ACTIVE.value)),
        status_given="status" in doc,
        parameter_schema=_json(doc.get("parameter_schema", {})),
        env=dict(doc.get("env", {})),
        secrets={name: build_secret(ref) for name, ref in doc.get("secrets", {}).items()},
        timeout=_duration(doc, "timeout", WORKFLOW_TIMEOUT),
        on_failure=doc.get("on_failure"),
        graph=build_graph(doc["graph"]),
        triggers=tuple(build_trigger(t, built) for t in doc.get("triggers", [])),
        origin=origin,
    )


def build_secret(doc: Mapping[str, Any]) -> SecretRef:
    return SecretRef(env=doc.get("env"), file=doc.get("file"), credential=doc.get("credential"))


# --- graph ---------------------------------------------------------------------------


def build_graph(doc: Mapping[str, Any]) -> Graph:
    return Graph(
        nodes=tuple(build_node(n) for n in doc["nodes"]),
        edges=tuple(build_edge(e) for e in doc.get("edges", [])),
    )


def build_node(doc: Mapping[str, Any]) -> Node:
    return Node(
        id=doc["id"],
        type=doc["type"],
        params=_json(doc.get("params", {})),
        retry=build_retry(doc.get("retry", {})),
        timeout=_optional_duration(doc, "timeout"),
    )


def build_retry(doc: Mapping[str, Any]) -> RetryPolicy:
    defaults = RetryPolicy()
    return RetryPolicy(
        # YAML/JSON may spell an integer as 3.0; the schema accepts it as an integer.
        max_attempts=int(doc.get("max_attempts", defaults.max_attempts)),
        backoff=_duration(doc, "backoff", defaults.backoff),
        max_backoff=_duration(doc, "max_backoff", defaults.max_backoff),
        retry_on=tuple(
            code if isinstance(code, str) else int(code) for code in doc.get("retry_on", ())
        ),
    )


def build_edge(doc: Mapping[str, Any]) -> Edge:
    when = doc.get("when")
    return Edge(
        source=doc["from"],
        target=doc["to"],
        # `when: true` in YAML is a boolean: keep the label the walker compares with.
        when=None if when is None else branch_label(when),
        on=EdgeOn(doc.get("on", EdgeOn.SUCCESS.value)),
    )


# --- triggers ------------------------------------------------------------------------


_TRIGGER_TYPES = {t.value: t for t in TriggerType}  # a checked document names one of them


def build_trigger(
    doc: Mapping[str, Any], built: dict[tuple[str, str], TriggerConfig] | None = None
) -> TriggerSpec:
    """The trigger of a checked document; ``built`` shares the (frozen) configs of equal
    documents across calls: a large file repeats a few thousand schedules."""
    trigger_type = _TRIGGER_TYPES[doc["type"]]
    version = doc.get("version")
    rest = {k: v for k, v in doc.items()
            if k not in TRIGGER_COMMON_KEYS and k != "correlation"}
    if built is None:
        config = build_trigger_config(trigger_type, rest)
    else:
        key = (trigger_type.value, repr(rest))  # repr tells 1, 1.0 and True apart
        found = built.get(key)
        config = built[key] = build_trigger_config(trigger_type, rest) if found is None else found
    return TriggerSpec(
        name=doc["name"],
        type=trigger_type,
        enabled=doc.get("enabled", True),
        version=None if version is None else int(version),
        input=_json(doc.get("input", {})),
        config=config,
        correlation=dict(doc.get("correlation", {})),
    )


def build_trigger_config(trigger_type: TriggerType, doc: Mapping[str, Any]) -> TriggerConfig:
    if trigger_type is TriggerType.CRON:
        return build_cron(doc)
    if trigger_type is TriggerType.INTERVAL:
        return build_interval(doc)
    if trigger_type is TriggerType.WEBHOOK:
        return build_webhook(doc)
    return ManualConfig()


def _scheduled(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The keys every scheduled kind shares, as keyword arguments of its config."""
    defaults = IntervalConfig(every=timedelta(seconds=1))
    calendar = doc.get("calendar")
    rate = doc.get("catchup_rate")
    max_runs = doc.get("max_runs")
    failures = doc.get("pause_after_failures")
    return {
        "timezone": doc.get("timezone", defaults.timezone),
        "misfire": MisfirePolicy(doc.get("misfire", defaults.misfire.value)),
        "catchup_window": _duration(doc, "catchup_window", defaults.catchup_window),
        "max_catchup": int(doc.get("max_catchup", defaults.max_catchup)),
        "overlap": OverlapPolicy(doc.get("overlap", defaults.overlap.value)),
        "jitter": _duration(doc, "jitter", defaults.jitter),
        "calendar": None if calendar is None else build_calendar_ref(calendar),
        "start_at": _instant(doc.get("start_at")),
        "end_at": _instant(doc.get("end_at")),
        "max_runs": None if max_runs is None else int(max_runs),
        "pause_after_failures": None if failures is None else int(failures),
        "monitor": bool(doc.get("monitor", False)),
        "catchup_rate": None if rate is None else parse_rate(rate),
    }


def _instant(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def parse_rate(text: str) -> CatchupRate:
    """``5/s``, ``100/m``, ``1000/h`` (the schema checked the form)."""
    count, unit = text.split("/")
    per = {"s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1)}
    return CatchupRate(count=int(count), per=per[unit])


def build_calendar_ref(doc: Mapping[str, Any]) -> CalendarRef:
    mode = CalendarMode.ONLY if "only" in doc else CalendarMode.SKIP
    return CalendarRef(
        mode=mode,
        name=str(doc[mode.value]),
        shift=CalendarShift(doc.get("shift", CalendarShift.NONE.value)),
        definition=_json(doc.get("definition", {})),
    )


def build_cron(doc: Mapping[str, Any]) -> CronConfig:
    expressions = doc["cron"]
    return CronConfig(
        cron=expressions if isinstance(expressions, str) else tuple(expressions),
        **_scheduled(doc),
    )


def build_interval(doc: Mapping[str, Any]) -> IntervalConfig:
    return IntervalConfig(
        every=parse_duration(doc["every"], what="every"),
        offset=_duration(doc, "offset", timedelta(0)),
        **_scheduled(doc),
    )


def build_webhook(doc: Mapping[str, Any]) -> WebhookConfig:
    defaults = WebhookConfig(path=normalize_webhook_path(doc["path"]))
    dedupe = doc.get("dedupe")
    off = dedupe == "none"  # no dedupe at all, not even on the scheme's delivery id
    max_body = doc.get("max_body_bytes")
    rate = doc.get("rate")
    burst = doc.get("burst")
    return WebhookConfig(
        path=defaults.path,
        methods=tuple(doc.get("methods", defaults.methods)),
        auth=build_auth(doc.get("auth", {})),
        dedupe=None if dedupe is None or off else build_dedupe(dedupe),
        response=ResponseMode(doc.get("response", defaults.response.value)),
        timeout=_duration(doc, "timeout", defaults.timeout),
        expose_output=doc.get("expose_output", defaults.expose_output),
        max_body_bytes=None if max_body is None else int(max_body),
        body=doc.get("body", defaults.body),
        rate=None if rate is None else float(rate),
        burst=None if burst is None else int(burst),
        debounce=build_debounce(doc.get("debounce")),
        concurrency=build_concurrency(doc.get("concurrency")),
        filter=doc.get("filter"),
        provider_dedupe=not off,
        allow_from=tuple(doc.get("allow_from", ())),
    )


def build_debounce(doc: Mapping[str, Any] | None) -> DebounceConfig | None:
    if doc is None:
        return None
    period = _duration(doc, "period", timedelta(0))
    # No max_wait: a burst is cut after ten periods, so a run is never postponed forever.
    return DebounceConfig(
        key=doc["key"], period=period, max_wait=_duration(doc, "max_wait", period * 10)
    )


def build_concurrency(doc: Mapping[str, Any] | None) -> ConcurrencyConfig | None:
    if doc is None:
        return None
    return ConcurrencyConfig(key=doc["key"], limit=int(doc["limit"]))


def build_auth(doc: Mapping[str, Any]) -> AuthConfig:
    defaults = AuthConfig()
    secret = doc.get("secret")
    return AuthConfig(
        scheme=doc.get("scheme", defaults.scheme),
        secret=(
            None if secret is None
            else tuple(build_secret(s) for s in secret) if isinstance(secret, list)
            else build_secret(secret)
        ),
        header=doc.get("header"),
        prefix=doc.get("prefix"),
        algorithm=doc.get("algorithm", defaults.algorithm),
        encoding=doc.get("encoding", defaults.encoding),
        username=doc.get("username"),
        tolerance=_optional_duration(doc, "tolerance"),
    )


def build_dedupe(doc: Mapping[str, Any]) -> DedupeConfig:
    return DedupeConfig(
        header=doc.get("header"),
        json_pointer=doc.get("json"),
        body_hash=bool(doc.get("body_hash", False)),
        ttl=_duration(doc, "ttl", DedupeConfig().ttl),
    )
