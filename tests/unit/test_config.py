"""Configuration from the environment: the Go service's names and defaults, strict parsing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from placement.config import (
    Auth,
    Config,
    ConfigError,
    Limits,
    Reconcile,
    RetryPolicy,
    Variable,
    _table,
    markdown_table,
    parse_duration,
    variables,
)

AUTH_ON = {"AUTH_DISABLED": "false", "AUTH_ISSUER_URL": "https://idp", "AUTH_JWT_AUDIENCE": "a"}


def test_defaults_match_the_go_service() -> None:
    config = Config.from_env({})
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    assert config.log_level == "INFO"
    db = config.database
    assert (db.type, db.host, db.port, db.name, db.user, db.password) == (
        "pgsql",
        "localhost",
        5432,
        "placement-manager",
        "",
        "",
    )
    assert (config.policy.url, config.policy.timeout) == ("http://localhost:8081", 10.0)
    assert (config.sprm.url, config.sprm.timeout) == ("http://localhost:8082", 10.0)
    assert (config.retry.tries, config.retry.initial, config.retry.maximum) == (4, 1.0, 4.0)
    assert config.audit_interval == 0.0  # the in-service drift audit is off


def test_the_settings_defaults_are_the_variables_defaults() -> None:
    """The dataclasses' defaults come from `VARIABLES`: an empty environment reads them."""
    config = Config.from_env({})
    assert config.retry == RetryPolicy()
    assert config.reconcile == Reconcile()
    assert config.auth == Auth()
    assert config.limits == Limits()
    assert config.database.pool_timeout == 2.0
    defaults = Config(
        config.host,
        config.port,
        config.log_level,
        config.database,
        config.policy,
        config.sprm,
        config.retry,
        config.threads,
        config.workers,
    )
    assert defaults == config


def test_the_audit_interval_is_a_duration() -> None:
    assert Config.from_env({"AUDIT_INTERVAL": "15m"}).audit_interval == 900.0
    assert Config.from_env({"AUDIT_INTERVAL": "0"}).audit_interval == 0.0


def test_values_are_read() -> None:
    config = Config.from_env(
        {
            "SVC_ADDRESS": "127.0.0.1:9000",
            "SVC_LOG_LEVEL": "debug",
            "DB_TYPE": "sqlite",
            "DB_NAME": "/tmp/x.db",
            "DB_PORT": "6543",
            "POLICY_MANAGER_EVALUATION_URL": "http://policy:1/",
            "POLICY_MANAGER_EVALUATION_TIMEOUT": "1m30s",
            "SP_RESOURCE_MANAGER_TIMEOUT": "250ms",
        }
    )
    assert (config.host, config.port, config.log_level) == ("127.0.0.1", 9000, "DEBUG")
    assert (config.database.type, config.database.name, config.database.port) == (
        "sqlite",
        "/tmp/x.db",
        6543,
    )
    assert config.policy.url == "http://policy:1"
    assert config.policy.timeout == 90.0
    assert config.sprm.timeout == 0.25


def test_aliases_are_accepted() -> None:
    config = Config.from_env(
        {"BIND_ADDRESS": "[::1]:8000", "DB_PASS": "secret", "WEB_CONCURRENCY": "3"}
    )
    assert (config.host, config.port, config.database.password) == ("::1", 8000, "secret")
    assert config.workers == 3


def test_a_name_and_its_alias_may_both_be_set_to_the_same_value() -> None:
    # DCM sets DB_PASS and DB_PASSWORD alike.
    config = Config.from_env(
        {"DB_PASS": "s3cret", "DB_PASSWORD": "s3cret", "SVC_ADDRESS": ":9", "BIND_ADDRESS": ":9"}
    )
    assert (config.port, config.database.password) == (9, "s3cret")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"BIND_ADDRESS": ":1", "SVC_ADDRESS": ":2"}, ("SVC_ADDRESS=':2'", "BIND_ADDRESS=':1'")),
        ({"SVC_WORKERS": "1", "WEB_CONCURRENCY": "2"}, ("SVC_WORKERS='1'", "WEB_CONCURRENCY='2'")),
        ({"DB_PASS": "a", "DB_PASSWORD": "b"}, ("DB_PASSWORD", "DB_PASS")),
    ],
)
def test_a_name_and_its_alias_set_to_different_values_stop_start_up(
    env: dict[str, str], names: tuple[str, str]
) -> None:
    # Neither wins: a value baked into an image must never silently beat a deployment's.
    with pytest.raises(ConfigError) as raised:
        Config.from_env(env)
    message = str(raised.value)
    assert message.startswith(f"{names[0]} and {names[1]} disagree")
    assert "\n" not in message


def test_a_secret_in_conflict_is_not_shown() -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"DB_PASS": "first-secret", "DB_PASSWORD": "second-secret"})
    assert "secret" not in str(raised.value).replace("DB_PASS", "")


def test_the_database_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("from-a-file\n")  # mounted secrets often end with a line break
    config = Config.from_env({"DB_PASSWORD_FILE": str(secret)})
    assert config.database.password == "from-a-file"
    # The file and a variable may both be given when they agree, not otherwise.
    config = Config.from_env({"DB_PASSWORD_FILE": str(secret), "DB_PASS": "from-a-file"})
    assert config.database.password == "from-a-file"
    with pytest.raises(ConfigError, match=r"^DB_PASSWORD and DB_PASSWORD_FILE disagree"):
        Config.from_env({"DB_PASSWORD_FILE": str(secret), "DB_PASSWORD": "other"})


def test_an_unreadable_secret_file_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"DB_PASSWORD_FILE": str(missing)})
    assert str(raised.value) == (
        f"DB_PASSWORD_FILE={str(missing)!r}: cannot read it: No such file or directory"
    )


