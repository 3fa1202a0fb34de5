"""What ``http`` nodes may connect to (``[egress]``).

Whoever can apply a definition chooses the URLs its ``http`` nodes call, so the daemon
decides, for every address it is about to connect to, whether that address is refused:

* link-local and cloud metadata addresses (``169.254.0.0/16``, ``fe80::/10``,
  ``fd00:ec2::254``, ``100.100.100.200``) always, unless listed in ``[egress] allow``;
* this daemon's own port on any address of this machine (its admin API and webhooks),
  unless ``[egress] allow_self = true``;
* the networks of ``[egress] deny``, unless listed in ``[egress] allow``.

The decision is a pure function (:func:`refusal`). It is enforced by
:class:`EgressConnector` on the addresses a host name resolves to, for every connection
the session opens, so DNS answers that change (rebinding) and redirects are checked like
the first request; a socket factory checks the same again just before ``connect``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiohttp

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult

    from triggerd.config import EgressSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

EGRESS_DENIED: Final = "EGRESS_DENIED"

# Addresses no workflow needs and an attacker wants: instance metadata (AWS, GCP, Azure,
# Oracle: 169.254.169.254; AWS over IPv6: fd00:ec2::254; Alibaba: 100.100.100.200) and the
# rest of link-local.
LINK_LOCAL_AND_METADATA: Final[tuple[IPNetwork, ...]] = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")
)


@dataclass(frozen=True, kw_only=True)
class EgressPolicy:
    deny: tuple[IPNetwork, ...] = ()  # [egress] deny, on top of LINK_LOCAL_AND_METADATA
    allow: tuple[IPNetwork, ...] = ()
    allow_self: bool = False
    own_ports: frozenset[int] = frozenset()  # the daemon's listening TCP ports


DEFAULT_POLICY: Final = EgressPolicy()


def parse_networks(key: str, values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings (a bare address is a /32 or /128); ValueError names ``key`` and the
    bad entry."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{key}: {value!r} is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)"
            ) from None
    return tuple(networks)


def policy_from_settings(egress: EgressSettings, own_ports: Iterable[int] = ()) -> EgressPolicy:
    return EgressPolicy(
        deny=parse_networks("egress.deny", egress.deny),
        allow=parse_networks("egress.allow", egress.allow),
        allow_self=egress.allow_self,
        own_ports=frozenset(p for p in own_ports if p),
    )


# RFC 6052's well-known NAT64 prefix: a network's translator connects 64:ff9b::a9fe:a9fe
# to 169.254.169.254.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _normalized(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one reaches, when it embeds one (IPv4-mapped, NAT64,
    6to4): judged as that, or ``[egress]`` rules and the metadata list could be passed by
    writing an IPv4 address in IPv6."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> IPNetwork | None:
    for network in networks:
        if address.version == network.version and address in network:
            return network
    return None


def _first_within(forms: Sequence[IPAddress], networks: Sequence[IPNetwork]
                  ) -> IPNetwork | None:
    for form in forms:
        network = _within(form, networks)
        if network is not None:
            return network
    return None


def refusal(
    policy: EgressPolicy, host: str, port: int, is_local: Callable[[IPAddress], bool]
) -> str | None:
    """Why a connection to ``host`` (an IP address) and ``port`` is refused, or None.

    ``is_local`` answers whether an address belongs to this machine (only asked when the
    port is one of the daemon's own)."""
    try:
        written = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return f"{host} is not an IP address"
    address = _normalized(written)
    # Rules are matched against both spellings: an IPv6 rule (deny 64:ff9b::/96) still
    # names the address it was written for.
    forms = (address,) if address == written else (address, written)
    where = f"{_show(address)}:{port}"
    if not policy.allow_self and port in policy.own_ports and is_local(address):
        return (
            f"egress to {where} refused: it is this daemon's own listener"
            " (set [egress] allow_self = true to allow)"
        )
    if any(_within(form, policy.allow) is not None for form in forms):
        return None
    builtin = _first_within(forms, LINK_LOCAL_AND_METADATA)
    if builtin is not None:
        return (
            f"egress to {where} refused: {builtin} is link-local or cloud metadata"
            " (add it to [egress] allow to allow)"
        )
    denied = _first_within(forms, policy.deny)
    if denied is not None:
        return f"egress to {where} refused: {denied} is in [egress] deny"
    return None


def _show(address: IPAddress) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def is_local_address(address: IPAddress) -> bool:
    """Whether ``address`` is one of this machine's: the unspecified address (connecting to
    it reaches this host), loopback, or an address a socket can bind to."""
    if address.is_unspecified or address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


class EgressDenied(aiohttp.ClientConnectionError):
    """A connection refused by the egress policy; the message says why and which key
    changes it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _RefusedSocket(PermissionError):
    """Raised by the socket factory, the last check before ``connect``."""


class EgressConnector(aiohttp.TCPConnector):
    """A TCP connector that refuses the addresses :attr:`policy` refuses. ``policy`` may be
    replaced while the connector is in use (a reload); new connections follow it."""

    def __init__(self, policy: EgressPolicy = DEFAULT_POLICY, **kwargs: Any) -> None:
        super().__init__(socket_factory=self._socket, **kwargs)
        self.policy = policy

    async def _resolve_host(
        self, host: str, port: int, traces: Any = None
    ) -> list[ResolveResult]:
        # Every connection (first request, redirect hop, pooled-DNS reuse) resolves here;
        # IP literals come back unresolved, as themselves.
        resolved = await super()._resolve_host(host, port, traces=traces)
        allowed: list[ResolveResult] = []
        reasons: list[str] = []
        for entry in resolved:
            reason = refusal(self.policy, entry["host"], entry["port"], is_local_address)
            if reason is None:
                allowed.append(entry)
            else:
                reasons.append(reason)
        if not allowed:
            named = "" if _is_literal(host) else f"{host} resolves to denied addresses; "
            raise EgressDenied(named + "; ".join(dict.fromkeys(reasons)))
        return allowed

    def _socket(self, addr_info: Any) -> socket.socket:
        family, kind, proto, _, address = addr_info
        reason = refusal(self.policy, str(address[0]), int(address[1]), is_local_address)
        if reason is not None:
            raise _RefusedSocket(reason)
        return socket.socket(family=family, type=kind, proto=proto)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def egress_session(policy: EgressPolicy = DEFAULT_POLICY) -> aiohttp.ClientSession:
    """A client session whose connections follow ``policy``. It keeps no cookies, as the
    executor's client keeps none (triggerd/executor/service.py): an http node's cookies
    live for its own redirects only (triggerd/nodes/http.py), wherever it runs."""
    return aiohttp.ClientSession(connector=EgressConnector(policy),
                                 cookie_jar=aiohttp.DummyCookieJar())
