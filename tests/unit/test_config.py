"""Configuration: file, environment overrides and every kind of mistake."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import pytest

from triggerd.config import KEY_HELP, Settings, env_var_for, load_settings
from triggerd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "triggerd.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    settings = load_settings(environ={})
    assert settings.http.port == 8080
    assert settings.http.host == "127.0.0.1"
    assert settings.database.url == ""
    assert settings.executor.lease == timedelta(seconds=30)
    assert settings.daemon.state_dir == ".triggerd"
    assert settings.log.format == "json"


def test_state_dir_defaults_to_systemd_state_directory() -> None:
    settings = load_settings(environ={"STATE_DIRECTORY": "/var/lib/triggerd"})
    assert settings.daemon.state_dir == "/var/lib/triggerd"


def test_example_file_loads_and_lists_every_key() -> None:
    example = ROOT / "config" / "triggerd.toml"
    settings = load_settings(example, environ={})
    assert isinstance(settings, Settings)
    text = example.read_text()
    for dotted in KEY_HELP:
        section, key = dotted.split(".")
        assert f"[{section}]" in text
        assert f"\n{key} = " in text, f"{dotted} missing from config/triggerd.toml"


def test_example_file_shows_the_defaults() -> None:
    """Its header says the values shown are the defaults (but for the quick start's
    state_dir and definitions): a changed default, such as [http] processes, must be
    changed there too."""
    example = load_settings(ROOT / "config" / "triggerd.toml", environ={})
    defaults = Settings()
    differ = [
        f"{section.name}.{key.name}"
        for section in fields(Settings) if section.name not in ("source", "source_blank", "tenants")
        for key in fields(getattr(defaults, section.name))
        if getattr(getattr(example, section.name), key.name)
        != getattr(getattr(defaults, section.name), key.name)
    ]
    assert differ == ["daemon.state_dir", "daemon.definitions"]


def test_readme_lists_every_key_with_its_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    for dotted in KEY_HELP:
        assert env_var_for(dotted) in readme, dotted


def test_file_values_and_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[http]\nport = 9000\n[executor]\nlease = "1m"\n')
    settings = load_settings(
        path, environ={"TRIGGERD_HTTP_HOST": "0.0.0.0", "TRIGGERD_EXECUTOR_CONCURRENCY": "4"}
    )
    assert settings.http.port == 9000
    assert settings.http.host == "0.0.0.0"
    assert settings.executor.lease == timedelta(minutes=1)
    assert settings.executor.concurrency == 4


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 9000\n")
    settings = load_settings(path, environ={"TRIGGERD_HTTP_PORT": "9100"})
    assert settings.http.port == 9100


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 9001\n")
    settings = load_settings(environ={"TRIGGERD_CONFIG": str(path)})
    assert settings.http.port == 9001
    assert settings.source == str(path)


def test_definitions_list_from_env() -> None:
    settings = load_settings(environ={"TRIGGERD_DAEMON_DEFINITIONS": "a.yaml, b.yaml"})
    assert settings.daemon.definitions == ("a.yaml", "b.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[http]\nprot = 1\n",
            "unknown key http.prot"
            " (known in [http]: host, max_body_bytes, max_pending, port, processes,"
            " public_url, trusted_proxies)",
        ),
        ('[http]\npublic_url = "triggerd.example.com"\n',
         "http.public_url: 'triggerd.example.com' is not an http(s) URL (e.g."
         " https://triggerd.example.com)"),
        ("[htp]\nport = 1\n", "unknown section [htp]"),
        ('[http]\nport = "eighty"\n', "http.port: expected an integer, got str 'eighty'"),
        ("[http]\nport = 70000\n", "http.port: 70000 is not a valid port (1-65535)"),
        ("[http]\nport = -1\n", "http.port: -1 is not a valid port (1-65535)"),
        ('[executor]\nlease = "soon"\n', "executor.lease: 'soon' is not a duration"),
        ("[executor]\nlease = 30\n", "executor.lease: expected a duration string"),
        ("[executor]\nconcurrency = 0\n", "executor.concurrency: 0 is below the minimum 1"),
        ("[http]\nprocesses = 0\n", "http.processes: 0 is below the minimum 1"),
        ("[http]\nprocesses = 65\n", "http.processes: 65 is above the maximum 64"),
        ("[metrics]\nlabel_limit = 0\n", "metrics.label_limit: 0 is below the minimum 1"),
        ("[executor]\nmax_workflow_depth = 0\n",
         "executor.max_workflow_depth: 0 is below the minimum 1"),
        ("[executor]\nmax_workflow_depth = 101\n",
         "executor.max_workflow_depth: 101 is above the maximum 100"),
        ('[scheduler]\nledger_retention = "forever"\n',
         "scheduler.ledger_retention: 'forever' is not a duration"),
        ('[executor]\ntest_retention = "a week"\n',
         "executor.test_retention: 'a week' is not a duration"),
        ("[executor]\ntest_retention = 7\n", "executor.test_retention: expected a duration string"),
        ('[metrics]\nlabel_limit = "many"\n',
         "metrics.label_limit: expected an integer, got str 'many'"),
        ('[log]\nformat = "xml"\n', "log.format: 'xml' is not one of json, text"),
        ('[log]\nlevel = "loud"\n', "log.level: 'loud' is not one of debug, info, warning, error"),
        (
            "[database]\npool_min = 5\npool_max = 2\n",
            "database.pool_min: 5 exceeds database.pool_max 2",
        ),
        ('[database]\nurl = "mysql://x"\n', "database.url: must start with postgresql://"),
        ('[daemon]\ndefinitions = "a.yaml"\n', "daemon.definitions: expected a list of strings"),
        # It read the working directory as a folder of definitions.
        ('[daemon]\ndefinitions = ["a.yaml", ""]\n',
         "daemon.definitions: an empty entry names no file (for the configuration file's own"
         ' directory write ".")'),
        ("http = 3\n", "http: expected a table [http]"),
        ('[database]\nmigrate = "yes"\n', "database.migrate: expected true or false, got 'yes'"),
        ("[database]\nmigrate = 1\n", "database.migrate: expected true or false, got 1"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value).startswith(f"{path}: {message}")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Above every [section]: it was called an unknown section [foo].
        ("foo = 1\n[http]\nport = 80\n",
         "unknown setting foo: every setting belongs in a section such as [http]"),
        ('port = 80\n', "unknown setting port: every setting belongs in a section such as"
                        " [http]"),
        ('url = "x"\n', "unknown setting url: every setting belongs in a section such as"
                        " [database]"),
    ],
)
def test_a_key_outside_any_section_is_said_so(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == f"{path}: {message}"


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 8080\nhost = \n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value).startswith(f"{path}:3: invalid TOML:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.toml", environ={})
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: configuration file not found"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRIGGERD_HTTP_PORT": "http"},
         "TRIGGERD_HTTP_PORT: http.port: expected an integer, got 'http'"),
        ({"TRIGGERD_HTTP_PROT": "1"}, "TRIGGERD_HTTP_PROT: unknown setting http.prot"),
        ({"TRIGGERD_EXECUTOR_LEASE": "-5s"},
         "TRIGGERD_EXECUTOR_LEASE: executor.lease: '-5s' is not a duration"),
        (
            {"TRIGGERD_DATABASE_MIGRATE": "maybe"},
            "TRIGGERD_DATABASE_MIGRATE: database.migrate: expected true or false, got 'maybe'",
        ),
        # A secret made with echo: no Authorization header carries the newline, so every
        # admin request was refused as "invalid bearer token".
        ({"TRIGGERD_API_TOKEN": "s3cret\n"},
         "TRIGGERD_API_TOKEN: api.token: has leading or trailing whitespace or a control"
         " character (a trailing newline?), which no Authorization header can carry; remove"
         " it"),
    ],
)
def test_bad_environment_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert str(info.value).startswith(message)


def test_an_api_token_with_a_space_inside_is_taken_and_one_at_its_end_is_not(
    tmp_path: Path,
) -> None:
    assert load_settings(environ={"TRIGGERD_API_TOKEN": "a b"}).api.token == "a b"
    path = write(tmp_path, '[api]\ntoken = " s3cret"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value).startswith(f"{path}: api.token: has leading or trailing whitespace")
    assert "s3cret" not in str(info.value)  # a secret is never quoted


def test_unrelated_triggerd_variables_are_ignored() -> None:
    settings = load_settings(environ={
        "TRIGGERD_TEST_DATABASE_URL": "postgresql://x/y",
        # A workflow's own secrets may share the prefix, even near a section's name.
        "TRIGGERD_HTTPS_PROXY": "http://proxy", "TRIGGERD_LOGS_DIR": "/tmp",
        "TRIGGERD_GITHUB_SECRET": "s"})
    assert settings.database.url == ""


@pytest.mark.parametrize(("name", "meant"), [
    ("TRIGGERD_DATABSE_URL", "TRIGGERD_DATABASE_URL"),
    ("TRIGGERD_EXECUTR_LEASE", "TRIGGERD_EXECUTOR_LEASE"),
    ("TRIGGERD_HTTPPORT", "TRIGGERD_HTTP_PORT"),
    ("TRIGGERD_DATABASEPOOL_MAX", "TRIGGERD_DATABASE_POOL_MAX"),
])
def test_a_misspelt_section_is_an_error_not_ignored(name: str, meant: str) -> None:
    # Ignored before: a typo in TRIGGERD_DATABASE_URL ran on the embedded database.
    with pytest.raises(ConfigError) as info:
        load_settings(environ={name: "1"})
    assert str(info.value) == f"{name}: no such setting (did you mean {meant}?)"


def test_huge_duration_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TRIGGERD_EXECUTOR_LEASE": "99999999999d"})
    assert str(info.value) == (
        "TRIGGERD_EXECUTOR_LEASE: executor.lease: '99999999999d' is too long a duration"
        " (at most 36500d)")


# --- where a value came from, and paths relative to the file ---------------------------


def test_relative_paths_in_the_file_follow_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "triggerd.toml").write_text(
        '[daemon]\nstate_dir = "../state"\n'
        'definitions = ["defs/a.yaml", "/abs/b.yaml", "~/c.yaml"]\n'
        '[executor]\nresume_key_file = "keys/resume.key"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings("../etc/triggerd.toml", environ={})
    assert settings.state_dir == tmp_path / "state"
    assert settings.daemon.definitions == (
        str(conf / "defs" / "a.yaml"),
        "/abs/b.yaml",
        str(Path("~/c.yaml").expanduser()),
    )
    assert settings.executor.resume_key_file == str(conf / "keys" / "resume.key")
    # Messages keep naming the file as it was given.
    assert settings.source == "../etc/triggerd.toml"


def test_relative_paths_from_the_environment_follow_the_working_directory(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[daemon]\nstate_dir = "state"\ndefinitions = ["a.yaml"]\n')
    settings = load_settings(
        path,
        environ={"TRIGGERD_DAEMON_STATE_DIR": "mine", "TRIGGERD_DAEMON_DEFINITIONS": "b.yaml"},
    )
    assert settings.daemon.state_dir == "mine"
    assert settings.daemon.definitions == ("b.yaml",)


def test_empty_state_dir_in_the_file_keeps_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[daemon]\nstate_dir = ""\n')
    assert load_settings(path, environ={}).daemon.state_dir == ".triggerd"
    systemd = load_settings(path, environ={"STATE_DIRECTORY": "/var/lib/triggerd"})
    assert systemd.daemon.state_dir == "/var/lib/triggerd"


def test_example_file_works_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(ROOT / "config" / "triggerd.toml", environ={})
    assert settings.state_dir == ROOT / ".triggerd"
    assert settings.daemon.definitions
    for name in settings.daemon.definitions:
        assert Path(name).is_file(), name


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRIGGERD_HTTP_PORT": "70000"}, "TRIGGERD_HTTP_PORT: http.port: 70000 is not a valid"
                                          " port (1-65535)"),
        ({"TRIGGERD_HTTP_PORT": "0"}, "TRIGGERD_HTTP_PORT: http.port: 0 is not a valid port"
                                      " (1-65535)"),
        ({"TRIGGERD_EXECUTOR_CONCURRENCY": "0"}, "TRIGGERD_EXECUTOR_CONCURRENCY:"
                                                 " executor.concurrency: 0 is below the minimum 1"),
        ({"TRIGGERD_LOG_FORMAT": "xml"}, "TRIGGERD_LOG_FORMAT: log.format: 'xml' is not one of"
                                         " json, text"),
        ({"TRIGGERD_DAEMON_SECRET_ROOTS": "secrets"}, "TRIGGERD_DAEMON_SECRET_ROOTS:"
                                                      " daemon.secret_roots: 'secrets' is not"
                                                      " an absolute path"),
        ({"TRIGGERD_EGRESS_DENY": "ten"}, "TRIGGERD_EGRESS_DENY: egress.deny: 'ten' is not an IP"
                                          " network (e.g. 10.0.0.0/8 or fd00::/8)"),
        # pool_max is the default (10): only the variable is to blame.
        ({"TRIGGERD_DATABASE_POOL_MIN": "11"}, "TRIGGERD_DATABASE_POOL_MIN: database.pool_min: 11"
                                               " exceeds database.pool_max 10"),
    ],
)
def test_range_errors_name_the_variable_not_the_file(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    path = write(tmp_path, "[http]\nport = 8080\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=env)
    assert str(info.value) == message


def test_cross_key_error_names_both_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "[database]\npool_min = 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"TRIGGERD_DATABASE_POOL_MAX": "2"})
    assert str(info.value) == (
        f"{path}, TRIGGERD_DATABASE_POOL_MAX: database.pool_min: 5 exceeds database.pool_max 2"
    )


def test_one_port_range_everywhere(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "0-65535" not in readme
    assert "(1-65535)" in KEY_HELP["http.port"]
    path = write(tmp_path, "[http]\nport = 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == f"{path}: http.port: 0 is not a valid port (1-65535)"


def test_database_migrate_defaults_to_true_and_is_read_from_file_and_env(tmp_path: Path) -> None:
    assert load_settings(environ={}).database.migrate is True
    path = write(tmp_path, "[database]\nmigrate = false\n")
    assert load_settings(path, environ={}).database.migrate is False
    assert load_settings(environ={"TRIGGERD_DATABASE_MIGRATE": "off"}).database.migrate is False
    env = {"TRIGGERD_DATABASE_MIGRATE": "true"}
    assert load_settings(path, environ=env).database.migrate is True


@pytest.mark.parametrize(("env", "message"), [
    # A retention of 0 deleted every finished run, or the whole audit trail, in seconds.
    ({"TRIGGERD_EXECUTOR_RETENTION": "0s"}, "executor.retention: must be at least 1h"),
    ({"TRIGGERD_EXECUTOR_AUDIT_RETENTION": "0s"},
     "executor.audit_retention: must be at least 1h"),
    ({"TRIGGERD_EXECUTOR_TEST_RETENTION": "5m"}, "executor.test_retention: must be at least 1h"),
    ({"TRIGGERD_SCHEDULER_LEDGER_RETENTION": "0s"},
     "scheduler.ledger_retention: must be at least 1h"),
    # An interval of 0 kept an idle daemon busy.
    ({"TRIGGERD_EXECUTOR_POLL_INTERVAL": "0s"}, "executor.poll_interval: must be at least 50ms"),
    ({"TRIGGERD_SCHEDULER_RECONCILE_INTERVAL": "0s"},
     "scheduler.reconcile_interval: must be at least 1s"),
    ({"TRIGGERD_SCHEDULER_LAG_THRESHOLD": "0s"}, "scheduler.lag_threshold: must be at least 1s"),
    # A lease of years was accepted; every claim then failed (interval out of range).
    ({"TRIGGERD_EXECUTOR_LEASE": "2d"}, "executor.lease: must be at most 1d"),
    ({"TRIGGERD_EXECUTOR_LEASE": "1s"}, "executor.lease: must be at least 2s"),
    ({"TRIGGERD_EXECUTOR_DRAIN": "30d"}, "executor.drain: must be at most 1d"),
])
def test_durations_out_of_their_range_are_named_with_their_source(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    (name,) = env
    assert str(info.value) == f"{name}: {message}"


def test_durations_at_their_bounds_are_taken() -> None:
    settings = load_settings(environ={
        "TRIGGERD_EXECUTOR_RETENTION": "1h", "TRIGGERD_EXECUTOR_POLL_INTERVAL": "50ms",
        "TRIGGERD_EXECUTOR_LEASE": "1d", "TRIGGERD_EXECUTOR_DRAIN": "0s",
        "TRIGGERD_SCHEDULER_RECONCILE_INTERVAL": "1s"})
    assert settings.executor.lease == timedelta(days=1)
    assert settings.executor.drain == timedelta(0)


@pytest.mark.parametrize("text", ["1_0_0_0", "\u0661\u0660\u0660\u0660", "0x3e8", "1e3"])
def test_an_integer_from_the_environment_is_decimal_digits(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TRIGGERD_HTTP_PORT": text})
    assert str(info.value) == (
        f"TRIGGERD_HTTP_PORT: http.port: expected an integer, got {text!r}")


def test_a_file_that_starts_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[http]\nport = 9123\n")
    assert load_settings(path, environ={}).http.port == 9123


@pytest.mark.parametrize(("env", "message"), [
    # Each was taken and failed later, far from its key: a pool past the server's
    # max_connections, a body or an output PostgreSQL cannot store, 100,000,000 run slots.
    ({"TRIGGERD_EXECUTOR_CONCURRENCY": "100000000"},
     "executor.concurrency: 100000000 is above the maximum 10000"),
    ({"TRIGGERD_DATABASE_POOL_MAX": "1001"},
     "database.pool_max: 1001 is above the maximum 1000"),
    ({"TRIGGERD_DATABASE_POOL_MIN": "5000"},  # its own bound before pool_max's
     "database.pool_min: 5000 is above the maximum 1000"),
    ({"TRIGGERD_HTTP_MAX_BODY_BYTES": "1073741825"},
     "http.max_body_bytes: 1073741825 is above the maximum 1073741824"),
    ({"TRIGGERD_HTTP_MAX_PENDING": "1000000001"},
     "http.max_pending: 1000000001 is above the maximum 1000000000"),
    ({"TRIGGERD_EXECUTOR_MAX_OUTPUT_BYTES": "268435456"},
     "executor.max_output_bytes: 268435456 is above the maximum 268435455"),
    ({"TRIGGERD_EXECUTOR_MAX_RESUME_OUTPUT_BYTES": "9999999999"},
     "executor.max_resume_output_bytes: 9999999999 is above the maximum 268435455"),
    ({"TRIGGERD_METRICS_LABEL_LIMIT": "100001"},
     "metrics.label_limit: 100001 is above the maximum 100000"),
    ({"TRIGGERD_DATABASE_POOL_MIN": "20"}, "database.pool_min: 20 exceeds database.pool_max 10"),
])
def test_counts_and_sizes_above_their_bound_are_named_with_their_source(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert str(info.value) == f"{', '.join(env)}: {message}"


def test_counts_and_sizes_at_their_bounds_are_taken(tmp_path: Path) -> None:
    path = tmp_path / "triggerd.toml"
    path.write_text("[database]\npool_min = 1000\npool_max = 1000\n"
                    "[http]\nmax_body_bytes = 1073741824\nmax_pending = 1000000000\n"
                    "[executor]\nconcurrency = 10000\nmax_output_bytes = 268435455\n"
                    "max_resume_output_bytes = 268435455\n[metrics]\nlabel_limit = 100000\n")
    settings = load_settings(str(path), environ={})
    assert (settings.database.pool_max, settings.executor.concurrency,
            settings.metrics.label_limit) == (1000, 10000, 100000)


def test_a_bound_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "triggerd.toml"
    path.write_text("[executor]\nconcurrency = 100000000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), environ={})
    assert str(info.value) == (
        f"{path}: executor.concurrency: 100000000 is above the maximum 10000")
