"""Compile the package's bytecode before a bench times a daemon's start.

An installed wheel has it compiled, and a checkout writes it on its first import, unless
PYTHONDONTWRITEBYTECODE is set (some environments export it): then every daemon a bench
started compiled triggerd from source again, about 0.2-0.8 s of its start that no
installed daemon pays. compileall writes the files whatever that variable says."""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "triggerd"


def compile_package() -> None:
    if not compileall.compile_dir(str(PACKAGE), quiet=1):
        raise SystemExit(f"could not compile {PACKAGE}")
