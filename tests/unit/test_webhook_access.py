"""Issue 17 items 1, 4, 5 without I/O: what `check` says about dedupe: none, secret lists
and allow_from; how they are read and stored; provider dedupe keys; rotation; the client
address behind trusted proxies; [http] trusted_proxies in the configuration."""

from __future__ import annotations

import hmac
import ipaddress
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_definitions import found, hook, workflow
from triggerd.api.metrics import OVERFLOW_LABEL, Metrics
from triggerd.config import Settings, load_settings
from triggerd.definitions import (
    canonical_json,
    load_documents,
    parse_trigger_config,
    trigger_config_to_json,
)
from triggerd.errors import ConfigError
from triggerd.model import (
    AuthConfig,
    DedupeConfig,
    SecretRef,
    TriggerType,
    WebhookConfig,
)
from triggerd.secrets import file_secret_problems
from triggerd.serving.worker import Reporter
from triggerd.serving.workers import HttpWorkers, _Worker
from triggerd.webhooks.allowlist import client_ip, parse_networks
from triggerd.webhooks.auth import check_rotating, make_checker
from triggerd.webhooks.dedupe import dedupe_key, effective_dedupe

WHERE = "$.workflows[0].triggers[0]"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NETWORK_HINT = "is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)"


# --- check: bad values with their JSON path -------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        (
            {"dedupe": "never"},
            "dedupe",
            "'never' is not a dedupe setting: write none, or a mapping with one of header,"
            " json or body_hash",
        ),
        (
            {"dedupe": "None"},
            "dedupe",
            "'None' is not a dedupe setting: write none, or a mapping with one of header,"
            " json or body_hash",
        ),
        (
            {"dedupe": 3},
            "dedupe",
            "3 is not a dedupe setting: write none, or a mapping with one of header,"
            " json or body_hash",
        ),
        ({"allow_from": ["10.0.0.0/33"]}, "allow_from[0]", f"'10.0.0.0/33' {NETWORK_HINT}"),
        (
            {"allow_from": ["10.0.0.0/8", "fd00::/8", "example.com"]},
            "allow_from[2]",
            f"'example.com' {NETWORK_HINT}",
        ),
        ({"allow_from": []}, "allow_from", "must not be empty"),
        ({"allow_from": ["::1", "::1"]}, "allow_from", "must not contain duplicates"),
        (
            {"allow_from": "10.0.0.0/8"},
            "allow_from",
            "expected a list, got '10.0.0.0/8' (a string)",
        ),
        ({"allow_from": [8]}, "allow_from[0]", "expected a string, got 8 (an integer)"),
        (
            {"auth": {"scheme": "token", "secret": []}},
            "auth.secret",
            "must not be empty",
        ),
        (
            {"auth": {"scheme": "token", "secret": [{"env": "NEW"}, {"vault": "x"}]}},
            "auth.secret[1].vault",
            "unknown key 'vault'",
        ),
        (
            {"auth": {"scheme": "token", "secret": [{"env": "NEW"}, "OLD"]}},
            "auth.secret[1]",
            "a secret reference is one of {env: NAME}, {file: PATH} or {credential: NAME},"
            " not a value written in the definition (which is not repeated here)",
        ),
        (
            {"auth": {"scheme": "none", "secret": [{"env": "A"}]}},
            "auth.secret",
            "'secret' does not apply to auth scheme 'none'",
        ),
    ],
)
def test_bad_values(fields: dict[str, Any], path: str, message: str) -> None:
    problems = found(workflow(triggers=[hook(**fields)]))
    assert (f"{WHERE}.{path}", message) in problems, problems
    assert len(problems) == 1, problems


