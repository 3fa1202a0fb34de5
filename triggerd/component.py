"""What the daemon runs: every long-running part (scheduler, executor, webhooks, the
embedded server's watch, the extra HTTP processes, the loop-lag monitor) is a
:class:`Component`, started in order and stopped in reverse.

:class:`BaseComponent` gives the optional parts a default (always ready, nothing to reload,
no triggers), so a component states only what it does and the daemon calls every member
directly instead of probing with ``getattr``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from triggerd.config import Settings


@runtime_checkable
class Component(Protocol):
    """A long-running part of the daemon."""

    name: str

    async def start(self) -> None:
        """Begin work; return once the part can serve (or has logged why it cannot yet)."""

    async def stop(self) -> None:
        """Finish or hand back work in progress, then release everything."""

    async def readiness(self) -> str | None:
        """Why the part is not ready (``/readyz`` answers 503 with it), or ``None``."""

    def apply_settings(self, settings: Settings) -> None:
        """Take the reloadable settings of a reload (SIGHUP) that validated."""

    async def reload(self) -> None:
        """Re-read what the part holds from the database after a reload."""

    @property
    def trigger_count(self) -> int:
        """How many triggers the part serves (for systemd's status line)."""


class BaseComponent:
    """Defaults for the optional members of :class:`Component`."""

    async def readiness(self) -> str | None:
        return None

    def apply_settings(self, settings: Settings) -> None:
        return None

    async def reload(self) -> None:
        return None

    @property
    def trigger_count(self) -> int:
        return 0


__all__ = ["BaseComponent", "Component"]
