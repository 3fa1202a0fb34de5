"""The ``triggerd`` command's entry point: ``triggerd run`` defers a SIGHUP before the
command's own imports (about a third of a second), which a SIGHUP's default action would
end; then :func:`triggerd.cli.main` runs."""

from __future__ import annotations

import sys

from triggerd.early_reload import defer_early_reload


def main() -> int:
    if "run" in sys.argv[1:]:  # another command's argument named "run" only defers a HUP
        defer_early_reload()
    from triggerd.cli import main as cli_main

    return cli_main()