def test_good_values_pass() -> None:
    trigger = hook(
        dedupe="none",
        allow_from=["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "10.1.2.3/8"],
        auth={"scheme": "standard", "secret": [{"env": "NEW"}, {"file": "/run/old"}]},
    )
    assert found(workflow(triggers=[trigger])) == set()


def test_a_file_secret_in_a_list_is_named_by_its_index(tmp_path: Path) -> None:
    doc = workflow(triggers=[hook(auth={
        "scheme": "token", "secret": [{"env": "NEW"}, {"file": "/etc/shadow-ish"}],
    })])
    (spec,) = load_documents([("f", {"workflows": [doc]})])
    problems = file_secret_problems("f", [spec], roots=[str(tmp_path)], environ={})
    assert [p.path for p in problems] == [f"{WHERE}.auth.secret[1].file"]


# --- reading and storing ----------------------------------------------------------------------


def test_values_are_read_and_stored_back_the_same() -> None:
    doc = workflow(triggers=[hook(
        dedupe="none",
        allow_from=["10.0.0.0/8", "2001:db8::/32"],
        auth={"scheme": "token", "secret": [{"env": "NEW"}, {"env": "OLD"}]},
    )])
    (spec,) = load_documents([("f", {"workflows": [doc]})])
    config = spec.triggers[0].config
    assert config == WebhookConfig(
        path="h",
        auth=AuthConfig(scheme="token", secret=(SecretRef(env="NEW"), SecretRef(env="OLD"))),
        provider_dedupe=False,
        allow_from=("10.0.0.0/8", "2001:db8::/32"),
    )
    stored = json.loads(canonical_json(trigger_config_to_json(config)))
    assert stored["dedupe"] == "none"
    assert stored["allow_from"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert stored["auth"]["secret"] == [{"env": "NEW"}, {"env": "OLD"}]
    assert parse_trigger_config(TriggerType.WEBHOOK, stored) == config


def test_defaults_store_nothing_new() -> None:
    # Stored configs of existing triggers stay byte for byte what they were.
    stored = trigger_config_to_json(
        WebhookConfig(path="p", auth=AuthConfig(scheme="token", secret=SecretRef(env="A")))
    )
    assert "dedupe" not in stored
    assert "allow_from" not in stored
    assert stored["auth"]["secret"] == {"env": "A"}


# --- provider dedupe ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "headers", "parsed", "key"),
    [
        ("github", {"X-GitHub-Delivery": "d-1"}, {}, "webhook:d-1"),
        ("standard", {"webhook-id": "msg_1"}, {}, "webhook:msg_1"),
        # Svix's name for it (the scheme read the svix-* set), never in place of webhook-id.
        ("standard", {"svix-id": "msg_1"}, {}, "webhook:msg_1"),
        ("standard", {"webhook-id": "msg_1", "svix-id": "msg_2"}, {}, "webhook:msg_1"),
        ("token", {"svix-id": "msg_1"}, {"id": "evt_1"}, None),
        ("stripe", {}, {"id": "evt_1", "type": "x"}, "webhook:evt_1"),
        ("slack", {"X-Slack-Retry-Num": "2"}, {"event_id": "Ev1"}, "webhook:Ev1"),
        ("slack", {}, {"type": "url_verification"}, None),
        ("token", {"webhook-id": "msg_1"}, {"id": "evt_1"}, None),
        ("none", {"X-GitHub-Delivery": "d-1"}, {"id": "evt_1"}, None),
    ],
)
def test_provider_dedupe_keys(
    scheme: str, headers: dict[str, str], parsed: dict[str, Any], key: str | None
) -> None:
    config = WebhookConfig(path="p", auth=AuthConfig(scheme=scheme))
    assert dedupe_key(effective_dedupe(config), headers, b"{}", parsed) == key
    off = WebhookConfig(path="p", auth=AuthConfig(scheme=scheme), provider_dedupe=False)
    assert effective_dedupe(off) is None


def test_a_dedupe_mapping_wins() -> None:
    mapping = DedupeConfig(header="X-Id")
    config = WebhookConfig(path="p", auth=AuthConfig(scheme="github"), dedupe=mapping)
    assert effective_dedupe(config) is mapping


# --- rotation ---------------------------------------------------------------------------------


def test_check_rotating_names_the_matching_secret() -> None:
    auth = AuthConfig(scheme="github")
    checkers = tuple(make_checker(auth, s) for s in (b"new", b"old"))

    def signed(secret: bytes) -> dict[str, str]:
        digest = hmac.new(secret, b"body", "sha256").hexdigest()
        return {"X-Hub-Signature-256": f"sha256={digest}"}

    assert check_rotating(checkers, signed(b"new"), b"body", NOW) == (None, 0)
    assert check_rotating(checkers, signed(b"old"), b"body", NOW) == (None, 1)
    refusal, index = check_rotating(checkers, signed(b"other"), b"body", NOW)
    assert index == -1
    assert refusal is not None
    assert refusal.reason.value == "bad_signature"


# --- the client address -----------------------------------------------------------------------

TRUSTED = parse_networks(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("192.0.2.1", [], TRUSTED, "192.0.2.1"),
        ("192.0.2.1", ["203.0.113.5"], TRUSTED, "192.0.2.1"),  # untrusted peer: header ignored
        ("192.0.2.1", ["203.0.113.5"], (), "192.0.2.1"),
        ("10.0.0.2", ["203.0.113.5"], TRUSTED, "203.0.113.5"),
        ("10.0.0.2", ["1.1.1.1, 203.0.113.5, 10.0.0.9"], TRUSTED, "203.0.113.5"),
        ("10.0.0.2", ["1.1.1.1", "203.0.113.5,10.0.0.9"], TRUSTED, "203.0.113.5"),
        ("10.0.0.2", ["10.0.0.7, 10.0.0.9"], TRUSTED, "10.0.0.7"),  # all hops trusted
        ("10.0.0.2", [], TRUSTED, "10.0.0.2"),
        ("10.0.0.2", ["203.0.113.5, garbage"], TRUSTED, None),
        ("10.0.0.2", ["[2001:db8::1]"], TRUSTED, "2001:db8::1"),
        ("fd00::1", ["2001:db8::1"], TRUSTED, "2001:db8::1"),
        ("::ffff:10.0.0.2", ["203.0.113.5"], TRUSTED, "203.0.113.5"),  # IPv4-mapped peer
        (None, ["203.0.113.5"], TRUSTED, None),
        ("", [], TRUSTED, None),
    ],
)
def test_client_ip(
    peer: str | None, forwarded: list[str], trusted: Any, client: str | None
) -> None:
    expected = None if client is None else ipaddress.ip_address(client)
    assert client_ip(peer, forwarded, trusted) == expected


