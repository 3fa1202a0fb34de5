"""Who performs an operation: named in its audit row and in the run's provenance."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from triggerd.model import DEFAULT_TENANT


@dataclass(frozen=True, kw_only=True)
class Actor:
    """``name`` is what the audit trail shows: ``cli:<unix user>``, ``token:<token name>``,
    ``console:<token name>`` or ``scheduler`` (the daemon itself, e.g. an automatic pause).
    ``via`` is how the operation arrived: ``cli``, ``api``, ``console`` or ``scheduler``.
    ``tenant`` is the tenant the actor is bound to (None: every tenant)."""

    name: str
    via: str
    tenant: str | None = None


def cli_actor(tenant: str | None = None) -> Actor:
    """The local superuser: whoever runs the command line holds the database URL; it works
    in every tenant, or in the one ``--tenant`` names."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a bare container uid)
        user = "unknown"
    return Actor(name=f"cli:{user}", via="cli", tenant=tenant)


def token_actor(token_name: str, tenant: str | None = None, *, via: str = "api") -> Actor:
    """An admin API (or console) request, acting as its bearer token."""
    return Actor(name=f"token:{token_name}", via=via, tenant=tenant)


def home(actor: Actor) -> str:
    """The tenant whose names (workflow keys, trigger names) the actor addresses: its
    own, else the default one."""
    return actor.tenant or DEFAULT_TENANT


def sees(actor: Actor, tenant: str) -> bool:
    """Whether an object of ``tenant`` exists for the actor (another tenant's does not:
    it is answered as not found, never as forbidden)."""
    return actor.tenant is None or actor.tenant == tenant


SCHEDULER = Actor(name="scheduler", via="scheduler")
