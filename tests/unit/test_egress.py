"""The egress decision of http nodes, a pure function of the policy and an address."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from triggerd.config import load_settings
from triggerd.egress import EgressPolicy, IPAddress, is_local_address, refusal
from triggerd.errors import ConfigError

OWN = 8080


def local(address: IPAddress) -> bool:
    return address.is_loopback or str(address) == "192.0.2.10"


def decide(policy: EgressPolicy, host: str, port: int = 80) -> str | None:
    return refusal(policy, host, port, local)


METADATA = [
    ("169.254.169.254", "169.254.169.254:80", "169.254.0.0/16"),
    ("169.254.1.1", "169.254.1.1:80", "169.254.0.0/16"),
    ("::ffff:169.254.169.254", "169.254.169.254:80", "169.254.0.0/16"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254:80", "169.254.0.0/16"),  # NAT64
    ("64:ff9b::169.254.169.254", "169.254.169.254:80", "169.254.0.0/16"),
    ("2002:a9fe:a9fe::1", "169.254.169.254:80", "169.254.0.0/16"),  # 6to4
    ("fe80::1", "[fe80::1]:80", "fe80::/10"),
    ("fe80::1%eth0", "[fe80::1]:80", "fe80::/10"),
    ("fd00:ec2::254", "[fd00:ec2::254]:80", "fd00:ec2::254/128"),
    ("100.100.100.200", "100.100.100.200:80", "100.100.100.200/32"),
]


@pytest.mark.parametrize(("host", "where", "network"), METADATA)
def test_link_local_and_metadata_are_refused_by_default(
    host: str, where: str, network: str
) -> None:
    assert decide(EgressPolicy(), host) == (
        f"egress to {where} refused: {network} is link-local or cloud metadata"
        " (add it to [egress] allow to allow)")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.1.2.3", "192.168.0.5", "93.184.215.14",
                                  "100.100.100.201", "fd00:ec2::253"])
def test_everything_else_is_allowed_by_default(host: str) -> None:
    assert decide(EgressPolicy(own_ports=frozenset({OWN})), host) is None


def test_allow_wins_over_the_builtin_list() -> None:
    policy = EgressPolicy(allow=(ipaddress.ip_network("169.254.169.254/32"),))
    assert decide(policy, "169.254.169.254") is None
    assert decide(policy, "169.254.169.253") is not None


def test_deny_adds_networks_and_allow_punches_holes() -> None:
    policy = EgressPolicy(deny=(ipaddress.ip_network("127.0.0.0/8"),),
                          allow=(ipaddress.ip_network("127.0.0.5/32"),))
    assert decide(policy, "127.0.0.1", 9000) == (
        "egress to 127.0.0.1:9000 refused: 127.0.0.0/8 is in [egress] deny")
    assert decide(policy, "127.0.0.5", 9000) is None
    assert decide(policy, "::1", 9000) is None  # an IPv4 network never holds IPv6 addresses


@pytest.mark.parametrize(("host", "where"), [
    ("127.0.0.1", "127.0.0.1"), ("127.9.9.9", "127.9.9.9"), ("::1", "[::1]"),
    ("192.0.2.10", "192.0.2.10"), ("::ffff:127.0.0.1", "127.0.0.1"),
])
def test_the_daemons_own_port_on_this_machine_is_refused(host: str, where: str) -> None:
    policy = EgressPolicy(own_ports=frozenset({OWN}))
    assert decide(policy, host, OWN) == (
        f"egress to {where}:{OWN} refused: it is this daemon's own listener"
        " (set [egress] allow_self = true to allow)")


def test_the_same_port_elsewhere_and_other_local_ports_are_allowed() -> None:
    policy = EgressPolicy(own_ports=frozenset({OWN}))
    assert decide(policy, "192.0.2.11", OWN) is None
    assert decide(policy, "127.0.0.1", OWN + 1) is None


def test_allow_self_lets_nodes_call_the_daemon_but_not_metadata() -> None:
    policy = EgressPolicy(own_ports=frozenset({OWN}), allow_self=True)
    assert decide(policy, "127.0.0.1", OWN) is None
    assert decide(policy, "169.254.169.254", OWN) is not None


def test_allow_does_not_reopen_the_own_port() -> None:
    policy = EgressPolicy(own_ports=frozenset({OWN}),
                          allow=(ipaddress.ip_network("127.0.0.0/8"),))
    assert decide(policy, "127.0.0.1", OWN) is not None


def test_local_addresses_are_the_ones_this_machine_binds() -> None:
    assert is_local_address(ipaddress.ip_address("127.0.0.1"))
    assert is_local_address(ipaddress.ip_address("127.3.4.5"))
    assert is_local_address(ipaddress.ip_address("0.0.0.0"))
    assert not is_local_address(ipaddress.ip_address("192.0.2.77"))  # TEST-NET-1


@pytest.mark.parametrize(("line", "message"), [
    ('[egress]\ndeny = ["10.0.0.0/8", "ten"]\n',
     "egress.deny: 'ten' is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)"),
    ('[egress]\nallow = ["fe80::/300"]\n',
     "egress.allow: 'fe80::/300' is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)"),
    ('[daemon]\nsecret_roots = ["secrets"]\n',
     "daemon.secret_roots: 'secrets' is not an absolute path"),
])
def test_bad_settings_are_one_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(line)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.message == f"{path}: {message}"


def test_settings_from_the_environment() -> None:
    settings = load_settings(environ={"TRIGGERD_EGRESS_DENY": "10.0.0.0/8, 127.0.0.0/8",
                                      "TRIGGERD_EGRESS_ALLOW_SELF": "true",
                                      "TRIGGERD_DAEMON_SECRET_ROOTS": "/etc/triggerd"})
    assert settings.egress.deny == ("10.0.0.0/8", "127.0.0.0/8")
    assert settings.egress.allow_self is True
    assert settings.daemon.secret_roots == ("/etc/triggerd",)


@pytest.mark.parametrize("host", ["64:ff9b::a00:5", "64:ff9b::10.0.0.5", "2002:a00:5::",
                                  "::ffff:10.0.0.5"])
def test_an_ipv4_address_written_in_ipv6_is_judged_as_the_ipv4_one(host: str) -> None:
    policy = EgressPolicy(deny=(ipaddress.ip_network("10.0.0.0/8"),))
    assert decide(policy, host) == "egress to 10.0.0.5:80 refused: 10.0.0.0/8 is in [egress] deny"
    assert decide(EgressPolicy(), host) is None


def test_an_ipv6_rule_still_names_the_nat64_and_6to4_addresses_it_was_written_for() -> None:
    policy = EgressPolicy(deny=(ipaddress.ip_network("64:ff9b::/96"),
                                ipaddress.ip_network("2002::/16")))
    assert decide(policy, "64:ff9b::808:808") == (
        "egress to 8.8.8.8:80 refused: 64:ff9b::/96 is in [egress] deny")
    assert decide(policy, "2002:808:808::1") == (
        "egress to 8.8.8.8:80 refused: 2002::/16 is in [egress] deny")
    assert decide(policy, "8.8.8.8") is None
    allowed = EgressPolicy(allow=(ipaddress.ip_network("64:ff9b::a9fe:a9fe/128"),))
    assert decide(allowed, "64:ff9b::a9fe:a9fe") is None
    assert decide(allowed, "169.254.169.254") is not None
