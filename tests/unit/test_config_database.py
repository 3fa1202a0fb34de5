"""[database] direct_url and pgbouncer: a pooled URL for queries, a direct one for LISTEN
and migrations, and the pool option PgBouncer's transaction mode needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerd import db
from triggerd.config import load_settings
from triggerd.errors import ConfigError

POOLED = "postgresql://triggerd@pgbouncer:6432/triggerd"
DIRECT = "postgresql://triggerd@db:5432/triggerd"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "triggerd.toml"
    path.write_text(text)
    return path


def test_defaults_direct_is_the_url_and_no_pgbouncer() -> None:
    settings = load_settings(environ={"TRIGGERD_DATABASE_URL": DIRECT})
    assert settings.database.direct_url == ""
    assert settings.database.pgbouncer == "auto"
    assert db.direct_dsn(settings, DIRECT) == DIRECT
    assert settings.database.behind_pgbouncer is False


def test_direct_url_is_used_for_listen_and_migrations(tmp_path: Path) -> None:
    path = write(tmp_path, f'[database]\nurl = "{POOLED}"\ndirect_url = "{DIRECT}"\n')
    settings = load_settings(path, environ={})
    assert settings.database.direct_url == DIRECT
    assert db.direct_dsn(settings, POOLED) == DIRECT
    # auto: a separate direct URL means the pooled one goes through a pooler.
    assert settings.database.behind_pgbouncer is True


def test_embedded_server_is_its_own_direct_dsn() -> None:
    settings = load_settings(environ={})
    embedded = "postgresql://postgres@/triggerd?host=/state/postgres"
    assert db.direct_dsn(settings, embedded) == embedded


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("false", False), ('"auto"', False), ('"true"', True)],
)
def test_pgbouncer_in_the_file(tmp_path: Path, value: str, expected: bool) -> None:
    path = write(tmp_path, f'[database]\nurl = "{POOLED}"\npgbouncer = {value}\n')
    assert load_settings(path, environ={}).database.behind_pgbouncer is expected


def test_pgbouncer_false_wins_over_a_direct_url(tmp_path: Path) -> None:
    path = write(tmp_path, f'[database]\nurl = "{POOLED}"\ndirect_url = "{DIRECT}"\n'
                           "pgbouncer = false\n")
    assert load_settings(path, environ={}).database.behind_pgbouncer is False


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("on", True), ("no", False),
                                               ("AUTO", False), ("true", True)])
def test_pgbouncer_from_the_environment(raw: str, expected: bool) -> None:
    settings = load_settings(environ={"TRIGGERD_DATABASE_URL": POOLED,
                                      "TRIGGERD_DATABASE_PGBOUNCER": raw})
    assert settings.database.behind_pgbouncer is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[database]\nurl = "postgresql://a/b"\ndirect_url = "mysql://x"\n',
         "database.direct_url: must start with postgresql:// or postgres://"),
        ('[database]\ndirect_url = "postgresql://db/triggerd"\n',
         "database.direct_url: needs database.url (the embedded server is always direct)"),
        ('[database]\npgbouncer = "maybe"\n',
         "database.pgbouncer: 'maybe' is not one of auto, true, false"),
        ("[database]\npgbouncer = 1\n",
         "database.pgbouncer: expected true, false or \"auto\", got int 1"),
        # Unreadable URLs were reported as "Connection refused" (exit 5), the password
        # part included in what was shown: never quoted here.
        ('[database]\nurl = "postgresql://u:s3cret@127.0.0.1:99999/x"\n',
         "database.url: not a valid URL (Port out of range 0-65535)"),
        ('[database]\nurl = "postgresql://u:s3cret@db:port/x"\n',
         "database.url: not a valid URL (Port could not be cast to integer value)"),
        ('[database]\nurl = "postgresql://a/b"\ndirect_url = "postgresql://u:s3cret@[::1/x"\n',
         "database.direct_url: not a valid URL (Invalid IPv6 URL)"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == f"{path}: {message}"


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TRIGGERD_DATABASE_PGBOUNCER": "sometimes"})
    assert str(info.value) == (
        "TRIGGERD_DATABASE_PGBOUNCER: database.pgbouncer: 'sometimes' is not one of"
        " auto, true, false"
    )


def test_direct_url_never_shows_its_password() -> None:
    settings = load_settings(environ={
        "TRIGGERD_DATABASE_URL": POOLED,
        "TRIGGERD_DATABASE_DIRECT_URL": "postgresql://triggerd:s3cret@db:5432/triggerd",
    })
    assert "s3cret" not in db.redact_dsn(db.direct_dsn(settings, POOLED))


def test_a_password_given_as_a_query_parameter_is_masked_too() -> None:
    assert db.redact_dsn(
        "postgresql://u:pw@db:5432/t?password=QueryPw&sslmode=require&Password=x"
        "&sslpassword=k&pass%77ord=y") == (
        "postgresql://u:***@db:5432/t?password=***&sslmode=require&Password=***"
        "&sslpassword=***&pass%77ord=***")
    assert db.redact_dsn("postgresql://u@db/t?host=/run/pg") == "postgresql://u@db/t?host=/run/pg"
    # Without a host (a Unix socket given as a parameter) the "///" stays: it lost a slash.
    assert db.redact_dsn("postgresql:///triggerd?host=/run/pg&password=SECRETQ") == (
        "postgresql:///triggerd?host=/run/pg&password=***")
