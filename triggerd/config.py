"""Settings from a TOML file plus ``TRIGGERD_<SECTION>_<KEY>`` environment overrides.

The result is a frozen :class:`Settings`; every problem is a :class:`ConfigError` naming the
key (and the file line when TOML reports one).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from triggerd.durations import MAX_DURATION, format_duration, parse_duration
from triggerd.errors import ConfigError, DurationError
from triggerd.model import MAX_WORKFLOW_DEPTH_LIMIT
from triggerd.tokens import TENANT_RULE, is_tenant_name

CONFIG_ENV = "TRIGGERD_CONFIG"


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    url: str = ""
    pool_min: int = 2
    pool_max: int = 10
    # Whether `triggerd run` applies missing migrations at start (false: it refuses an
    # older schema, like every command but `triggerd migrate`).
    migrate: bool = True
    # LISTEN and migrations need a session of their own: behind PgBouncer in transaction
    # mode they go to this URL (empty: the same as url).
    direct_url: str = ""
    pgbouncer: str = "auto"  # auto | true | false (auto: true when direct_url differs)

    @property
    def behind_pgbouncer(self) -> bool:
        """Whether the pool's connections are a pooler's: no session state survives a
        transaction, so no prepared statement may be kept across them."""
        if self.pgbouncer == "auto":
            return bool(self.direct_url) and self.direct_url != self.url
        return self.pgbouncer == "true"


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 10 * 1024 * 1024
    max_pending: int = 100_000
    processes: int = 1
    # Proxies (CIDR) whose X-Forwarded-For names the client, for webhook allow_from, and
    # whose X-Forwarded-Proto: https makes the console's cookies Secure.
    trusted_proxies: tuple[str, ...] = ()
    # How the outside reaches this daemon (https://triggerd.example.com): resume URLs of
    # approvals are built on it. Empty: http://<host>:<port>.
    public_url: str = ""

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host if ':' not in host else f'[{host}]'}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class ExecutorSettings:
    concurrency: int = 128
    lease: timedelta = timedelta(seconds=30)
    poll_interval: timedelta = timedelta(seconds=5)
    max_output_bytes: int = 1024 * 1024
    retention: timedelta = timedelta(days=30)
    # The audit trail is kept longer than the runs it names: a year by default.
    audit_retention: timedelta = timedelta(days=365)
    # Test runs (triggerd test) and their scratch workflows: a week by default.
    test_retention: timedelta = timedelta(days=7)
    # How deep workflow nodes may nest runs (a child of a child ...).
    max_workflow_depth: int = 8
    drain: timedelta = timedelta(seconds=20)
    max_resume_output_bytes: int = 16 * 1024 * 1024
    resume_key_file: str = ""


@dataclass(frozen=True, kw_only=True)
class SchedulerSettings:
    reconcile_interval: timedelta = timedelta(seconds=60)
    lag_threshold: timedelta = timedelta(seconds=60)
    ledger_retention: timedelta = timedelta(days=30)


@dataclass(frozen=True, kw_only=True)
class DaemonSettings:
    state_dir: str = ""
    definitions: tuple[str, ...] = ()
    # Directories `{file: PATH}` secrets may be read from, besides $CREDENTIALS_DIRECTORY.
    secret_roots: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EgressSettings:
    """What ``http`` nodes may connect to (see triggerd/egress.py)."""

    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    allow_self: bool = False


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    token: str = ""


@dataclass(frozen=True, kw_only=True)
class MetricsSettings:
    label_limit: int = 2000


@dataclass(frozen=True, kw_only=True)
class LogSettings:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True, kw_only=True)
class TenantSettings:
    """Limits of one tenant (``[tenants.NAME]``); a tenant without a table has none but
    the daemon's own (``[http] max_pending``) and a share of 1."""

    name: str
    # NEW runs of the tenant above which its webhooks answer 429 (0: no limit of its own).
    max_pending: int = 0
    # Webhook requests per second the tenant's hooks accept per process (0: no limit).
    webhook_rate: float = 0.0
    webhook_burst: int = 0  # 0: one second's worth of webhook_rate
    # Its weight when several tenants have runs waiting: each claim is split by shares.
    executor_share: int = 1
    # Finished runs of the tenant older than this are deleted (None: [executor] retention).
    retention: timedelta | None = None
    # The secrets its workflows and webhook triggers may reference, as patterns of
    # ``env:NAME``, ``file:/PATH`` and ``credential:NAME`` (``*`` matches anything). None:
    # the key is not set, which allows every secret in the default tenant and none in any
    # other (a tenant's token must not read another tenant's secrets through a workflow).
    secrets: tuple[str, ...] | None = None


