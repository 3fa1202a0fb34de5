"""A non-editable install carries the migrations and can migrate a database.

The development venv has an editable install, which reads the top-level ``migrations/`` of
the checkout; this builds a real wheel from a copy of the source tree, installs it into a
directory of its own and migrates a fresh database with a Python that cannot see the
checkout or the editable install.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import asyncpg
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

# Run with -I -S: no PYTHONPATH, no current directory, no site processing, so the editable
# install's .pth finder never loads; the installed wheel comes first, the test venv's
# site-packages (plain, for the dependencies) last.
_PROBE = """
import sys
target, site_packages, dsn = sys.argv[1:4]
sys.path[:0] = [target]
sys.path.append(site_packages)
import asyncio, json
import triggerd
from triggerd import db
known = [m.name for m in db.known_migrations()]
report = asyncio.run(db.migrate(dsn))
print(json.dumps({"file": triggerd.__file__, "folder": str(db.migrations_folder()),
                  "known": known, "applied": list(report.applied)}))
"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)


async def test_wheel_ships_every_migration_and_migrates(tmp_path: Path, empty_dsn: str) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        REPO_ROOT, source,
        ignore=shutil.ignore_patterns(".git", ".venv", ".triggerd", "build", "dist",
                                      "*.egg-info", "__pycache__", ".mypy_cache",
                                      ".ruff_cache", ".pytest_cache"),
    )
    wheels = tmp_path / "wheels"
    built = await asyncio.to_thread(
        _run, sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
        "--no-build-isolation", "--disable-pip-version-check", "-w", str(wheels), str(source),
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("triggerd-*.whl")
    expected = sorted(p.name for p in (REPO_ROOT / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert expected, "no migration files in migrations/"
    with zipfile.ZipFile(wheel) as archive:
        shipped = sorted(
            name.removeprefix("triggerd/migrations/") for name in archive.namelist()
            if name.startswith("triggerd/migrations/")
        )
        for name in expected:  # byte for byte: the checksums in schema_migrations depend on it
            packed = archive.read(f"triggerd/migrations/{name}")
            assert packed == (REPO_ROOT / "migrations" / name).read_bytes(), name
    assert shipped == expected

    target = tmp_path / "installed"
    installed = await asyncio.to_thread(
        _run, sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
        "--disable-pip-version-check", "--target", str(target), str(wheel),
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr

    site_packages = sysconfig.get_paths()["purelib"]
    probe = await asyncio.to_thread(
        _run, sys.executable, "-I", "-S", "-c", _PROBE, str(target), site_packages, empty_dsn,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout)
    assert Path(result["file"]).is_relative_to(target), result
    assert Path(result["folder"]) == target / "triggerd" / "migrations"
    assert result["known"] == expected
    assert result["applied"] == expected

    conn = await asyncpg.connect(empty_dsn)
    try:
        recorded = [r["name"] for r in await conn.fetch(
            "SELECT name FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()
    assert recorded == expected