# --- configuration ----------------------------------------------------------------------------


def test_trusted_proxies_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "triggerd.toml"
    path.write_text('[http]\ntrusted_proxies = ["10.0.0.0/8", "fd00::/8"]\n')
    assert load_settings(path, environ={}).http.trusted_proxies == ("10.0.0.0/8", "fd00::/8")
    env = {"TRIGGERD_HTTP_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"}
    assert load_settings(environ=env).http.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    assert load_settings(environ={}).http.trusted_proxies == ()


def test_a_bad_trusted_proxy_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "triggerd.toml"
    path.write_text('[http]\ntrusted_proxies = ["10.0.0.0/8", "proxy.local"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == (
        f"{path}: http.trusted_proxies: 'proxy.local' {NETWORK_HINT}"
    )
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TRIGGERD_HTTP_TRUSTED_PROXIES": "10.0.0.0/33"})
    assert str(info.value) == (
        f"TRIGGERD_HTTP_TRUSTED_PROXIES: http.trusted_proxies: '10.0.0.0/33' {NETWORK_HINT}"
    )
    path.write_text('[http]\ntrusted_proxies = "10.0.0.0/8"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == (
        f"{path}: http.trusted_proxies: expected a list of strings, got '10.0.0.0/8'"
    )


# --- the secret-used metric, in the main process and from extra processes ------------------


def secret_used(metrics: Metrics, trigger: str, secret: str) -> float | None:
    return metrics.registry.get_sample_value(
        "triggerd_webhook_secret_used_total", {"trigger": trigger, "secret": secret}
    )


def test_the_secret_used_metric_respects_the_label_limit() -> None:
    metrics = Metrics(process_metrics=False, label_limit=1)
    metrics.webhook_secret("w/a", 0)
    metrics.webhook_secret("w/a", 1, 3)
    metrics.webhook_secret("w/b", 1)  # a second trigger: past the limit
    assert secret_used(metrics, "w/a", "0") == 1
    assert secret_used(metrics, "w/a", "1") == 3
    assert secret_used(metrics, OVERFLOW_LABEL, "1") == 1
    assert secret_used(metrics, "w/b", "1") is None


class _Pipe:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.lines.append(data)


def test_an_extra_process_reports_the_secrets_used_to_the_main_one() -> None:
    pipe = _Pipe()
    reporter = Reporter(pipe)  # type: ignore[arg-type]
    reporter.webhook_secret("w/a", 1)
    reporter.webhook_secret("w/a", 1)
    reporter.webhook_secret("w/a", 0)
    reporter.flush()
    (line,) = pipe.lines
    report = json.loads(line)
    assert sorted(report["secrets"]) == [["w/a", 0, 1], ["w/a", 1, 2]]
    metrics = Metrics(process_metrics=False)
    workers = HttpWorkers(settings=Settings(), port=1, upstream="-", dsn="-", metrics=metrics)
    workers._apply(_Worker(index=1), report)
    assert secret_used(metrics, "w/a", "1") == 2
    assert secret_used(metrics, "w/a", "0") == 1


def test_each_trigger_of_a_missing_secret_is_named_in_its_own_problem() -> None:
    """The resolution was cached with its error, which named the first trigger: the log
    line of the second said "secret of webhook trigger a/one is missing" for a/two."""
    from triggerd.store.webhooks import WebhookTriggerRow
    from triggerd.webhooks.routes import build_route_table

    def row(name: str, path: str) -> WebhookTriggerRow:
        config = {"path": path, "auth": {"scheme": "token",
                                         "secret": {"env": "TRIGGERD_NOT_SET_ANYWHERE"}}}
        return WebhookTriggerRow(trigger_id=f"00000000-0000-0000-0000-00000000000{len(path)}",
                                 workflow_id="00000000-0000-0000-0000-0000000000aa",
                                 workflow_key="a", trigger_name=name, config=config,
                                 input={}, version=1,
                                 version_id="00000000-0000-0000-0000-0000000000bb",
                                 parameter_schema={})

    table = build_route_table([row("one", "p1"), row("two", "p22")],
                              default_max_body_bytes=1000)
    problems = {r.full_name: r.secret_problem for r in table.routes.values()}
    assert problems == {
        "a/one": "secret of webhook trigger a/one is missing: environment variable"
                 " TRIGGERD_NOT_SET_ANYWHERE is not set",
        "a/two": "secret of webhook trigger a/two is missing: environment variable"
                 " TRIGGERD_NOT_SET_ANYWHERE is not set",
    }, problems