def test_variables_lists_every_name_the_configuration_reads() -> None:
    names = variables()
    assert {"SVC_ADDRESS", "BIND_ADDRESS", "DB_PASSWORD", "DB_PASS", "DB_PASSWORD_FILE"} <= names
    assert {"WEB_CONCURRENCY", "AUTH_ISSUER_URL", "AUTH_JWT_AUDIENCE", "DB_TYPE"} <= names
    assert "PGSSLMODE" not in names  # libpq's own, not ours


class _Recorder(dict[str, str]):
    """An environment that notes every variable asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def test_the_configuration_reads_every_declared_variable() -> None:
    env = _Recorder(AUTH_ON)
    Config.from_env(env)
    assert env.asked == variables()


def test_auth_settings_are_read_only_when_auth_is_on() -> None:
    env = _Recorder({"AUTH_ISSUER_URL": "not a url"})  # ignored: auth is off
    assert not Config.from_env(env).auth.enabled
    assert {name for name in env.asked if name.startswith("AUTH_")} == {"AUTH_DISABLED"}


def test_a_name_declared_twice_is_refused() -> None:
    twice = Variable("A", "", str, "a", aliases=("B",))
    with pytest.raises(ValueError, match=r"declared twice: \['B'\]"):
        _table(twice, Variable("B", "", str, "b"))


def _readme_table() -> str:
    """The README's configuration table: its header and every table line after it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = lines.index("| variable | default | meaning |")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end]) + "\n"


def test_the_readme_configuration_table_is_the_declared_one() -> None:
    # A row added, changed, moved or cut off from the table (a stray blank line) fails.
    assert _readme_table() == markdown_table(), (
        "README.md's configuration table differs from placement/config.py's VARIABLES:"
        " paste the output of `python -m placement.config` over it"
    )


def test_the_table_names_every_variable_each_in_one_row() -> None:
    rows = markdown_table().splitlines()[2:]
    first_cells = [row.split(" | ")[0] for row in rows]
    listed = [name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)]
    assert sorted(listed) == sorted(variables())
    assert "| `AUDIT_INTERVAL` | `0` (off) |" in markdown_table()
    assert "| `DB_USER` | (none) |" in markdown_table()


def test_python_m_placement_config_prints_the_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "placement.config"], capture_output=True, text=True, check=True
    )
    assert printed.stdout == markdown_table()
    assert printed.stderr == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_TYPE", "mysql"),
        ("DB_PORT", "abc"),
        ("DB_PORT", "70000"),
        ("SVC_ADDRESS", "8080"),
        ("SVC_ADDRESS", "host:port"),
        ("SVC_ADDRESS", "::1:80"),
        ("BIND_ADDRESS", "nope"),
        ("SVC_LOG_LEVEL", "loud"),
        ("POLICY_MANAGER_EVALUATION_TIMEOUT", "10"),
        ("POLICY_MANAGER_EVALUATION_TIMEOUT", "0s"),
        ("SP_RESOURCE_MANAGER_TIMEOUT", "ten seconds"),
        ("SP_RESOURCE_MANAGER_URL", "sprm:8082"),
        ("POLICY_MANAGER_EVALUATION_URL", "ftp://policy"),
        ("UPSTREAM_RETRY_MAX_TRIES", "0"),
        ("DB_NAME", ""),
        ("AUDIT_INTERVAL", "hourly"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}={value!r}: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("100us", 0.0001),
        ("1h1m1s", 3661.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "10", "-1s", "1d", "1s 2s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_limits_have_defaults_and_are_read() -> None:
    limits = Config.from_env({}).limits
    assert (limits.max_header_bytes, limits.header_timeout, limits.body_timeout) == (
        65536,
        10.0,
        30.0,
    )
    assert (limits.max_connections, limits.queue_wait, limits.page_max_bytes) == (
        1024,
        5.0,
        1048576,
    )
    limits = Config.from_env(
        {
            "SVC_MAX_HEADER_BYTES": "32768",
            "SVC_HEADER_TIMEOUT": "2s",
            "SVC_BODY_TIMEOUT": "1m",
            "SVC_MAX_CONNECTIONS": "300",
            "SVC_QUEUE_WAIT": "0",
            "SVC_PAGE_MAX_BYTES": "4096",
        }
    ).limits
    assert (limits.max_header_bytes, limits.header_timeout, limits.body_timeout) == (
        32768,
        2.0,
        60.0,
    )
    assert (limits.max_connections, limits.queue_wait, limits.page_max_bytes) == (300, 0.0, 4096)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SVC_MAX_HEADER_BYTES", "100"),
        ("SVC_HEADER_TIMEOUT", "0s"),
        ("SVC_BODY_TIMEOUT", "soon"),
        ("SVC_MAX_CONNECTIONS", "0"),
        ("SVC_QUEUE_WAIT", "-1s"),
        ("SVC_PAGE_MAX_BYTES", "0"),
    ],
)
def test_bad_limits_stop_start_up_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_the_issuer_is_kept_as_written_and_its_keys_max_age_is_read() -> None:
    env = {
        "AUTH_DISABLED": "false",
        "AUTH_ISSUER_URL": "https://idp.example/realms/dcm/",
        "AUTH_JWT_AUDIENCE": "placement",
    }
    auth = Config.from_env(env).auth
    assert auth.issuer_url == "https://idp.example/realms/dcm/"  # tokens' iss, exactly
    assert auth.keys_max_age == 3600.0
    assert Config.from_env(env | {"AUTH_KEYS_MAX_AGE": "15m"}).auth.keys_max_age == 900.0
    with pytest.raises(ConfigError, match="AUTH_KEYS_MAX_AGE"):
        Config.from_env(env | {"AUTH_KEYS_MAX_AGE": "0s"})