_TENANT_KEYS: dict[str, str] = {
    "max_pending": "NEW executions of this tenant above which its webhooks answer 429",
    "webhook_rate": "webhook requests per second this tenant's hooks accept per process",
    "webhook_burst": "requests above the rate accepted at once (default: one second's)",
    "executor_share": "its weight when several tenants have runs waiting (1-1000)",
    "retention": "finished executions of this tenant older than this are deleted",
    "secrets": "secrets its workflows may reference: patterns like 'env:ACME_*',"
               " 'file:/etc/triggerd/acme/*', 'credential:acme-*' (default: all in the"
               " default tenant, none in others)",
}
SECRET_PATTERN_KINDS = ("env:", "file:", "credential:")


def _tenant_settings(where: str, name: str, table: Any) -> TenantSettings:
    """One ``[tenants.NAME]`` table, checked key by key."""
    label = f"tenants.{name}"
    if not is_tenant_name(name):
        raise ConfigError(f"{where}[{label[:80]}]: the tenant name must be {TENANT_RULE}")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}{label}: expected a table [{label}]")
    values: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{label}.{key}"
        if key not in _TENANT_KEYS:
            raise ConfigError(f"{where}unknown key {dotted} (known in [{label}]:"
                              f" {', '.join(sorted(_TENANT_KEYS))})")
        if key == "retention":
            try:
                values[key] = parse_duration(value, what=dotted)
            except DurationError as exc:
                raise ConfigError(f"{where}{exc}") from None
            least = _DURATION_BOUNDS["executor.retention"][0]
            if values[key] < least:  # as [executor] retention: 1s deleted runs at once
                raise ConfigError(f"{where}{dotted}: must be at least {format_duration(least)}")
            continue
        if key == "secrets":
            values[key] = _secret_patterns(f"{where}{dotted}", value)
            continue
        if key == "webhook_rate":
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    0 <= value <= 1_000_000):
                raise ConfigError(f"{where}{dotted}: expected a number of requests per"
                                  f" second (0-1000000), got {value!r}")
            values[key] = float(value)
            continue
        limits = {"max_pending": (0, 1_000_000_000), "webhook_burst": (0, 1_000_000),
                  "executor_share": (1, 1000)}
        low, high = limits[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{where}{dotted}: expected an integer {low}-{high}, got {value!r}")
        values[key] = value
    return TenantSettings(name=name, **values)


def _secret_patterns(label: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{label}: expected a list of patterns such as 'env:ACME_*',"
                          f" got {value!r:.80}")
    for pattern in value:
        kind = next((k for k in SECRET_PATTERN_KINDS if pattern.startswith(k)), None)
        if kind is None or pattern == kind:
            raise ConfigError(f"{label}: {pattern!r:.80} must start with env:, file: or"
                              " credential: and name something after it")
        if kind == "file:" and not pattern[len(kind):].startswith("/"):
            raise ConfigError(f"{label}: {pattern!r:.80} must name an absolute path")
    return tuple(value)


def is_setting_env(name: str) -> bool:
    """Whether the daemon reads environment variable ``name`` as its own configuration
    (``TRIGGERD_CONFIG``, ``TRIGGERD_<SECTION>_<KEY>``, a serving process's own)."""
    if name == CONFIG_ENV or name.startswith("TRIGGERD_WORKER_"):
        return True
    if not name.startswith("TRIGGERD_"):
        return False
    section = name[len("TRIGGERD_"):].lower().partition("_")[0]
    return section in _SECTIONS


@dataclass(frozen=True, kw_only=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    egress: EgressSettings = field(default_factory=EgressSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    tenants: tuple[TenantSettings, ...] = ()  # [tenants.NAME] tables, by name
    source: str | None = None  # the file the settings came from, if any
    # The file sets nothing (empty, or comments only): what a reload refuses when the file
    # it replaces set something (see Daemon.reload).
    source_blank: bool = False

    def tenant(self, name: str) -> TenantSettings:
        """The limits of tenant ``name`` (the defaults when it has no table)."""
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        return TenantSettings(name=name)

    @property
    def state_dir(self) -> Path:
        return Path(self.daemon.state_dir).expanduser().resolve()


_SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseSettings,
    "http": HttpSettings,
    "executor": ExecutorSettings,
    "scheduler": SchedulerSettings,
    "daemon": DaemonSettings,
    "api": ApiSettings,
    "egress": EgressSettings,
    "metrics": MetricsSettings,
    "log": LogSettings,
}

# Human descriptions, used by `triggerd --help` and checked against the README by a test.
KEY_HELP: dict[str, str] = {
    "database.url": "PostgreSQL URL; empty starts the embedded server under state_dir",
    "database.pool_min": "minimum pool connections (1-1000, at most pool_max)",
    "database.pool_max": "maximum pool connections (1-1000)",
    "database.migrate": "the daemon applies missing migrations at start (true or false)",
    "database.direct_url": "URL for LISTEN and migrations when url is PgBouncer (empty: url)",
    "database.pgbouncer": "auto | true | false: url is PgBouncer in transaction mode",
    "http.host": "address to listen on",
    "http.port": "TCP port to listen on (1-65535)",
    "http.max_body_bytes": "largest webhook body accepted (at most 1 GiB)",
    "http.max_pending": "NEW executions above which webhooks answer 429",
    "http.processes": (
        "processes sharing the port (1-64, default 1); the extra ones answer webhooks"
    ),
    "http.public_url": "base URL the outside reaches this daemon at (approvals' resume URLs)",
    "http.trusted_proxies": (
        "proxies (CIDR) whose X-Forwarded-For names the client (webhook allow_from) and"
        " whose X-Forwarded-Proto: https makes the console's cookies Secure"
    ),
    "executor.concurrency": "runs in progress per process (1-10000)",
    "executor.lease": "lease of a claimed run, renewed by a heartbeat",
    "executor.poll_interval": "fallback poll for work when no notification arrives",
    "executor.max_output_bytes": "largest stored node/run output before truncation",
    "executor.retention": "finished executions older than this are deleted",
    "executor.audit_retention": "audit rows older than this are deleted",
    "executor.test_retention": "test runs (triggerd test) older than this are deleted",
    "executor.max_workflow_depth":
        f"how deep workflow nodes may nest runs (1-{MAX_WORKFLOW_DEPTH_LIMIT})",
    "executor.drain": "on SIGTERM, time running executions get to finish",
    "executor.max_resume_output_bytes": "largest node output at all; a larger one fails the node",
    "executor.resume_key_file": "key of the encrypted resume copies (shared by replicas)",
    "scheduler.reconcile_interval": "reconcile of triggers against the database (a full"
                                    " reload only when their digest changed)",
    "scheduler.lag_threshold": "a due slot this late without an outcome makes /readyz fail",
    "scheduler.ledger_retention": "slot ledger rows older than this are deleted",
    "daemon.state_dir": "state directory ($STATE_DIRECTORY, else ./.triggerd)",
    "daemon.definitions": "definition files (or directories of them) applied at start and"
                          " on reload",
    "daemon.secret_roots": "directories {file: PATH} secrets may be read from (and credentials)",
    "egress.deny": "networks (CIDR) http nodes may not reach, besides link-local and metadata",
    "egress.allow": "networks (CIDR) http nodes may reach even when denied",
    "egress.allow_self": "let http nodes call this daemon's own port (admin API, webhooks)",
    "api.token": "admin API bearer token (or credential 'api-token')",
    "metrics.label_limit": "triggers (and workflows) with series of their own; more: _overflow",
    "log.level": "debug | info | warning | error",
    "log.format": "json | text",
}

MAX_HTTP_PROCESSES = 64
_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMATS = ("json", "text")
_PGBOUNCER_WORDS = {"auto": "auto", "true": "true", "1": "true", "yes": "true", "on": "true",
                    "false": "false", "0": "false", "no": "false", "off": "false"}
_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


def _coerce(key: str, value: Any, default: Any, *, from_env: bool) -> Any:
    """Turn a TOML or environment value into the type of the field's default."""
    if key.endswith("database.pgbouncer"):  # from the file, or "TRIGGERD_...: database.pgbouncer"
        return _pgbouncer_mode(key, value)
    if isinstance(default, bool):
        if from_env and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if isinstance(default, int):
        if from_env and isinstance(value, str):
            # Decimal digits only, as TOML writes them (int() takes "1_0_0_0", other digits).
            if not _DECIMAL.fullmatch(value.strip()):
                raise ConfigError(f"{key}: expected an integer, got {value!r}")
            return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
    if isinstance(default, timedelta):
        try:
            return parse_duration(value, what=key)
        except DurationError as exc:
            raise ConfigError(str(exc)) from None
    if isinstance(default, tuple):
        if from_env and isinstance(value, str):
            return tuple(part for part in (p.strip() for p in value.split(",")) if part)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
    if isinstance(value, str):
        return value
    raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")


def _pgbouncer_mode(key: str, value: Any) -> str:
    """``[database] pgbouncer``: a TOML boolean, or auto/true/false (any case, and the
    environment's 1/0/yes/no/on/off); kept as one of auto, true, false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        raise ConfigError(
            f'{key}: expected true, false or "auto", got {type(value).__name__} {value!r}'
        )
    # An unknown word is kept as is: the range check names it with its source.
    return _PGBOUNCER_WORDS.get(value.strip().lower(), value)


_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
# Bounds of the duration settings. A poll or reconcile interval of 0 kept an idle daemon
# busy; a retention of 0 deleted every finished run (or the whole audit trail) within
# seconds; a lease of years put the claim's interval out of PostgreSQL's range.
_DURATION_BOUNDS: dict[str, tuple[timedelta, timedelta]] = {
    "executor.lease": (2 * _SECOND, _DAY),
    "executor.poll_interval": (timedelta(milliseconds=50), timedelta(hours=1)),
    "executor.drain": (timedelta(0), _DAY),
    "executor.retention": (timedelta(hours=1), MAX_DURATION),
    "executor.audit_retention": (timedelta(hours=1), MAX_DURATION),
    "executor.test_retention": (timedelta(hours=1), MAX_DURATION),
    "scheduler.reconcile_interval": (_SECOND, _DAY),
    "scheduler.lag_threshold": (_SECOND, _DAY),
    "scheduler.ledger_retention": (timedelta(hours=1), MAX_DURATION),
}


# Bounds of the count and size settings. Past the highs a value was taken and failed
# later, far from its key: a pool past the server's max_connections ("too many clients"
# on a busy day), a body or output PostgreSQL cannot store, 100,000,000 run slots.
_MAX_POOL = 1000  # connections of one process; PostgreSQL's default max_connections is 100
_MAX_FIELD_BYTES = 1024 * 1024 * 1024  # PostgreSQL's largest field (a stored raw body)
_MAX_JSONB_BYTES = 268_435_455  # PostgreSQL's largest jsonb value (an output)
_COUNT_BOUNDS: dict[str, tuple[int, int]] = {
    "database.pool_min": (1, _MAX_POOL),
    "database.pool_max": (1, _MAX_POOL),
    "http.max_body_bytes": (1, _MAX_FIELD_BYTES),
    "http.max_pending": (1, 1_000_000_000),  # as a tenant's max_pending
    "http.processes": (1, MAX_HTTP_PROCESSES),
    "executor.concurrency": (1, 10_000),
    "executor.max_output_bytes": (64, _MAX_JSONB_BYTES),
    "executor.max_resume_output_bytes": (64, _MAX_JSONB_BYTES),
    "metrics.label_limit": (1, 100_000),  # series per trigger: more is no dashboard
    "executor.max_workflow_depth": (1, MAX_WORKFLOW_DEPTH_LIMIT),
}


def _duration_ranges(
    settings: Settings,
) -> list[tuple[str, timedelta, tuple[timedelta, timedelta]]]:
    found = []
    for key, bounds in _DURATION_BOUNDS.items():
        section, name = key.split(".")
        found.append((key, getattr(getattr(settings, section), name), bounds))
    return found


def _range_problem(settings: Settings) -> tuple[tuple[str, ...], str] | None:
    """The first value out of range: the keys to blame and the message (without a source)."""
    port = settings.http.port
    if not 1 <= port <= 65535:
        return ("http.port",), f"http.port: {port} is not a valid port (1-65535)"
    for key, (minimum, maximum) in _COUNT_BOUNDS.items():
        section, name = key.split(".")
        value = getattr(getattr(settings, section), name)
        if value < minimum:
            return (key,), f"{key}: {value} is below the minimum {minimum}"
        if value > maximum:
            return (key,), f"{key}: {value} is above the maximum {maximum}"
    if settings.database.pool_min > settings.database.pool_max:
        return ("database.pool_min", "database.pool_max"), (
            f"database.pool_min: {settings.database.pool_min} exceeds database.pool_max"
            f" {settings.database.pool_max}"
        )
    for key, duration, (least, most) in _duration_ranges(settings):
        if duration < least:
            return (key,), f"{key}: must be at least {format_duration(least)}"
        if duration > most:
            return (key,), f"{key}: must be at most {format_duration(most)}"
    if settings.log.level not in _LOG_LEVELS:
        return ("log.level",), (
            f"log.level: {settings.log.level!r} is not one of {', '.join(_LOG_LEVELS)}"
        )
    if settings.log.format not in _LOG_FORMATS:
        return ("log.format",), (
            f"log.format: {settings.log.format!r} is not one of {', '.join(_LOG_FORMATS)}"
        )
    for key, networks in (("egress.deny", settings.egress.deny),
                          ("egress.allow", settings.egress.allow),
                          ("http.trusted_proxies", settings.http.trusted_proxies)):
        for network in networks:
            try:
                ipaddress.ip_network(network.strip(), strict=False)
            except ValueError:
                return (key,), (
                    f"{key}: {network!r} is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)"
                )
    public = settings.http.public_url
    if public and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", public):
        return ("http.public_url",), (
            f"http.public_url: {public!r} is not an http(s) URL (e.g."
            " https://triggerd.example.com)")
    if "" in settings.daemon.definitions:
        # Kept as "", it read the working directory as a folder of definitions: every
        # YAML file there was applied at start and on each reload.
        return ("daemon.definitions",), (
            'daemon.definitions: an empty entry names no file (for the configuration'
            ' file\'s own directory write ".")')
    token = settings.api.token
    if token and (token != token.strip() or any(ord(c) < 32 or ord(c) == 127 for c in token)):
        # No Authorization header carries these (HTTP strips the ends): every request
        # was refused as "invalid bearer token". The credential file is stripped instead.
        return ("api.token",), (
            "api.token: has leading or trailing whitespace or a control character (a"
            " trailing newline?), which no Authorization header can carry; remove it")
    for root in settings.daemon.secret_roots:
        # Absolute only, from the file too: which files secrets may come from is not left
        # to where a relative path happens to point.
        if not os.path.isabs(root):
            return ("daemon.secret_roots",), (
                f"daemon.secret_roots: {root!r} is not an absolute path"
            )
    db_url = settings.database.url
    if db_url and not db_url.startswith(("postgres://", "postgresql://")):
        return ("database.url",), "database.url: must start with postgresql:// or postgres://"
    direct = settings.database.direct_url
    if direct and not direct.startswith(("postgres://", "postgresql://")):
        return ("database.direct_url",), (
            "database.direct_url: must start with postgresql:// or postgres://"
        )
    for key, url in (("database.url", db_url), ("database.direct_url", direct)):
        problem = _url_problem(url) if url else None
        if problem is not None:
            return (key,), f"{key}: not a valid URL ({problem})"
    if direct and not db_url:
        return ("database.direct_url",), (
            "database.direct_url: needs database.url (the embedded server is always direct)"
        )
    if settings.database.pgbouncer not in ("auto", "true", "false"):
        return ("database.pgbouncer",), (
            f"database.pgbouncer: {settings.database.pgbouncer!r} is not one of"
            " auto, true, false"
        )
    return None


def _url_problem(url: str) -> str | None:
    """Why a PostgreSQL URL cannot be read (an unclosed "[", a port past 65535 or not a
    number; "Connection refused" said otherwise), never quoting it (it may hold a
    password); None when it can. Several hosts (h1:5432,h2:5432) are left to asyncpg."""
    try:
        parts = urllib.parse.urlsplit(url)
        if "," not in parts.netloc:
            _ = parts.port
    except ValueError as exc:
        return str(exc).split(" as ", 1)[0]  # "... integer value as 'x'" quotes the URL part
    return None


# Keys whose values are filesystem paths: relative ones in a file follow the file.
_PATH_KEYS = ("daemon.state_dir", "daemon.definitions", "executor.resume_key_file")


def _relative_to(base: Path, value: str) -> str:
    """``value`` resolved against ``base`` when it is a relative path; empty stays empty
    (it means "the default")."""
    if not value:
        return value
    path = Path(value).expanduser()
    # Lexical, like the shell's "cd ..", so messages show a short path.
    return str(path) if path.is_absolute() else os.path.normpath(base / path)


_DECIMAL = re.compile(r"[+-]?[0-9]+")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not a TOML statement.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        where = f":{match.group(1)}" if match else ""
        reason = _TOML_LINE.sub("", str(exc)).strip()
        raise ConfigError(f"{path}{where}: invalid TOML: {reason}") from None


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from ``path`` (or ``$TRIGGERD_CONFIG``) and the environment."""
    env = dict(os.environ if environ is None else environ)
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    document: dict[str, Any] = {}
    source: str | None = None
    base = Path.cwd()
    if path is not None:
        source = str(path)
        document = _read_toml(Path(path))
        base = Path(os.path.abspath(path)).parent
    where = f"{source}: " if source else ""
    # Where each explicitly set key came from (the file as named, or the variable), so a
    # range error blames the real source.
    origin: dict[str, str] = {}

    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    tenants: list[TenantSettings] = []
    for section_name, section in document.items():
        if section_name == "tenants":
            if not isinstance(section, dict):
                raise ConfigError(f"{where}tenants: expected tables [tenants.NAME]")
            tenants = [_tenant_settings(where, name, table)
                       for name, table in sorted(section.items())]
            continue
        if section_name not in _SECTIONS and not isinstance(section, dict):
            raise ConfigError(f"{where}{_outside_any_section(section_name)}")
        if section_name not in _SECTIONS:
            raise ConfigError(
                f"{where}unknown section [{section_name}] (known:"
                f" {', '.join(sorted([*_SECTIONS, 'tenants']))})"
            )
        if not isinstance(section, dict):
            raise ConfigError(f"{where}{section_name}: expected a table [{section_name}]")
        known = {f.name: f for f in fields(_SECTIONS[section_name])}
        for key, value in section.items():
            dotted = f"{section_name}.{key}"
            if key not in known:
                raise ConfigError(
                    f"{where}unknown key {dotted} (known in [{section_name}]:"
                    f" {', '.join(sorted(known))})"
                )
            default = _SECTIONS[section_name]().__getattribute__(key)
            try:
                coerced = _coerce(dotted, value, default, from_env=False)
            except ConfigError as exc:
                raise ConfigError(f"{where}{exc}") from None
            if dotted in _PATH_KEYS:
                # Not the working directory: the same file must mean the same paths
                # wherever the command runs.
                if isinstance(coerced, tuple):
                    coerced = tuple(_relative_to(base, v) for v in coerced)
                else:
                    coerced = _relative_to(base, coerced)
            values[section_name][key] = coerced
            if source is not None:
                origin[dotted] = source

    prefix = "TRIGGERD_"
    for name, raw in env.items():
        if not name.startswith(prefix) or name == CONFIG_ENV:
            continue
        rest = name[len(prefix) :].lower()
        section_name, _, key = rest.partition("_")
        if section_name not in _SECTIONS:
            meant = _misspelt_setting(rest)
            if meant is not None:
                # Ignored, a typo in TRIGGERD_DATABASE_URL ran on the embedded database.
                raise ConfigError(f"{name}: no such setting (did you mean {meant}?)")
            continue  # other TRIGGERD_* variables (tests, examples) are not settings
        known_keys = {f.name for f in fields(_SECTIONS[section_name])}
        if key not in known_keys:
            raise ConfigError(
                f"{name}: unknown setting {section_name}.{key}"
                f" (known in [{section_name}]: {', '.join(sorted(known_keys))})"
            )
        default = _SECTIONS[section_name]().__getattribute__(key)
        # Named as the range checks name it: "TRIGGERD_HTTP_PORT: http.port: ...".
        values[section_name][key] = _coerce(f"{name}: {section_name}.{key}", raw, default,
                                            from_env=True)
        origin[f"{section_name}.{key}"] = name

    if not values["daemon"].get("state_dir"):
        values["daemon"]["state_dir"] = env.get("STATE_DIRECTORY", "").split(":")[0] or ".triggerd"
    settings = Settings(
        **{name: cls(**values[name]) for name, cls in _SECTIONS.items()},
        tenants=tuple(tenants),
        source=source,
        source_blank=source is not None and not document,
    )
    problem = _range_problem(settings)
    if problem is not None:
        keys, message = problem
        blamed = list(dict.fromkeys(origin[k] for k in keys if k in origin))
        raise ConfigError(f"{', '.join(blamed)}: {message}" if blamed else message)
    return settings


def _outside_any_section(key: str) -> str:
    """What to say of a key written above every [section] (a value, not a table)."""
    # The section that has a setting of that name, when one does (no two share a name).
    owner = next((name for name, section in _SECTIONS.items()
                  if key in {f.name for f in fields(section)}), "http")
    return f"unknown setting {key}: every setting belongs in a section such as [{owner}]"


def _misspelt_setting(rest: str) -> str | None:
    """The setting variable ``TRIGGERD_<rest>`` was probably meant to be: a section a
    letter or two off, or its underscore left out, with a key that section has. Other
    ``TRIGGERD_*`` names (a workflow's own secrets) are left alone."""
    section, _, key = rest.partition("_")
    candidates = [(s, key) for s in difflib.get_close_matches(section, list(_SECTIONS),
                                                               n=3, cutoff=0.8)]
    candidates += [(s, rest[len(s):].lstrip("_")) for s in _SECTIONS
                   if rest.startswith(s) and rest != s]
    for meant, meant_key in candidates:
        if meant_key in {f.name for f in fields(_SECTIONS[meant])}:
            return env_var_for(f"{meant}.{meant_key}")
    return None


def env_var_for(dotted: str) -> str:
    section, key = dotted.split(".", 1)
    return f"TRIGGERD_{section.upper()}_{key.upper()}"


def describe_keys(wrap: Callable[[str], str] = str) -> str:
    """Every key with its environment variable, for ``--help``."""
    lines = [f"  {k:<30} {env_var_for(k):<34} {wrap(v)}" for k, v in KEY_HELP.items()]
    return "\n".join(lines)
