"""A SIGHUP that comes before the daemon's event loop takes it over is remembered, not
fatal. Its own module, importing only :mod:`signal`: the ``triggerd`` command installs the
handler before it imports anything else (the command's imports take about a third of a
second, and the default action of a SIGHUP in them ends the process)."""

from __future__ import annotations

import signal

_early_reload = False


def _remember_reload(signum: int, frame: object) -> None:
    global _early_reload
    _early_reload = True


def defer_early_reload() -> None:
    """Until the daemon's loop takes SIGHUP over, remember one instead of dying of it (its
    default action ends the process): ``systemctl reload`` or ``kill -HUP`` sent just
    after the start killed the daemon."""
    signal.signal(signal.SIGHUP, _remember_reload)


def take_early_reload() -> bool:
    """Whether a SIGHUP came before the daemon's own handler (and forget it)."""
    global _early_reload
    came, _early_reload = _early_reload, False
    return came
