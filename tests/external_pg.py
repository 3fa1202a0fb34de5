"""An external PostgreSQL server and a PgBouncer in front of it, started by a test or a
bench script itself (not the embedded server the daemon starts on its own).

* :func:`postgres_server` runs Debian's PostgreSQL binaries (``initdb``, ``postgres``) on a
  loopback TCP port with a data directory in a temporary directory. PostgreSQL refuses to
  run as root, so as root it runs as an unprivileged user (``postgres`` when it exists,
  else ``nobody``).
* :func:`pgbouncer` runs PgBouncer (installed from Debian's packages when missing, see
  :func:`pgbouncer_binary`) in front of a server, ``pool_mode = transaction`` by default.

Both are context managers that stop what they started. :func:`missing_reason` says why
the pieces cannot be had on this machine, so a test can skip with a clear reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port

SUPERUSER = "postgres"  # the cluster's superuser role (trust auth on loopback)


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where a PostgreSQL-speaking server (the server itself or PgBouncer) listens."""

    host: str
    port: int
    user: str = SUPERUSER
    socket_dir: Path | None = None  # the server's Unix socket directory (not PgBouncer's)
    log: Path | None = None  # the server's log file

    def dsn(self, database: str) -> str:
        """Over TCP (the server sees the client at 127.0.0.1)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def socket_dsn(self, database: str) -> str:
        """Over the Unix socket (the server's log shows the client as ``[local]``)."""
        assert self.socket_dir is not None, "PgBouncer here listens on TCP only"
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL server binaries (``/usr/lib/postgresql/N/bin``)."""
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _run_as() -> str | None:
    """The user to run the servers as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


def _give(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _spawn(argv: list[str], user: str | None, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        if user is None:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        entry = pwd.getpwnam(user)
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, user=entry.pw_uid,
            group=entry.pw_gid, extra_groups=[], cwd="/",
        )


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str,
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} does not listen on port {port}: {_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
    return ""


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def missing_reason() -> str | None:
    """Why an external server behind PgBouncer cannot run here, or None when it can."""
    if postgres_bindir() is None:
        return "PostgreSQL server binaries (Debian's postgresql package) are not installed"
    if pgbouncer_binary() is None:
        return "pgbouncer is not installed and apt-get could not install it"
    return None


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable, installed with apt-get when missing (root only); None when
    it cannot be had (no apt, offline, not root)."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A fresh machine may have no package lists yet; offline, both steps just fail.
    for step in (["apt-get", "install", "-y", "-q", "pgbouncer"],
                 ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "pgbouncer"]):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            done = subprocess.run(step, env=env, capture_output=True, timeout=300, check=False)
            if step[1] == "install" and done.returncode == 0:
                break
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )


@contextlib.contextmanager
def postgres_server(
    settings: Mapping[str, str] | None = None, *, port: int | None = None
) -> Iterator[Endpoint]:
    """A fresh PostgreSQL cluster on 127.0.0.1 (trust auth), stopped afterwards.
    ``settings`` are extra ``-c name=value`` server settings."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries are not installed")
    user = _run_as()
    # Outside pytest's 0700 base temp, which the server's user could not traverse.
    base = Path(tempfile.mkdtemp(prefix="triggerd-extpg-"))
    base.chmod(0o755)
    data, sockets, log = base / "data", base / "sock", base / "server.log"
    for folder in (data, sockets):
        folder.mkdir()
        _give(folder, user)
    log.touch()
    _give(log, user)
    init = _spawn([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                   "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
                  user, log)
    if init.wait(timeout=120) != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {_tail(log)}")
    port = port or free_port()
    options = {"listen_addresses": "127.0.0.1", "port": str(port),
               "unix_socket_directories": str(sockets), "max_connections": "200",
               # Who sent what: %h is 127.0.0.1 over TCP (PgBouncer), [local] on the socket.
               "log_line_prefix": "%m [%p] %h %d ",
               **(settings or {})}
    argv = [str(bindir / "postgres"), "-D", str(data)]
    for name, value in options.items():
        argv += ["-c", f"{name}={value}"]
    proc = _spawn(argv, user, log)
    try:
        _wait_port(port, proc, log, "postgres")
        _wait_accepting(bindir, port, proc, log)
        yield Endpoint(host="127.0.0.1", port=port, socket_dir=sockets, log=log)
    finally:
        _stop(proc, signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(base, ignore_errors=True)


def _wait_accepting(bindir: Path, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """The port opens before recovery ends; wait until the server takes connections."""
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port),
                               "-U", SUPERUSER, "-d", "postgres"],
                              capture_output=True, check=False)
        if done.returncode == 0:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"postgres is not accepting connections: {_tail(log)}")
        time.sleep(0.05)


@contextlib.contextmanager
def pgbouncer(
    server: Endpoint, *, pool_mode: str = "transaction", pool_size: int = 20,
    port: int | None = None,
) -> Iterator[Endpoint]:
    """PgBouncer on 127.0.0.1 in front of ``server`` (every database name is passed
    through), stopped afterwards."""
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed")
    user = _run_as()
    base = Path(tempfile.mkdtemp(prefix="triggerd-pgbouncer-"))
    base.chmod(0o755)
    port = port or free_port()
    users, config, log = base / "users.txt", base / "pgbouncer.ini", base / "pgbouncer.log"
    users.write_text(f'"{server.user}" ""\n')
    config.write_text(
        "[databases]\n"
        f"* = host={server.host} port={server.port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {users}\n"
        f"pool_mode = {pool_mode}\n"
        f"default_pool_size = {pool_size}\n"
        "max_client_conn = 1000\n"
        "server_reset_query =\n"
    )
    log.touch()
    for path in (users, config, log):
        _give(path, user)
    proc = _spawn([binary, str(config)], user, log)
    try:
        _wait_port(port, proc, log, "pgbouncer")
        yield Endpoint(host="127.0.0.1", port=port, user=server.user)
    finally:
        _stop(proc, signal.SIGINT)  # SIGINT: PgBouncer's immediate shutdown
        shutil.rmtree(base, ignore_errors=True)
