"""The monitoring kit in config/monitoring: the alert rules and the Grafana dashboard name
only metrics (and labels) that triggerd exports, and the rules are valid Prometheus rules
(``promtool check rules`` when Debian's prometheus package is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from triggerd.api.metrics import Metrics

KIT = Path(__file__).resolve().parents[2] / "config" / "monitoring"
RULES = KIT / "triggerd-alerts.yml"
DASHBOARD = KIT / "grafana-dashboard.json"
# Series Prometheus itself provides, not triggerd.
PROMETHEUS_OWN = {"up"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",)}
_SELECTOR = re.compile(r"\b([a-z_:][a-z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-z_][a-z0-9_]*)\s*(=~|!~|!=|=)\s*\"")
_FUNCTIONS_AND_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "abs", "and",
    "or", "unless", "clamp_min", "deriv", "le", "instance", "status", "workflow", "outcome",
    "node_type", "state", "job", "without", "on", "ignoring", "avg", "count",
}


def exported() -> dict[str, set[str]]:
    """Every series name triggerd exports, with the label names it carries."""
    metrics = Metrics()
    labels_of = {
        metric._name: set(metric._labelnames)
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            extra = {"le"} if suffix == "_bucket" else set()
            labels = labels_of.get(family.name, set())
            series[family.name + suffix] = labels | extra | {"instance", "job"}
    return series


def expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    found = [(rule["alert"], rule["expr"]) for group in rules["groups"]
             for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found += [(panel["title"], target["expr"]) for panel in dashboard["panels"]
              for target in panel["targets"]]
    return found


def referenced(expr: str) -> list[tuple[str, set[str]]]:
    """(series name, label names matched) for every selector in a PromQL expression."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    selectors = []
    for match in _SELECTOR.finditer(re.sub(r"\[[^\]]*\]", "", expr)):
        name, braces = match.group(1), match.group(2) or ""
        if name in _FUNCTIONS_AND_WORDS or name.startswith("__"):
            continue
        if f"{name}(" in without_strings.replace(" (", "("):
            continue  # a function call
        selectors.append((name, {m.group(1) for m in _MATCHER.finditer(braces)}))
    return selectors


def test_every_expression_names_exported_metrics_and_labels() -> None:
    series = exported()
    checked = 0
    for where, expr in expressions():
        for name, labels in referenced(expr):
            if name in PROMETHEUS_OWN:
                continue
            assert name in series, f"{where}: {name} is not a metric triggerd exports"
            assert labels <= series[name], (
                f"{where}: {name} has no label(s) {sorted(labels - series[name])}"
            )
            checked += 1
    assert checked >= 20  # the kit really was read


def test_the_checker_catches_a_misspelled_metric_and_label() -> None:
    series = exported()
    assert referenced('rate(triggerd_cron_fire_total{outcome="fired"}[5m])') == [
        ("triggerd_cron_fire_total", {"outcome"})
    ]
    assert "triggerd_cron_fire_total" not in series
    (name, labels), = referenced('triggerd_queue_depth{state="NEW"}')
    assert not labels <= series[name]


def test_the_alert_rules_are_complete() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    # What the issue asks the kit to watch, at least.
    for wanted in ("TriggerdOverdueSlots", "TriggerdTriggerFailing", "TriggerdWebhook5xx",
                   "TriggerdWebhookBackpressure", "TriggerdExecutorBacklog",
                   "TriggerdEventLoopLag", "TriggerdSlotsSkipped"):
        assert wanted in alerts
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name


def test_the_dashboard_is_importable() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (apt-get install prometheus)")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout
