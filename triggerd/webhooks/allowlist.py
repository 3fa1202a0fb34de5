"""Which address a webhook request comes from, and whether a trigger's ``allow_from``
admits it. Pure: addresses and networks in, a verdict out.

The client is the TCP peer (for a request an extra HTTP process forwarded, the peer that
process saw: :func:`triggerd.serving.forward.client_address`). ``X-Forwarded-For`` counts
only when that peer is one of ``[http] trusted_proxies``: the client is then the right-most
address of the header that is not itself a trusted proxy (each proxy appends the address
it received the request from, so entries to the left of the first untrusted one may be
forged by the client). Anything that cannot be read as an address is refused, never
guessed.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Networks = tuple[IPNetwork, ...]


def parse_network(text: str) -> IPNetwork | None:
    """``text`` as a network (host bits may be set; a bare address is a /32 or /128), or
    ``None`` when it is not one."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def parse_networks(texts: Iterable[str]) -> Networks:
    """Every network of ``texts`` (configuration and definitions were checked before;
    an unreadable entry is left out rather than widening anything)."""
    return tuple(n for n in map(parse_network, texts) if n is not None)


# Parsing is most of the cost of a check (microseconds in ``ipaddress``), and the same
# peers and proxies come back again and again; bounded, so varied input cannot grow it.
@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """An address as a peer or an ``X-Forwarded-For`` entry gives it (``[v6]`` brackets,
    an IPv4-mapped IPv6 address as the IPv4 one), or ``None``."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: IPAddress, networks: Networks) -> bool:
    # A version mismatch is simply "not in" (the ``in`` operator says so without raising).
    # A plain loop: any() over a generator costs more than the test for short lists.
    for network in networks:  # noqa: SIM110
        if address in network:
            return True
    return False


def client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted: Networks
) -> IPAddress | None:
    """The client's address, or ``None`` when it cannot be known.

    ``forwarded_for`` holds the values of every ``X-Forwarded-For`` header in order (a
    proxy may add a header of its own rather than extend the last one)."""
    address = parse_address(peer) if peer else None
    if address is None or not trusted or not forwarded_for or not within(address, trusted):
        return address
    entries = [e for value in forwarded_for for e in value.split(",")]
    for entry in reversed(entries):
        hop = parse_address(entry)
        if hop is None:
            return None  # a garbled chain names no one
        address = hop
        if not within(hop, trusted):
            return hop
    return address  # every hop is a trusted proxy: the left-most is the client
