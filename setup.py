"""Ships the top-level ``migrations/`` inside the package as ``triggerd/migrations/``.

Everything else about the build is in pyproject.toml. The migrations live at the top of the
repository (DESIGN §3); a wheel must still carry them, so build_py copies them in.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithMigrations(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "triggerd" / "migrations"
        self.mkpath(str(target))
        for source in sorted((ROOT / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql")):
            self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildPyWithMigrations})
